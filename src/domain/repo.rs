//! Where a task's code lives: a repository on the launcher hosts and the
//! ref its branch starts from. Neither is ever passed through a shell
//! (the launcher runs `git` with an argument vector), so only what git and
//! the file system would misread is refused.

use crate::error::{Error, Result};

const PATH_MAX: usize = 4096;
const REF_MAX: usize = 255;

/// An absolute path without `.`/`..` components or control characters.
pub fn check_repo_path(field: &str, p: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid_field(field, format!("{why}, got {p:?}")));
    if !p.starts_with('/') {
        return bad("must be an absolute path (starting with /)");
    }
    if p.len() > PATH_MAX {
        return bad(&format!("must be at most {PATH_MAX} bytes"));
    }
    if p.chars().any(char::is_control) {
        return bad("must not contain control characters");
    }
    if p.split('/').any(|c| c == "." || c == "..") {
        return bad("must not contain . or .. components");
    }
    Ok(())
}

/// A branch, tag or commit name as `git check-ref-format` would take it
/// (its rules that matter here), and never an option (`-…`).
pub fn check_base_ref(field: &str, r: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid_field(field, format!("{why}, got {r:?}")));
    if r.is_empty() || r.len() > REF_MAX {
        return bad(&format!("must be 1 to {REF_MAX} bytes"));
    }
    if r.starts_with('-') {
        return bad("must not start with -");
    }
    if r.chars()
        .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        return bad("must not contain spaces, control characters or any of ~ ^ : ? * [ \\");
    }
    if r.contains("..") || r.contains("@{") || r.contains("//") {
        return bad("must not contain .., @{ or //");
    }
    if r.starts_with('/') || r.ends_with('/') || r.ends_with('.') || r.ends_with(".lock") {
        return bad("must not start or end with /, or end with . or .lock");
    }
    if r.split('/').any(|c| c.starts_with('.')) {
        return bad("must not have a component starting with .");
    }
    Ok(())
}

/// The repository a task runs in: its own, else its workspace's. The
/// base ref goes with the path it came from.
pub fn effective<'a>(
    task: (Option<&'a str>, Option<&'a str>),
    workspace: (Option<&'a str>, Option<&'a str>),
) -> Option<(&'a str, Option<&'a str>)> {
    match (task, workspace) {
        ((Some(p), r), _) => Some((p, r)),
        ((None, task_ref), (Some(p), ws_ref)) => Some((p, task_ref.or(ws_ref))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(check_repo_path("repo_path", "/srv/app").is_ok());
        assert!(check_repo_path("repo_path", "/srv/my app; rm -rf").is_ok());
        assert!(check_repo_path("repo_path", "srv/app").is_err());
        assert!(check_repo_path("repo_path", "/srv/../etc").is_err());
        assert!(check_repo_path("repo_path", "/srv/a\nb").is_err());
    }

    #[test]
    fn refs() {
        for ok in ["main", "release/1.2", "v1.0", "a1b2c3d", "origin/main"] {
            assert!(check_base_ref("base_ref", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "--upload-pack=x",
            "a b",
            "a..b",
            "a~1",
            "a^",
            "x:y",
            "x.lock",
            "/x",
            "x/",
            "x/.y",
            "a@{1}",
        ] {
            assert!(check_base_ref("base_ref", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn task_overrides_workspace() {
        assert_eq!(
            effective((None, None), (Some("/w"), Some("dev"))),
            Some(("/w", Some("dev")))
        );
        assert_eq!(
            effective((Some("/t"), None), (Some("/w"), Some("dev"))),
            Some(("/t", None))
        );
        assert_eq!(
            effective((None, Some("x")), (Some("/w"), Some("dev"))),
            Some(("/w", Some("x")))
        );
        assert_eq!(effective((None, Some("x")), (None, None)), None);
    }
}
