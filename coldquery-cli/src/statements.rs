//! Where statements end, read with PostgreSQL's own scanner (`pg_query::scan`): a `;` inside a
//! string, a dollar-quoted function body, a quoted identifier or a comment ends nothing, and
//! several statements on one line are several statements. Also the psql command tag of a
//! statement that returned no rows (`INSERT 0 2`, `DROP TABLE`), from its leading keywords.
//!
//! What it deliberately is not: a classifier. Whether a statement reads or writes is the tools'
//! decision ([`coldquery_tools::classify`]).

use pg_query::protobuf::Token;

/// What is still open at the end of an unfinished statement; psql shows it in the
/// continuation prompt (`coldquery'> `).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Open {
    /// Nothing: the statement only lacks its `;`.
    Nothing,
    /// A `'...'` string (also `E'...'`, `B'...'`, `X'...'`).
    Quote,
    /// A `"..."` identifier.
    Identifier,
    /// A `$tag$...$tag$` string.
    Dollar,
    /// A `/* ... */` comment.
    Comment,
    /// A parenthesis.
    Paren,
}

impl Open {
    /// The character psql puts in the continuation prompt.
    pub(crate) fn prompt_char(self) -> char {
        match self {
            Open::Nothing => '-',
            Open::Quote => '\'',
            Open::Identifier => '"',
            Open::Dollar => '$',
            Open::Comment => '*',
            Open::Paren => '(',
        }
    }
}

/// A buffer split into the statements it completes and what is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Split {
    /// Complete statements, each without its `;`, in order (empty statements dropped).
    pub(crate) complete: Vec<String>,
    /// The unfinished rest (empty when only whitespace and comments are left).
    pub(crate) rest: String,
}

/// Splits `buffer` at the `;` tokens PostgreSQL's scanner finds.
pub(crate) fn split(buffer: &str) -> Split {
    let mut complete = Vec::new();
    let mut start = 0;
    for (at, _) in buffer.match_indices(';') {
        if at < start {
            continue;
        }
        let candidate = &buffer[start..=at];
        let ends_here = match pg_query::scan(candidate) {
            Ok(scanned) => {
                scanned
                    .tokens
                    .last()
                    .is_some_and(|t| t.token == Token::Ascii59 as i32 && t.end as usize == candidate.len())
                    && !inside_sql_body(candidate, &scanned.tokens)
            }
            // A `;` inside an open string, identifier or comment ends nothing. Any other scan
            // error is the server's to report: the statement ends here and PostgreSQL says why.
            Err(e) => !e.to_string().contains("unterminated"),
        };
        if ends_here {
            let statement = candidate[..candidate.len() - 1].trim();
            if !is_blank(statement) {
                complete.push(statement.to_owned());
            }
            start = at + 1;
        }
    }
    let rest = &buffer[start..];
    let rest = if is_blank(rest) { String::new() } else { rest.trim_start_matches(['\n', '\r']).to_owned() };
    Split { complete, rest }
}

/// psql's heuristic for SQL-standard function bodies: in `CREATE [OR REPLACE] FUNCTION|PROCEDURE
/// … BEGIN ATOMIC … END`, a `;` before the `END` ends nothing. BEGIN (and, inside it, CASE)
/// opens, END closes, outside parentheses — the way psqlscan.l counts them.
fn inside_sql_body(text: &str, tokens: &[pg_query::protobuf::ScanToken]) -> bool {
    let mut words = 0;
    let mut head = [' '; 4];
    let mut parens = 0i64;
    let mut depth = 0u32;
    for token in tokens {
        if is_comment(token.token) {
            continue;
        }
        if token.token == Token::Ascii40 as i32 {
            parens += 1;
            continue;
        }
        if token.token == Token::Ascii41 as i32 {
            parens -= 1;
            continue;
        }
        let is_word = token.token == Token::Ident as i32 || token.keyword_kind != 0;
        if !is_word {
            continue;
        }
        let word = text.get(token.start as usize..token.end as usize).unwrap_or("").to_ascii_lowercase();
        if words < head.len() && matches!(word.as_str(), "create" | "function" | "procedure" | "or" | "replace") {
            head[words] = word.chars().next().unwrap_or(' ');
        }
        words += 1;
        let creates_routine = head[0] == 'c'
            && (matches!(head[1], 'f' | 'p') || (head[1] == 'o' && head[2] == 'r' && matches!(head[3], 'f' | 'p')));
        if creates_routine && parens == 0 {
            match word.as_str() {
                "begin" => depth += 1,
                "case" if depth >= 1 => depth += 1,
                "end" => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    depth > 0
}

/// True when `text` holds nothing but whitespace and complete comments.
pub(crate) fn is_blank(text: &str) -> bool {
    if text.trim().is_empty() {
        return true;
    }
    match pg_query::scan(text) {
        Ok(scanned) => scanned.tokens.iter().all(|t| is_comment(t.token)),
        Err(_) => false,
    }
}

fn is_comment(token: i32) -> bool {
    token == Token::SqlComment as i32 || token == Token::CComment as i32
}

/// What an unfinished statement leaves open.
pub(crate) fn open(text: &str) -> Open {
    match pg_query::scan(text) {
        Ok(scanned) => {
            let depth = scanned.tokens.iter().fold(0i64, |depth, t| {
                if t.token == Token::Ascii40 as i32 {
                    depth + 1
                } else if t.token == Token::Ascii41 as i32 {
                    depth - 1
                } else {
                    depth
                }
            });
            if depth > 0 { Open::Paren } else { Open::Nothing }
        }
        Err(e) => {
            let message = e.to_string();
            if message.contains("dollar-quoted") {
                Open::Dollar
            } else if message.contains("quoted identifier") {
                Open::Identifier
            } else if message.contains("comment") {
                Open::Comment
            } else if message.contains("unterminated") {
                Open::Quote
            } else {
                Open::Nothing
            }
        }
    }
}

/// The words of a statement as the scanner reads them: keywords and identifiers upper-cased,
/// comments skipped, other tokens as written.
fn words(sql: &str) -> Vec<String> {
    let Ok(scanned) = pg_query::scan(sql) else {
        return sql.split_whitespace().map(str::to_ascii_uppercase).collect();
    };
    scanned
        .tokens
        .iter()
        .filter(|t| !is_comment(t.token))
        .filter_map(|t| sql.get(t.start as usize..t.end as usize))
        .map(str::to_ascii_uppercase)
        .collect()
}

/// The object types PostgreSQL names in a CREATE/ALTER/DROP command tag, longest first.
const OBJECT_TYPES: &[&str] = &[
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
    "TEXT SEARCH PARSER",
    "TEXT SEARCH TEMPLATE",
    "FOREIGN DATA WRAPPER",
    "MATERIALIZED VIEW",
    "ACCESS METHOD",
    "DEFAULT PRIVILEGES",
    "EVENT TRIGGER",
    "FOREIGN TABLE",
    "OPERATOR CLASS",
    "OPERATOR FAMILY",
    "USER MAPPING",
    "AGGREGATE",
    "CAST",
    "COLLATION",
    "CONVERSION",
    "DATABASE",
    "DOMAIN",
    "EXTENSION",
    "FUNCTION",
    "GROUP",
    "INDEX",
    "LANGUAGE",
    "OPERATOR",
    "POLICY",
    "PROCEDURE",
    "PUBLICATION",
    "ROLE",
    "ROUTINE",
    "RULE",
    "SCHEMA",
    "SEQUENCE",
    "SERVER",
    "STATISTICS",
    "SUBSCRIPTION",
    "TABLE",
    "TABLESPACE",
    "TRANSFORM",
    "TRIGGER",
    "TYPE",
    "USER",
    "VIEW",
];

/// Words between the verb and the object type that PostgreSQL leaves out of the tag
/// (`CREATE OR REPLACE FUNCTION` → `CREATE FUNCTION`, `CREATE UNIQUE INDEX` → `CREATE INDEX`).
const MODIFIERS: &[&str] = &[
    "OR",
    "REPLACE",
    "TEMP",
    "TEMPORARY",
    "UNLOGGED",
    "UNIQUE",
    "GLOBAL",
    "LOCAL",
    "RECURSIVE",
    "TRUSTED",
    "PROCEDURAL",
    "CONSTRAINT",
    "DEFAULT",
];

/// psql's command tag for a statement that returned no rows: `INSERT 0 n`, `UPDATE n`,
/// `DELETE n`, `CREATE TABLE`, `DROP TABLE`... `command` and `rows_affected` are the tool's.
pub(crate) fn command_tag(sql: &str, command: &str, rows_affected: Option<u64>) -> String {
    let counted = |tag: &str| match rows_affected {
        Some(n) => format!("{tag} {n}"),
        None => tag.to_owned(),
    };
    match command {
        "INSERT" => return format!("INSERT 0 {}", rows_affected.unwrap_or(0)),
        "UPDATE" | "DELETE" | "MERGE" | "COPY" | "SELECT" | "FETCH" | "MOVE" => return counted(command),
        // PostgreSQL tags CREATE TABLE AS and SELECT INTO by the rows they stored.
        "CREATE TABLE AS" | "SELECT INTO" if rows_affected.is_some() => return counted("SELECT"),
        _ => {}
    }
    let words = words(sql);
    let Some(verb) = words.first() else { return command.to_owned() };
    if matches!(verb.as_str(), "CREATE" | "ALTER" | "DROP") {
        let mut rest = &words[1..];
        while rest.first().is_some_and(|w| MODIFIERS.contains(&w.as_str())) {
            rest = &rest[1..];
        }
        for object in OBJECT_TYPES {
            let parts: Vec<&str> = object.split(' ').collect();
            if rest.len() >= parts.len() && rest.iter().zip(&parts).all(|(w, p)| w == p) {
                return format!("{verb} {object}");
            }
        }
    }
    match verb.as_str() {
        "TRUNCATE" => "TRUNCATE TABLE".to_owned(),
        "GRANT" | "REVOKE" | "COMMENT" | "ANALYZE" | "VACUUM" | "CLUSTER" | "REINDEX" | "CALL" | "DO" | "SET"
        | "RESET" | "LOCK" | "REFRESH" | "SECURITY" | "NOTIFY" | "LISTEN" | "CHECKPOINT" => {
            if verb == "LOCK" {
                "LOCK TABLE".to_owned()
            } else if verb == "REFRESH" {
                "REFRESH MATERIALIZED VIEW".to_owned()
            } else if verb == "SECURITY" {
                "SECURITY LABEL".to_owned()
            } else {
                verb.clone()
            }
        }
        _ => counted(command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(buffer: &str, complete: &[&str], rest: &str) {
        let split = split(buffer);
        assert_eq!(split.complete, complete, "{buffer:?}");
        assert_eq!(split.rest, rest, "{buffer:?}");
    }

    #[test]
    fn statements_end_at_the_semicolons_the_scanner_sees() {
        check("SELECT 1; SELECT 2;", &["SELECT 1", "SELECT 2"], "");
        check("SELECT 1; SELECT 2", &["SELECT 1"], " SELECT 2");
        check("SELECT ';'", &[], "SELECT ';'");
        check("SELECT 'a;\nb';", &["SELECT 'a;\nb'"], "");
        check("SELECT \"odd;name\" FROM t;", &["SELECT \"odd;name\" FROM t"], "");
        check("SELECT E'\\';' ;", &["SELECT E'\\';'"], "");
        check("SELECT 1 -- not yet;\n", &[], "SELECT 1 -- not yet;\n");
        check("SELECT 1; -- a comment; with semicolons", &["SELECT 1"], "");
        check("SELECT /* ; */ 1;", &["SELECT /* ; */ 1"], "");
        check(";;  ;", &[], "");
        let function = "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\nBEGIN\n  PERFORM 1;\n  RETURN 2;\nEND\n$body$;";
        check(function, &[&function[..function.len() - 1]], "");
        check(&function[..function.len() - 9], &[], &function[..function.len() - 9]);
        // SQL-standard bodies: the ';' inside BEGIN ATOMIC ... END ends nothing.
        let atomic = "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN true THEN 1 END;\n  SELECT 2;\nEND";
        check(&format!("{atomic}; SELECT 3;"), &[atomic, "SELECT 3"], "");
        check(atomic, &[], atomic);
        check("BEGIN; SELECT 1; END;", &["BEGIN", "SELECT 1", "END"], "");
        check("CREATE TABLE t (a int); SELECT 1;", &["CREATE TABLE t (a int)", "SELECT 1"], "");
    }

    #[test]
    fn an_unfinished_statement_says_what_is_open() {
        assert_eq!(open("SELECT 'abc"), Open::Quote);
        assert_eq!(open("SELECT \"abc"), Open::Identifier);
        assert_eq!(open("SELECT $$abc"), Open::Dollar);
        assert_eq!(open("SELECT /* abc"), Open::Comment);
        assert_eq!(open("SELECT (1"), Open::Paren);
        assert_eq!(open("SELECT 1"), Open::Nothing);
    }

    #[test]
    fn command_tags_are_psqls() {
        assert_eq!(command_tag("INSERT INTO t VALUES (1), (2)", "INSERT", Some(2)), "INSERT 0 2");
        assert_eq!(command_tag("delete from t", "DELETE", Some(5)), "DELETE 5");
        assert_eq!(command_tag("DROP TABLE IF EXISTS t", "DROP", None), "DROP TABLE");
        assert_eq!(command_tag("drop materialized view m", "DROP", None), "DROP MATERIALIZED VIEW");
        assert_eq!(command_tag("CREATE OR REPLACE FUNCTION f()", "CREATE FUNCTION", None), "CREATE FUNCTION");
        assert_eq!(command_tag("CREATE UNIQUE INDEX i ON t (a)", "CREATE INDEX", None), "CREATE INDEX");
        assert_eq!(command_tag("CREATE TEMP TABLE x (a int)", "CREATE TABLE", None), "CREATE TABLE");
        assert_eq!(command_tag("ALTER TABLE t ADD b int", "ALTER TABLE", None), "ALTER TABLE");
        assert_eq!(command_tag("/* c */ TRUNCATE t", "TRUNCATE", None), "TRUNCATE TABLE");
        assert_eq!(command_tag("COMMENT ON TABLE t IS 'x'", "COMMENT", None), "COMMENT");
    }
}
