//! `docs/SPEC.md` stays the contract of what is built: every operation the
//! running server lists in its OpenAPI document is named there, and no
//! file under `src/` or `crates/` cites a document the repository does not hold.

use std::path::{Path, PathBuf};

use crate::util::Server;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `doc` names the operation `METHOD path`, the path written as
/// the route table has it (`/api/tasks/{id}`) or with `:id`, and not as
/// the start of a longer path.
fn names(doc: &str, method: &str, path: &str) -> bool {
    let colon: Vec<String> = path
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => format!(":{name}"),
                None => seg.to_string(),
            },
        )
        .collect();
    [path.to_string(), colon.join("/")].iter().any(|p| {
        let needle = format!("{method} {p}");
        doc.match_indices(&needle).any(|(at, _)| {
            doc[at + needle.len()..].chars().next().map_or(true, |c| {
                !(c.is_ascii_alphanumeric() || "/_-{}:".contains(c))
            })
        })
    })
}

#[test]
fn every_served_operation_is_in_the_spec() {
    let doc = std::fs::read_to_string(repo().join("docs/SPEC.md")).expect("docs/SPEC.md");
    // A test server: its test-only routes are listed, and must be named too.
    let srv = Server::start();
    let r = srv.client().get("/api/openapi.json");
    assert_eq!(r.status, 200, "{}", r.text);
    let paths = r.json["paths"].as_object().expect("paths");
    assert!(!paths.is_empty(), "no paths in {}", r.text);
    let mut missing = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            let method = method.to_ascii_uppercase();
            if !names(&doc, &method, path) {
                missing.push(format!("{method} {path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/SPEC.md does not name these operations of GET /api/openapi.json: {}",
        missing.join(", ")
    );
}

#[test]
fn every_exported_metric_is_in_the_spec() {
    let doc = std::fs::read_to_string(repo().join("docs/SPEC.md")).expect("docs/SPEC.md");
    let srv = Server::start();
    let r = srv.service().get("/metrics");
    assert_eq!(r.status, 200, "{}", r.text);
    let names: Vec<&str> = r
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(names.len() > 10, "too few metrics: {}", r.text);
    let missing: Vec<&str> = names
        .into_iter()
        .filter(|n| {
            !doc.contains(&format!("`{n}`"))
                && !doc.contains(&format!("`{n}{{"))
                && !doc.contains(&format!("`{n},"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/SPEC.md does not name these metrics of GET /metrics: {}",
        missing.join(", ")
    );
}

/// The documents `line` cites: words ending in `.md` that name a document
/// of the repository, either an upper-case name (`README.md`) or a path
/// from the repository's root (`docs/SPEC.md`). Absolute paths and file
/// names such as `task-1.prompt.md` are files of a running launcher.
fn cited(line: &str) -> Vec<String> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || "._/-".contains(c)))
        .map(|w| w.trim_end_matches('.'))
        .filter_map(|w| {
            let stem = w.strip_suffix(".md")?;
            if w.starts_with('/') || w.starts_with('.') {
                return None;
            }
            let name = stem.rsplit('/').next().unwrap_or(stem);
            if name.is_empty() || name.contains('.') {
                return None;
            }
            let upper = name.chars().any(|c| c.is_ascii_uppercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || "_-".contains(c));
            (upper || stem.contains('/')).then(|| w.to_string())
        })
        .collect()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn sources_cite_only_documents_the_repository_holds() {
    let root = repo();
    let mut all = Vec::new();
    files(&root.join("src"), &mut all);
    files(&root.join("crates"), &mut all);
    all.sort();
    let mut missing = Vec::new();
    for file in &all {
        let text = String::from_utf8_lossy(&std::fs::read(file).expect("read")).into_owned();
        for (n, line) in text.lines().enumerate() {
            for doc in cited(line) {
                if !root.join(&doc).is_file() {
                    let shown = file.strip_prefix(&root).unwrap_or(file);
                    missing.push(format!("{}:{}: {doc}", shown.display(), n + 1));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documents cited but not in the repository (cite them by their path from its root): {}",
        missing.join("; ")
    );
}

#[test]
fn the_citation_rules_tell_documents_from_launcher_files() {
    assert_eq!(
        cited("//! See ARCHITECTURE.md for the map, and docs/SPEC.md §4."),
        ["ARCHITECTURE.md", "docs/SPEC.md"]
    );
    assert_eq!(
        cited("the table of NOTES.md, PLAN-2.md."),
        ["NOTES.md", "PLAN-2.md"]
    );
    for runtime in [
        r#"prompt_file: "/tmp/p q.md","#,
        "/var/lib/l/task-1.prompt.md",
        r#"path_of(".prompt.md")"#,
        "task-4-20260101T000000Z.prompt.md",
    ] {
        assert!(cited(runtime).is_empty(), "{runtime}: {:?}", cited(runtime));
    }
    let doc = "| `GET /api/tasks/{id}` | x |\n`POST /api/tasks/:id/archive`, `GET /metrics`.";
    assert!(names(doc, "GET", "/api/tasks/{id}"));
    assert!(names(doc, "POST", "/api/tasks/{id}/archive"));
    assert!(names(doc, "GET", "/metrics"));
    assert!(!names(doc, "GET", "/api/tasks"));
    assert!(!names(doc, "DELETE", "/api/tasks/{id}"));
}
