//! The file-level import graph of a crate's `src`, for [`crate::tidy`]: which file uses which
//! through `crate::…`, `super::…`, `self::…` or a name a `use` bound, and the circles in it.
//!
//! The rule: no two files of a crate use each other, directly or around a longer circle. A
//! module root — `lib.rs`, `main.rs`, a `mod.rs` — may be used by the files under it (they share
//! what it declares), so those edges do not count; a root using the modules under it is the
//! normal direction and counts like any other. A name a root re-exports (`pub use ctx::Ctx`) is
//! followed to the file that defines it, so `crate::Ctx` is an edge to `ctx.rs`, not to the root.
//! Tests inside a file (`mod tests`) are part of it. It reads text, not the compiler's view: a
//! macro that names a path in a string, or a path built by a macro, is not seen.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::error::{Context, Result};

/// One file of a crate: its module path (`[]` for the roots, `["catalog", "policy"]`) and its
/// name relative to `src` (`catalog/policy.rs`).
struct File {
    module: Vec<String>,
    name: String,
    /// `lib.rs`, `main.rs` or a `mod.rs`.
    root: bool,
    tokens: Vec<Token>,
}

/// A token of Rust source with comments, strings and character literals left out.
#[derive(Debug, Clone, PartialEq)]
struct Token {
    text: String,
    line: usize,
}

/// An edge of the graph: `from` uses `to`, first at `line` through `path`.
#[derive(Debug, Clone, PartialEq)]
struct Use {
    line: usize,
    path: String,
}

/// The circles among the files of the crate whose `src` is `src`, one line each, naming every
/// edge of the circle with where it is.
pub(crate) fn circles(src: &Path, shown: &str, files: &[std::path::PathBuf]) -> Result<Vec<String>> {
    let mut sources = Vec::new();
    for file in files {
        let Ok(relative) = file.strip_prefix(src) else { continue };
        let name = relative.to_str().unwrap_or_default().replace('\\', "/");
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        sources.push((name, text));
    }
    Ok(circles_in(shown, &sources))
}

/// [`circles`] over `(name relative to src, text)` pairs.
fn circles_in(shown: &str, sources: &[(String, String)]) -> Vec<String> {
    circle_edges(sources)
        .into_iter()
        .map(|edges| {
            let edges: Vec<String> = edges
                .iter()
                .map(|(from, to, how)| format!("{from} uses {to} (line {}: {})", how.line, how.path))
                .collect();
            format!(
                "{shown}: an import circle, files that use each other: {}. Move what one needs of the other to \
                 where it belongs, or into a module both use (a root — lib.rs, main.rs, mod.rs — may be used by \
                 the files under it; a name it re-exports counts as the file that defines it)",
                edges.join("; ")
            )
        })
        .collect()
}

/// Each circle among `sources`, as the edges between its files: `(from, to, first use)`.
fn circle_edges(sources: &[(String, String)]) -> Vec<Vec<(String, String, Use)>> {
    let files: Vec<File> = sources
        .iter()
        .filter(|(name, _)| !name.starts_with("bin/"))
        .map(|(name, text)| {
            let stem = name.strip_suffix(".rs").unwrap_or(name);
            let (module, root) = match stem {
                "lib" | "main" => (Vec::new(), true),
                _ => match stem.strip_suffix("/mod") {
                    Some(dir) => (dir.split('/').map(str::to_owned).collect(), true),
                    None => (stem.split('/').map(str::to_owned).collect(), false),
                },
            };
            File { module, name: name.clone(), root, tokens: tokenize(text) }
        })
        .collect();
    let edges = Graph::new(&files).edges();
    strongly_connected(files.len(), &edges)
        .into_iter()
        .map(|component| {
            let members: BTreeSet<usize> = component.into_iter().collect();
            edges
                .iter()
                .filter(|((from, to), _)| members.contains(from) && members.contains(to))
                .map(|(&(from, to), how)| (files[from].name.clone(), files[to].name.clone(), how.clone()))
                .collect()
        })
        .collect()
}

/// What the files declare: the module path of each file, and the names each file binds.
struct Graph<'a> {
    files: &'a [File],
    /// Module path → the files that are that module (`[]` is `lib.rs` and `main.rs`).
    modules: BTreeMap<Vec<String>, Vec<usize>>,
    /// Per file, the names its top-level `use` declarations bind → the absolute path.
    bindings: Vec<BTreeMap<String, Vec<String>>>,
}

impl<'a> Graph<'a> {
    fn new(files: &'a [File]) -> Self {
        let mut modules: BTreeMap<Vec<String>, Vec<usize>> = BTreeMap::new();
        for (index, file) in files.iter().enumerate() {
            modules.entry(file.module.clone()).or_default().push(index);
        }
        let mut graph = Graph { files, modules, bindings: Vec::new() };
        graph.bindings = files.iter().map(|file| graph.top_level_bindings(file)).collect();
        graph
    }

    /// Every edge that counts, with the first place it is seen.
    fn edges(&self) -> BTreeMap<(usize, usize), Use> {
        let mut edges = BTreeMap::new();
        for (from, file) in self.files.iter().enumerate() {
            for (path, line) in self.paths(from, file) {
                let Some(to) = self.resolve(from, &path) else { continue };
                if to == from || self.is_ancestor_root(to, from) {
                    continue;
                }
                let shown = path.iter().filter(|segment| *segment != "self").cloned().collect::<Vec<_>>();
                edges.entry((from, to)).or_insert(Use { line, path: format!("crate::{}", shown.join("::")) });
            }
        }
        edges
    }

    /// The absolute paths `file` names, with their lines: every `crate::`/`super::`/`self::`
    /// path, every `use` tree, and every path that starts with a name a `use` or `mod` bound.
    fn paths(&self, index: usize, file: &File) -> Vec<(Vec<String>, usize)> {
        let tokens = &file.tokens;
        let mut found = Vec::new();
        let mut inline: Vec<(String, usize)> = Vec::new();
        let mut depth = 0usize;
        let mut at = 0;
        while at < tokens.len() {
            let text = tokens[at].text.as_str();
            match text {
                "{" => depth += 1,
                "}" => {
                    depth = depth.saturating_sub(1);
                    if inline.last().is_some_and(|(_, open)| *open == depth) {
                        inline.pop();
                    }
                }
                "mod" if tokens.get(at + 2).is_some_and(|t| t.text == "{") => {
                    inline.push((tokens[at + 1].text.clone(), depth));
                    depth += 1;
                    at += 3;
                    continue;
                }
                _ => {}
            }
            let after_separator = at > 0 && tokens[at - 1].text == "::";
            let starts_path = is_identifier(text) && !after_separator && next_is(tokens, at, "::");
            if text == "use" || starts_path {
                let start = if text == "use" { at + 1 } else { at };
                let mut trees = Vec::new();
                let end = use_tree(tokens, start, &mut Vec::new(), &mut trees);
                let module: Vec<String> =
                    file.module.iter().cloned().chain(inline.iter().map(|(name, _)| name.clone())).collect();
                for tree in trees {
                    if let Some(absolute) = self.absolute(index, &module, inline.len(), &tree) {
                        found.push((absolute, tokens[at].line));
                    }
                }
                at = end.max(at + 1);
                continue;
            }
            at += 1;
        }
        found
    }

    /// The names bound by the `use` declarations at the top of `file` (outside any block).
    fn top_level_bindings(&self, file: &File) -> BTreeMap<String, Vec<String>> {
        let tokens = &file.tokens;
        let mut bound = BTreeMap::new();
        let mut depth = 0usize;
        let mut at = 0;
        while at < tokens.len() {
            match tokens[at].text.as_str() {
                "{" => depth += 1,
                "}" => depth = depth.saturating_sub(1),
                "use" if depth == 0 => {
                    let mut trees = Vec::new();
                    let end = use_tree(tokens, at + 1, &mut Vec::new(), &mut trees);
                    for tree in trees {
                        let (name, path) = match tree.iter().position(|segment| segment == "as") {
                            Some(alias) => (tree.get(alias + 1).cloned(), tree[..alias].to_vec()),
                            None => (tree.last().cloned(), tree.clone()),
                        };
                        let path = if path.last().is_some_and(|s| s == "self") {
                            path[..path.len() - 1].to_vec()
                        } else {
                            path
                        };
                        let Some(name) = name.filter(|n| n != "*" && n != "_" && n != "self") else { continue };
                        // Only paths inside the crate: `crate::`, `super::`, `self::` or a child module.
                        if let Some(absolute) = self.relative_to(&file.module, 0, &path) {
                            bound.insert(name, absolute);
                        }
                    }
                    at = end.max(at + 1);
                    continue;
                }
                _ => {}
            }
            at += 1;
        }
        bound
    }

    /// `path`, as written in the module `module` of file `index` (`inline` levels of `mod {}`
    /// deep), made absolute; `None` for a path outside the crate.
    fn absolute(&self, index: usize, module: &[String], inline: usize, path: &[String]) -> Option<Vec<String>> {
        if let Some(absolute) = self.relative_to(module, inline, path) {
            return Some(absolute);
        }
        let head = path.first()?;
        let bound = self.bindings[index].get(head)?;
        Some(bound.iter().chain(&path[1..]).cloned().collect())
    }

    /// `path` made absolute if it starts with `crate`, `super`, `self` or a child module of
    /// `module` (which is `inline` levels of `mod {}` below its file).
    fn relative_to(&self, module: &[String], inline: usize, path: &[String]) -> Option<Vec<String>> {
        let path: Vec<String> = path.iter().take_while(|segment| *segment != "as").cloned().collect();
        let head = path.first()?;
        let mut base: Vec<String> = match head.as_str() {
            "crate" => Vec::new(),
            "self" | "super" => module.to_vec(),
            _ => {
                let child: Vec<String> = module[..module.len() - inline].iter().chain([head]).cloned().collect();
                if inline == 0 && self.modules.contains_key(&child) {
                    return Some(module.iter().chain(&path).cloned().collect());
                }
                return None;
            }
        };
        let mut rest = &path[..];
        while let Some(first) = rest.first() {
            match first.as_str() {
                "crate" | "self" => {}
                "super" => {
                    base.pop();
                }
                _ => break,
            }
            rest = &rest[1..];
        }
        Some(base.into_iter().chain(rest.iter().cloned()).collect())
    }

    /// The file an absolute path lands in: the deepest module file along it, then, if the next
    /// name is one that file binds by `use`, the file that binds it further.
    fn resolve(&self, from: usize, path: &[String]) -> Option<usize> {
        let mut path = path.to_vec();
        for _ in 0..8 {
            let mut depth = 0;
            while depth < path.len() && self.modules.contains_key(&path[..=depth]) {
                depth += 1;
            }
            let candidates = self.modules.get(&path[..depth])?;
            // `lib.rs` and `main.rs` are both `[]`: prefer the one `from` belongs with.
            let file = *candidates.iter().find(|&&c| c == from).unwrap_or(&candidates[0]);
            let Some(next) = path.get(depth) else { return Some(file) };
            match self.bindings[file].get(next) {
                Some(bound) if bound != &path => path = bound.iter().chain(&path[depth + 1..]).cloned().collect(),
                _ => return Some(file),
            }
        }
        None
    }

    /// `root` is a module root (`lib.rs`, `main.rs`, `mod.rs`) above `file`.
    fn is_ancestor_root(&self, root: usize, file: usize) -> bool {
        let (root, file) = (&self.files[root], &self.files[file]);
        root.root && file.module.len() >= root.module.len() && file.module.starts_with(&root.module)
    }
}

/// Reads a path or `use` tree starting at `at` (`a::b::{c, d::e as f, g::*}`), pushing each
/// full path onto `out`; returns the index after it.
fn use_tree(tokens: &[Token], mut at: usize, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let depth = prefix.len();
    while let Some(token) = tokens.get(at) {
        match token.text.as_str() {
            "{" => {
                at += 1;
                loop {
                    at = use_tree(tokens, at, prefix, out);
                    match tokens.get(at).map(|t| t.text.as_str()) {
                        Some(",") => at += 1,
                        Some("}") => {
                            at += 1;
                            break;
                        }
                        _ => break,
                    }
                    if tokens.get(at).is_some_and(|t| t.text == "}") {
                        at += 1;
                        break;
                    }
                }
                prefix.truncate(depth);
                return at;
            }
            "*" => {
                prefix.push("*".to_owned());
                at += 1;
                break;
            }
            text if is_identifier(text) => {
                prefix.push(text.to_owned());
                at += 1;
                if next_is(tokens, at - 1, "::") {
                    at += 1;
                    continue;
                }
                if tokens.get(at).is_some_and(|t| t.text == "as") {
                    prefix.push("as".to_owned());
                    if let Some(alias) = tokens.get(at + 1) {
                        prefix.push(alias.text.clone());
                    }
                    at += 2;
                }
                break;
            }
            _ => break,
        }
    }
    if prefix.len() > depth {
        out.push(prefix.clone());
    }
    prefix.truncate(depth);
    at
}

fn next_is(tokens: &[Token], at: usize, text: &str) -> bool {
    tokens.get(at + 1).is_some_and(|t| t.text == text)
}

fn is_identifier(text: &str) -> bool {
    text.starts_with(|c: char| c.is_alphabetic() || c == '_') && text != "as"
}

/// The identifiers, `::` and punctuation of `text`, without comments, strings, character
/// literals and numbers.
fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut at = 0;
    let skip_to = |at: &mut usize, line: &mut usize, end: usize| {
        *line += chars[*at..end.min(chars.len())].iter().filter(|&&c| c == '\n').count();
        *at = end;
    };
    while at < chars.len() {
        let c = chars[at];
        let next = chars.get(at + 1).copied().unwrap_or('\0');
        if c == '\n' {
            line += 1;
            at += 1;
        } else if c.is_whitespace() {
            at += 1;
        } else if c == '/' && next == '/' {
            while at < chars.len() && chars[at] != '\n' {
                at += 1;
            }
        } else if c == '/' && next == '*' {
            let (mut nesting, mut end) = (0usize, at);
            while end < chars.len() {
                if chars[end] == '/' && chars.get(end + 1) == Some(&'*') {
                    nesting += 1;
                    end += 2;
                } else if chars[end] == '*' && chars.get(end + 1) == Some(&'/') {
                    nesting -= 1;
                    end += 2;
                    if nesting == 0 {
                        break;
                    }
                } else {
                    end += 1;
                }
            }
            skip_to(&mut at, &mut line, end);
        } else if let Some(end) = raw_string_end(&chars, at) {
            skip_to(&mut at, &mut line, end);
        } else if c == '"' || (c == 'b' && next == '"') {
            let mut end = at + if c == 'b' { 2 } else { 1 };
            while end < chars.len() && chars[end] != '"' {
                end += if chars[end] == '\\' { 2 } else { 1 };
            }
            skip_to(&mut at, &mut line, end + 1);
        } else if c == '\'' || (c == 'b' && next == '\'') {
            let start = at + if c == 'b' { 1 } else { 0 };
            if chars.get(start + 1) == Some(&'\\') {
                let mut end = start + 3;
                while end < chars.len() && chars[end] != '\'' {
                    end += 1;
                }
                at = end + 1;
            } else if chars.get(start + 2) == Some(&'\'') {
                at = start + 3;
            } else {
                // A lifetime: the quote goes, the name reads as an identifier.
                at = start + 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let mut end = at;
            while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
                end += 1;
            }
            if !c.is_ascii_digit() {
                tokens.push(Token { text: chars[at..end].iter().collect(), line });
            }
            at = end;
        } else if c == ':' && next == ':' {
            tokens.push(Token { text: "::".to_owned(), line });
            at += 2;
        } else {
            tokens.push(Token { text: c.to_string(), line });
            at += 1;
        }
    }
    tokens
}

/// Where a raw string (`r"…"`, `r#"…"#`, `br"…"`) starting at `at` ends, if one does.
fn raw_string_end(chars: &[char], at: usize) -> Option<usize> {
    let mut start = at;
    if chars.get(start) == Some(&'b') {
        start += 1;
    }
    if chars.get(start) != Some(&'r') || (at > 0 && (chars[at - 1].is_alphanumeric() || chars[at - 1] == '_')) {
        return None;
    }
    let mut hashes = 0;
    while chars.get(start + 1 + hashes) == Some(&'#') {
        hashes += 1;
    }
    if chars.get(start + 1 + hashes) != Some(&'"') {
        return None;
    }
    let mut end = start + 2 + hashes;
    while end < chars.len() {
        if chars[end] == '"' && (0..hashes).all(|h| chars.get(end + 1 + h) == Some(&'#')) {
            return Some(end + 1 + hashes);
        }
        end += 1;
    }
    Some(chars.len())
}

/// The strongly connected components of more than one node (Tarjan), each sorted.
fn strongly_connected(nodes: usize, edges: &BTreeMap<(usize, usize), Use>) -> Vec<Vec<usize>> {
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); nodes];
    for &(from, to) in edges.keys() {
        next[from].push(to);
    }
    struct State {
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        found: Vec<Vec<usize>>,
    }
    fn visit(node: usize, next: &[Vec<usize>], state: &mut State) {
        state.index[node] = Some(state.counter);
        state.low[node] = state.counter;
        state.counter += 1;
        state.stack.push(node);
        state.on_stack[node] = true;
        for &to in &next[node] {
            match state.index[to] {
                None => {
                    visit(to, next, state);
                    state.low[node] = state.low[node].min(state.low[to]);
                }
                Some(index) if state.on_stack[to] => state.low[node] = state.low[node].min(index),
                Some(_) => {}
            }
        }
        if Some(state.low[node]) == state.index[node] {
            let mut component = Vec::new();
            while let Some(top) = state.stack.pop() {
                state.on_stack[top] = false;
                component.push(top);
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort_unstable();
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        index: vec![None; nodes],
        low: vec![0; nodes],
        on_stack: vec![false; nodes],
        stack: Vec::new(),
        counter: 0,
        found: Vec::new(),
    };
    for node in 0..nodes {
        if state.index[node].is_none() {
            visit(node, &next, &mut state);
        }
    }
    state.found.sort();
    state.found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The circles of a crate of `files`, each as its edges `a.rs -> b.rs`.
    fn circles_of(files: &[(&str, &str)]) -> Vec<Vec<String>> {
        let sources: Vec<(String, String)> =
            files.iter().map(|(name, text)| ((*name).to_owned(), (*text).to_owned())).collect();
        circle_edges(&sources)
            .into_iter()
            .map(|edges| edges.into_iter().map(|(from, to, _)| format!("{from} -> {to}")).collect())
            .collect()
    }

    const ROOT: &str = "mod a;\nmod b;\nmod c;\npub use a::A;\npub use c::{self, C as Renamed};\n";

    #[test]
    fn two_files_that_use_each_other_are_a_circle() {
        let problems = circles_of(&[
            ("lib.rs", ROOT),
            ("a.rs", "//! A.\nuse crate::b::B;\npub struct A;\n"),
            ("b.rs", "//! B.\npub struct B;\nfn f() { crate::a::A; }\n"),
        ]);
        assert_eq!(problems, [["a.rs -> b.rs", "b.rs -> a.rs"]]);
        let sources = [("a.rs", "use crate::b::B;\n"), ("b.rs", "\n\nfn f() { crate::a::A; }\n")]
            .map(|(name, text)| (name.to_owned(), text.to_owned()));
        let message = &circles_in("c/src", &sources)[0];
        assert!(
            message.starts_with(
                "c/src: an import circle, files that use each other: a.rs uses b.rs (line 1: crate::b::B); \
                 b.rs uses a.rs (line 3: crate::a::A). Move"
            ),
            "{message}"
        );
    }

    #[test]
    fn a_longer_circle_through_super_and_use_trees_is_found() {
        let problems = circles_of(&[
            ("lib.rs", ROOT),
            ("a.rs", "use super::{b::{self, B}, x};\n"),
            ("b.rs", "use crate::c;\nfn f() { c::g(); }\n"),
            ("c.rs", "use self::super::a as first;\n"),
        ]);
        assert_eq!(problems, [["a.rs -> b.rs", "b.rs -> c.rs", "c.rs -> a.rs"]], "{problems:?}");
    }

    #[test]
    fn a_name_the_root_re_exports_is_the_file_that_defines_it() {
        let problems = circles_of(&[
            ("lib.rs", ROOT),
            ("a.rs", "use crate::Renamed;\n"),
            ("c.rs", "fn f() -> crate::A { todo!() }\n"),
        ]);
        assert_eq!(problems, [["a.rs -> c.rs", "c.rs -> a.rs"]], "{problems:?}");
    }

    #[test]
    fn roots_may_be_used_by_the_files_under_them() {
        let problems = circles_of(&[
            ("lib.rs", "mod a;\nmod m;\npub struct Shared;\nfn f() { a::g(); m::h(); }\n"),
            ("a.rs", "use crate::Shared;\n"),
            ("m/mod.rs", "mod n;\npub struct Local;\nfn h() { n::g(); }\n"),
            ("m/n.rs", "use super::Local;\nuse crate::Shared;\n"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        // A `mod.rs` used from outside its directory is a file like any other.
        let problems = circles_of(&[
            ("lib.rs", "mod a;\nmod m;\n"),
            ("a.rs", "use crate::m::Local;\n"),
            ("m/mod.rs", "mod n;\npub struct Local;\nfn h() { n::g(); }\n"),
            ("m/n.rs", "use crate::a;\n"),
        ]);
        assert_eq!(problems, [["a.rs -> m/mod.rs", "m/mod.rs -> m/n.rs", "m/n.rs -> a.rs"]]);
    }

    #[test]
    fn comments_strings_tests_and_outside_crates_are_read_right() {
        let problems = circles_of(&[
            ("lib.rs", ROOT),
            (
                "a.rs",
                "//! See [`crate::b`].\n/* crate::b::B */\nconst S: &str = \"crate::b::B\";\nconst R: &str = r#\"crate::b\"#;\n\
                 const C: char = '{';\nfn f<'a>(x: &'a str) { b::g(); }\n#[cfg(test)]\nmod tests {\n    use super::*;\n    fn t() { self::f(\"\"); }\n}\n",
            ),
            ("b.rs", "use crate::a::f;\n"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        // A test module is part of its file: its uses count.
        let problems = circles_of(&[
            ("lib.rs", ROOT),
            ("a.rs", "#[cfg(test)]\nmod tests {\n    use crate::b::g;\n}\n"),
            ("b.rs", "use crate::a::f;\n"),
        ]);
        assert_eq!(problems, [["a.rs -> b.rs", "b.rs -> a.rs"]], "{problems:?}");
    }
}
