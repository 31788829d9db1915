//! The layering rules that the crate graph cannot state by itself, checked
//! by reading the manifests and the sources (`cargo test --lib`).
//!
//! The compiler already refuses a cycle between crates; what it cannot say
//! is which *downward* edges are allowed (nothing stops `domain` from
//! adding `ops-store` to its manifest), nor rules inside one crate's
//! dependency (`http` needs the `db` handle of `ops-store`, never its
//! tables). Those are here, one test each.

use std::path::{Path, PathBuf};

/// Each crate under `crates/` and the crates of this workspace it may
/// depend on: only those below it. A new crate must be placed here.
const LAYERS: &[(&str, &[&str])] = &[
    ("base", &[]),
    ("protocol", &[]),
    ("domain", &["base", "protocol"]),
    ("store", &["base", "protocol", "domain"]),
    ("app", &["base", "protocol", "domain", "store"]),
    ("http", &["base", "protocol", "domain", "store", "app"]),
    ("launcher", &["base", "protocol", "domain"]),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir` (relative to the workspace root), with its
/// text.
fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    let out: Vec<(PathBuf, String)> = files_under(dir, "rs")
        .into_iter()
        .map(|rel| {
            let path = root().join(dir).join(rel);
            let text = std::fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect();
    assert!(!out.is_empty(), "no sources under {dir}");
    out
}

/// The source lines of `dir`, comments and unit tests left out, where
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

fn assert_none(found: Vec<String>, rule: &str) {
    assert!(found.is_empty(), "{rule}:\n{}", found.join("\n"));
}

/// The `ops-*` dependencies a crate's manifest names (normal ones, not
/// dev-dependencies).
fn workspace_deps(manifest: &str) -> Vec<String> {
    let mut deps = Vec::new();
    let mut section = "";
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line;
        } else if section == "[dependencies]" {
            if let Some(name) = line.strip_prefix("ops-") {
                deps.push(name.split([' ', '=', '.']).next().unwrap().to_string());
            }
        }
    }
    deps
}

#[test]
fn each_crate_depends_only_on_the_layers_below_it() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let Some((_, allowed)) = LAYERS.iter().find(|(n, _)| *n == name) else {
            panic!("crates/{name} is not placed in layering.rs's LAYERS");
        };
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        for dep in workspace_deps(&manifest) {
            assert!(
                allowed.contains(&dep.as_str()),
                "crates/{name} depends on ops-{dep}, which is not below it (allowed: {allowed:?})"
            );
        }
        seen.push(name);
    }
    assert_eq!(
        seen.len(),
        LAYERS.len(),
        "LAYERS names a crate that is gone"
    );
}

#[test]
fn http_reaches_store_only_for_the_db_handle() {
    // `ops_store::db` (the handle, the event bus) and nothing else of the
    // store, however it is spelt: an alias (`use ops_store as s`) fails too.
    let found = offending("crates/http/src", |l| {
        l.match_indices("ops_store")
            .any(|(i, _)| !l[i..].starts_with("ops_store::db"))
    });
    assert_none(found, "http goes through app, not store's tables");
}

#[test]
fn only_store_holds_sql() {
    let sql = |l: &str| {
        let l = l.to_ascii_uppercase();
        ["SELECT ", "INSERT INTO", "DELETE FROM", "PRAGMA "]
            .iter()
            .any(|k| l.contains(k))
            || (l.contains("UPDATE ") && l.contains(" SET "))
    };
    for dir in [
        "crates/base/src",
        "crates/protocol/src",
        "crates/domain/src",
        "crates/app/src",
        "crates/http/src",
        "crates/launcher/src",
        "src",
    ] {
        assert_none(offending(dir, sql), "SQL outside crates/store");
    }
}

#[test]
fn store_returns_rows_not_json() {
    // The tables' functions; `db/` talks JSON to Litestream's socket.
    let found = offending("crates/store/src", |l| l.contains("json!"))
        .into_iter()
        .filter(|f| !f.contains("/src/db/"))
        .collect();
    assert_none(found, "store's tables build no JSON");
}

#[test]
fn app_returns_protocol_types_not_json() {
    // The return type of every public function, its signature read up to
    // its body, whatever the spelling of serde_json's `Value`.
    let mut found = Vec::new();
    for (path, text) in sources("crates/app/src") {
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (start, _) in code.match_indices("pub fn ") {
            let sig = &code[start..];
            let sig = &sig[..sig.find(['{', ';']).unwrap_or(sig.len())];
            if let Some((_, ret)) = sig.split_once("->") {
                if ret
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|w| w == "Value")
                {
                    let line = code[..start].lines().count() + 1;
                    found.push(format!("{}:{line}: {}", path.display(), sig.trim()));
                }
            }
        }
    }
    assert_none(found, "app returns protocol types, never serde_json::Value");
}

#[test]
fn only_http_serializes_responses() {
    let found = offending("crates/app/src", |l| {
        l.contains("serde_json::to_") || (l.starts_with("use serde_json::") && l.contains("to_"))
    });
    assert_none(
        found,
        "app serializes nothing: http turns bodies into bytes",
    );
}

#[test]
fn limits_are_written_not_bound() {
    // A bound LIMIT makes SQLite compile the statement again on every use
    // (see `ops_store::limit`).
    let found = offending("crates/store/src", |l| {
        let l = l.to_ascii_uppercase();
        l.contains("LIMIT ?") || l.contains("LIMIT :")
    });
    assert_none(
        found,
        "write limits with ops_store::limit, not as parameters",
    );
}

/// The length ARCHITECTURE.md keeps to: a map read in one sitting.
const MAP_MAX_LINES: usize = 300;

/// The files under `dir` (relative to the workspace root) whose name ends
/// in `.ext`, as paths relative to `dir` with `/` between folders.
fn files_under(dir: &str, ext: &str) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, ext: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, ext, out);
            } else if path.extension().is_some_and(|e| e == ext) {
                let rel = path.strip_prefix(base).unwrap();
                let parts: Vec<_> = rel.iter().map(|p| p.to_string_lossy()).collect();
                out.push(parts.join("/"));
            }
        }
    }
    let base = root().join(dir);
    let mut out = Vec::new();
    walk(&base, &base, ext, &mut out);
    out.sort();
    out
}

/// The lines of the section whose heading names `folder` in backticks, up
/// to the next heading: the part of the map about that crate.
fn section<'a>(map: &'a str, folder: &str) -> Vec<&'a str> {
    let heading = format!("`{folder}`");
    map.lines()
        .skip_while(|l| !(l.starts_with('#') && l.contains(&heading)))
        .skip(1)
        .take_while(|l| !l.starts_with('#'))
        .collect()
}

/// The backticked words of `line` that end in `/`, when `line` is an item
/// of a list (a folder's line in the map).
fn folders_named(line: &str) -> Vec<&str> {
    if !line.trim_start().starts_with("- ") {
        return Vec::new();
    }
    line.split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| w.ends_with('/'))
        .collect()
}

#[test]
fn every_source_file_is_in_the_map() {
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    // Where sources sit, and what kind: each crate's `src/`, the binary's
    // `src/`, and the web UI's scripts.
    let mut roots = vec![
        ("src/".to_string(), "rs"),
        ("crates/http/ui/".to_string(), "js"),
    ];
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        roots.push((format!("crates/{name}/src/"), "rs"));
    }
    let is_root = |f: &str| roots.iter().any(|(r, _)| r == f);
    // Folder lines anywhere in the map name folders from the repository's
    // root; a crate's section may also name them from its `src/`. A whole
    // crate's folder covers nothing: its files are named one by one.
    let anywhere: Vec<&str> = map.lines().flat_map(folders_named).collect();
    let mut missing = Vec::new();
    for (dir, ext) in &roots {
        let section = section(&map, dir);
        let in_section = |word: &str| section.iter().any(|l| l.contains(&format!("`{word}`")));
        let folders: Vec<String> = anywhere
            .iter()
            .map(|f| f.to_string())
            .chain(
                section
                    .iter()
                    .flat_map(|l| folders_named(l))
                    .map(|f| format!("{dir}{f}")),
            )
            .filter(|f| !is_root(f))
            .collect();
        for rel in files_under(dir, ext) {
            let path = format!("{dir}{rel}");
            let named = map.contains(&format!("`{path}`")) || in_section(&rel);
            if !named && !folders.iter().any(|f| path.starts_with(f.as_str())) {
                missing.push(path);
            }
        }
    }
    let lines = map.lines().count();
    let mut wrong = Vec::new();
    if lines > MAP_MAX_LINES {
        wrong.push(format!(
            "ARCHITECTURE.md has {lines} lines; it keeps to {MAP_MAX_LINES}"
        ));
    }
    if !missing.is_empty() {
        wrong.push(format!(
            "ARCHITECTURE.md does not map these files (name each in its crate's section, \
             or its folder on a list line, ending in `/`):\n{}",
            missing.join("\n")
        ));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
