//! `cargo xtask tidy`: checks on the source tree that need no compiler, run among CI's fast
//! checks (and as a test of xtask).
//!
//! - Every `.rs` file of every workspace crate starts with a module doc comment (`//!`).
//! - docs/ARCHITECTURE.md names every module of every crate: each file under `<crate>/src`
//!   other than the crate root (`lib.rs`, `main.rs`) appears, in backticks and relative to
//!   `src` (`ctx.rs`, `catalog/policy.rs`; a `mod.rs` as its directory, `catalog/`), in the
//!   section of its crate (`` ### `coldquery-pg` ``); and every `.rs` file a section names
//!   exists (relative to the crate's `src`, the crate, or the repository).
//! - No source file (but this one, which spells the patterns) cites the numbered findings of
//!   notes that are not in the repository: a comment states the behaviour itself.
//! - No two files of a crate's `src` use each other, directly or around a longer circle
//!   ([`crate::imports`] says what counts as a use).

use std::path::{Path, PathBuf};

use crate::error::{Context, Result, bail};
use crate::root;

/// What cites a document that is not in the repository (`finding 3`, `reliability notes`).
const STALE_CITATIONS: &[&str] = &["reliability notes", "finding "];

/// This file, which names the stale patterns.
const THIS_FILE: &str = "xtask/src/tidy.rs";

/// Runs every check on the workspace; the error lists every problem found.
pub(crate) fn tidy() -> Result<()> {
    eprintln!("\n==> tidy");
    let problems = problems(&root())?;
    if !problems.is_empty() {
        bail!("tidy found {} problem(s):\n  {}", problems.len(), problems.join("\n  "));
    }
    eprintln!("<== tidy: ok");
    Ok(())
}

/// Every problem in the workspace at `root`, one line each.
fn problems(root: &Path) -> Result<Vec<String>> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).context("reading Cargo.toml")?;
    let members = workspace_members(&manifest);
    if members.is_empty() {
        bail!("no workspace members in Cargo.toml");
    }
    let architecture =
        std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).context("reading docs/ARCHITECTURE.md")?;
    let mut problems = Vec::new();
    for member in &members {
        let dir = root.join(member);
        let files = rust_files(&dir)?;
        for file in &files {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let shown = file.strip_prefix(root).unwrap_or(file).display().to_string();
            if !starts_with_module_doc(&text) {
                problems.push(format!("{shown}: does not start with a module doc comment (//!)"));
            }
            for citation in stale_citations(&text).into_iter().filter(|_| shown != THIS_FILE) {
                problems.push(format!("{shown}: cites {citation:?}, a document that is not in the repository"));
            }
        }
        let src = dir.join("src");
        let in_src: Vec<PathBuf> = files.iter().filter(|file| file.starts_with(&src)).cloned().collect();
        problems.extend(crate::imports::circles(&src, &format!("{member}/src"), &in_src)?);
        let modules: Vec<String> =
            files.iter().filter_map(|file| file.strip_prefix(dir.join("src")).ok()).filter_map(module_name).collect();
        problems.extend(architecture_problems(&architecture, member, &modules, &|name| {
            [dir.join("src"), dir.clone(), root.to_path_buf()].iter().any(|base| base.join(name).is_file())
        }));
    }
    Ok(problems)
}

/// The `members = [...]` of the workspace manifest.
fn workspace_members(manifest: &str) -> Vec<String> {
    let Some(start) = manifest.find("members") else {
        return Vec::new();
    };
    let rest = &manifest[start..];
    let (Some(open), Some(close)) = (rest.find('['), rest.find(']')) else {
        return Vec::new();
    };
    rest[open + 1..close]
        .split(',')
        .map(|item| item.trim().trim_matches('"').to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

/// The `.rs` files under `dir`, sorted, skipping build output and hidden directories.
fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).with_context(|| format!("listing {}", current.display()))? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    pending.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The first line that is not blank is a `//!` comment.
fn starts_with_module_doc(text: &str) -> bool {
    text.lines().find(|line| !line.trim().is_empty()).is_some_and(|line| line.starts_with("//!"))
}

/// The citations of documents outside the repository in `text`.
fn stale_citations(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut found = Vec::new();
    for pattern in STALE_CITATIONS {
        for (at, _) in lower.match_indices(pattern) {
            let after = &lower[at + pattern.len()..];
            // "finding " counts only before a number: "finding 7", not "finding the blockers".
            if *pattern == "finding " && !after.starts_with(|c: char| c.is_ascii_digit()) {
                continue;
            }
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == ' ' || c == '.')).unwrap_or(after.len());
            found.push(format!("{pattern}{}", &after[..end.min(12)]).trim().to_owned());
        }
    }
    found
}

/// How ARCHITECTURE.md must name the module in `path` (relative to `src`): `ctx.rs`,
/// `catalog/policy.rs`, `catalog/` for `catalog/mod.rs`; `None` for the crate roots.
fn module_name(path: &Path) -> Option<String> {
    let name = path.to_str()?.replace('\\', "/");
    match name.as_str() {
        "lib.rs" | "main.rs" => None,
        _ => Some(name.strip_suffix("mod.rs").map(str::to_owned).unwrap_or(name)),
    }
}

/// What is wrong with the section of `member` in `architecture`: a module it does not name, a
/// `.rs` file it names that `exists` says is not there.
fn architecture_problems(
    architecture: &str,
    member: &str,
    modules: &[String],
    exists: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let heading = format!("### `{member}`");
    let Some(start) = architecture.lines().position(|line| line.trim() == heading) else {
        return vec![format!("docs/ARCHITECTURE.md: no section {heading}")];
    };
    let section: Vec<&str> = architecture.lines().skip(start + 1).take_while(|line| !line.starts_with("##")).collect();
    let section = section.join("\n");
    let mut problems = Vec::new();
    for module in modules {
        if !section.contains(&format!("`{module}`")) {
            problems.push(format!("docs/ARCHITECTURE.md: the {member} section does not name `{module}`"));
        }
    }
    for named in section.split('`').skip(1).step_by(2) {
        let plain = !named.contains(' ') && !named.contains("::");
        if plain && named.ends_with(".rs") && !exists(named) {
            problems.push(format!("docs/ARCHITECTURE.md: the {member} section names `{named}`, which does not exist"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository itself passes: a module without a doc comment, a module the architecture
    /// does not name or a stale citation fails this test (and `cargo xtask ci`).
    #[test]
    fn the_workspace_is_tidy() {
        let problems = problems(&root()).unwrap();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn module_docs_come_first() {
        assert!(starts_with_module_doc("\n//! The module.\n\nuse std::fmt;\n"));
        assert!(!starts_with_module_doc("use std::fmt;\n//! Too late.\n"));
        assert!(!starts_with_module_doc("/// An item doc.\nfn f() {}\n"));
        assert!(!starts_with_module_doc(""));
    }

    #[test]
    fn numbered_findings_are_stale_and_words_are_not() {
        assert_eq!(stale_citations("// see reliability notes, finding 7)."), ["reliability notes", "finding 7"]);
        assert_eq!(stale_citations("//! (Reliability finding 1), so"), ["finding 1"]);
        assert!(stale_citations("// names the blockers after finding them").is_empty());
    }

    #[test]
    fn members_and_module_names() {
        let manifest = "[workspace]\nresolver = \"3\"\nmembers = [\n    \"core\",\n    \"tests\",\n]\n";
        assert_eq!(workspace_members(manifest), ["core", "tests"]);
        assert_eq!(module_name(Path::new("ctx.rs")).as_deref(), Some("ctx.rs"));
        assert_eq!(module_name(Path::new("catalog/mod.rs")).as_deref(), Some("catalog/"));
        assert_eq!(module_name(Path::new("catalog/schema.rs")).as_deref(), Some("catalog/schema.rs"));
        assert_eq!(module_name(Path::new("lib.rs")), None);
    }

    #[test]
    fn the_architecture_names_each_module_in_its_crates_section() {
        let doc = "# A\n\n### `core`\n\n`sql.rs` holds SQL; `gone.rs` was removed.\n\n### `pg`\n\n`run.rs` runs.\n\n## Other\n";
        let modules = ["sql.rs".to_owned(), "value.rs".to_owned()];
        let problems = architecture_problems(doc, "core", &modules, &|name| name == "sql.rs");
        assert_eq!(
            problems,
            [
                "docs/ARCHITECTURE.md: the core section does not name `value.rs`",
                "docs/ARCHITECTURE.md: the core section names `gone.rs`, which does not exist",
            ]
        );
        // `run.rs` is named, but in another crate's section.
        assert_eq!(
            architecture_problems(doc, "core", &["run.rs".to_owned()], &|_| true),
            ["docs/ARCHITECTURE.md: the core section does not name `run.rs`"]
        );
        assert_eq!(architecture_problems(doc, "cli", &[], &|_| true), ["docs/ARCHITECTURE.md: no section ### `cli`"]);
    }
}
