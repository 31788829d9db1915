//! The layering rules of ARCHITECTURE.md that the compiler cannot keep
//! (`store` must stay visible to `app`, `db` and `ops`, so Rust's
//! visibility cannot hide it from `http` alone): checked here by reading
//! the sources. A rule broken in a new file fails `cargo test --lib`.

use std::path::{Path, PathBuf};

fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir),
        &mut out,
    );
    assert!(!out.is_empty(), "no sources under src/{dir}");
    out
}

/// The lines of `dir`'s sources, comments and unit tests left out, where
/// `bad` says a line breaks the rule.
fn offending(dir: &str, bad: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in sources(dir) {
        // Unit tests sit at the end of a file, after `#[cfg(test)]`.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            let line = line.trim();
            if !line.starts_with("//") && bad(line) {
                found.push(format!("{}:{}: {line}", path.display(), n + 1));
            }
        }
    }
    found
}

#[test]
fn http_never_reaches_store() {
    let found = offending("http", |l| l.contains("store::"));
    assert!(
        found.is_empty(),
        "http/ must go through app/:\n{}",
        found.join("\n")
    );
}

#[test]
fn store_returns_rows_not_json() {
    let found = offending("store", |l| l.contains("json!"));
    assert!(
        found.is_empty(),
        "store/ builds no JSON:\n{}",
        found.join("\n")
    );
}

#[test]
fn app_returns_protocol_types_not_json() {
    let found = offending("app", |l| {
        l.contains("-> Value")
            || l.contains("Result<Value>")
            || l.contains("Vec<Value>")
            || l.contains("-> serde_json::Value")
    });
    assert!(
        found.is_empty(),
        "app/ returns protocol types, never serde_json::Value:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_http_serializes_responses() {
    // The one place a protocol body becomes bytes is `Resp::json`.
    let found = offending("app", |l| {
        l.contains("serde_json::to_string") || l.contains("serde_json::to_vec")
    });
    assert!(
        found.is_empty(),
        "app/ serializes nothing:\n{}",
        found.join("\n")
    );
}

#[test]
fn protocol_holds_data_only() {
    let found = offending("protocol", |l| {
        [
            "crate::store",
            "crate::app",
            "crate::db",
            "crate::http",
            "rusqlite",
            "std::fs",
            "std::net",
        ]
        .iter()
        .any(|m| l.contains(m))
    });
    assert!(
        found.is_empty(),
        "protocol/ depends on nothing but serde:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_store_and_db_hold_sql() {
    let sql = |l: &str| {
        ["SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM"]
            .iter()
            .any(|k| l.contains(k))
    };
    for dir in ["app", "http", "domain", "launcher", "ops", "protocol"] {
        let found = offending(dir, sql);
        assert!(
            found.is_empty(),
            "SQL outside store/:\n{}",
            found.join("\n")
        );
    }
}

#[test]
fn limits_are_written_not_bound() {
    // A bound LIMIT makes SQLite compile the statement again on every use
    // (see `store::limit`).
    let found = offending("store", |l| {
        let l = l.to_ascii_uppercase();
        l.contains("LIMIT ?") || l.contains("LIMIT :")
    });
    assert!(
        found.is_empty(),
        "write limits with store::limit, not as parameters:\n{}",
        found.join("\n")
    );
}
