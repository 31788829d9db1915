//! Where a task's code lives: a repository on the launcher hosts and the
//! ref its branch starts from, and which repositories a workspace lets
//! its tasks name. Neither is ever passed through a shell (the launcher
//! runs `git` with an argument vector), so only what git and the file
//! system would misread, and what would show a person something other
//! than what runs, is refused.

use unicode_general_category::{get_general_category, GeneralCategory};

use ops_base::error::{Error, Result};

const PATH_MAX: usize = 4096;
const REF_MAX: usize = 255;
/// A workspace lists at most this many roots.
pub const ROOTS_MAX: usize = 64;

/// The first character of `s` that a person would not see as it is: a
/// control (Cc), a format character (Cf: U+202E RIGHT-TO-LEFT OVERRIDE,
/// U+200B ZERO WIDTH SPACE, U+FEFF, U+00AD SOFT HYPHEN…) or a line or
/// paragraph separator (Zl, Zp). With its category's abbreviation.
fn hidden_char(s: &str) -> Option<(char, &'static str)> {
    s.chars().find_map(|c| match get_general_category(c) {
        cat @ (GeneralCategory::Control
        | GeneralCategory::Format
        | GeneralCategory::LineSeparator
        | GeneralCategory::ParagraphSeparator) => Some((c, cat.abbreviation())),
        _ => None,
    })
}

/// Refuses control, format and separator characters (general categories
/// Cc, Cf, Zl, Zp) in `field`, naming the first one found by its code
/// point. A path or ref holding one reads differently on a screen (an
/// approver's, a reviewer's) than what the launcher uses.
pub fn check_visible(field: &str, s: &str) -> Result<()> {
    match hidden_char(s) {
        None => Ok(()),
        Some((c, cat)) => Err(Error::invalid_field(
            field,
            format!(
                "must not contain control, format or separator characters (Unicode Cc, Cf, Zl, Zp); \
                 found U+{:04X} ({cat})",
                c as u32
            ),
        )),
    }
}

/// An absolute path without `.`/`..` components or control, format or
/// separator characters.
pub fn check_repo_path(field: &str, p: &str) -> Result<()> {
    check_visible(field, p)?;
    let bad = |why: &str| Err(Error::invalid_field(field, format!("{why}, got {p:?}")));
    if !p.starts_with('/') {
        return bad("must be an absolute path (starting with /)");
    }
    if p.len() > PATH_MAX {
        return bad(&format!("must be at most {PATH_MAX} bytes"));
    }
    if p.split('/').any(|c| c == "." || c == "..") {
        return bad("must not contain . or .. components");
    }
    Ok(())
}

/// A branch, tag or commit name as `git check-ref-format` would take it
/// (its rules that matter here), and never an option (`-…`).
pub fn check_base_ref(field: &str, r: &str) -> Result<()> {
    check_visible(field, r)?;
    let bad = |why: &str| Err(Error::invalid_field(field, format!("{why}, got {r:?}")));
    if r.is_empty() || r.len() > REF_MAX {
        return bad(&format!("must be 1 to {REF_MAX} bytes"));
    }
    if r.starts_with('-') {
        return bad("must not start with -");
    }
    if r.chars()
        .any(|c| c.is_whitespace() || "~^:?*[\\".contains(c))
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

/// A workspace's allowed roots: each a path as [`check_repo_path`] takes
/// it (named `repo_roots[i]` when refused), at most [`ROOTS_MAX`].
/// Returned sorted, without duplicates.
pub fn check_roots(roots: Vec<String>) -> Result<Vec<String>> {
    if roots.len() > ROOTS_MAX {
        return Err(Error::invalid_field(
            "repo_roots",
            format!("must list at most {ROOTS_MAX} paths, got {}", roots.len()),
        ));
    }
    for (i, r) in roots.iter().enumerate() {
        check_repo_path(&format!("repo_roots[{i}]"), r)?;
    }
    let mut roots = roots;
    roots.sort();
    roots.dedup();
    Ok(roots)
}

/// The components of an absolute path: `/srv//repos/` is `srv`, `repos`.
fn components(p: &str) -> impl Iterator<Item = &str> {
    p.split('/').filter(|c| !c.is_empty())
}

/// Whether `path` is `root` or lies under it, component by component:
/// `/srv/repos` holds `/srv/repos/app` but not `/srv/reposX/app`.
pub fn is_under(path: &str, root: &str) -> bool {
    let mut p = components(path);
    components(root).all(|r| p.next() == Some(r))
}

/// What a workspace lets its tasks name as their own repository: its own
/// repository, and any path under one of its roots.
#[derive(Clone, Copy, Debug)]
pub struct Allowed<'a> {
    pub workspace_id: i64,
    pub repo_path: Option<&'a str>,
    pub roots: &'a [String],
}

impl Allowed<'_> {
    /// Whether a task of the workspace may run in `path`.
    pub fn permits(&self, path: &str) -> bool {
        self.repo_path
            .is_some_and(|own| components(own).eq(components(path)))
            || self.roots.iter().any(|root| is_under(path, root))
    }

    /// Why `path` is not allowed, naming what is; `None` when it is.
    pub fn refusal(&self, path: &str) -> Option<String> {
        if self.permits(path) {
            return None;
        }
        let ws = self.workspace_id;
        let own = self
            .repo_path
            .map(|p| format!("the workspace's repo_path ({p}) or "))
            .unwrap_or_default();
        Some(if self.roots.is_empty() {
            format!(
                "{path:?} is not allowed in workspace {ws}: a task's repository must be {own}under \
                 one of the workspace's repo_roots, and the workspace allows none; a workspace \
                 admin must set repo_roots first (PATCH /api/workspaces/{ws})"
            )
        } else {
            format!(
                "{path:?} is not allowed in workspace {ws}: a task's repository must be {own}under \
                 one of the workspace's repo_roots: {}",
                self.roots.join(", ")
            )
        })
    }

    /// [`Allowed::refusal`] as a 400 naming `field`.
    pub fn check(&self, field: &str, path: &str) -> Result<()> {
        match self.refusal(path) {
            None => Ok(()),
            Some(why) => Err(Error::invalid_field(field, why)),
        }
    }
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
    fn hidden_characters_are_named_by_code_point() {
        for (c, cat) in [
            ('\u{202E}', "Cf"),
            ('\u{2028}', "Zl"),
            ('\u{2029}', "Zp"),
            ('\u{200B}', "Cf"),
            ('\u{FEFF}', "Cf"),
            ('\u{00AD}', "Cf"),
            ('\u{0085}', "Cc"),
            ('\n', "Cc"),
        ] {
            let code = format!("U+{:04X} ({cat})", c as u32);
            for (field, value, check) in [
                (
                    "repo_path",
                    format!("/srv/a{c}b"),
                    check_repo_path as fn(&str, &str) -> Result<()>,
                ),
                ("base_ref", format!("ma{c}in"), check_base_ref),
                ("repo_roots[0]", format!("/srv/{c}"), check_repo_path),
            ] {
                let e = check(field, &value).unwrap_err().to_string();
                assert!(
                    e.contains(&format!("field `{field}`")) && e.contains(&code),
                    "{e}"
                );
            }
        }
        // Visible non-ASCII is fine in a path (never in a shell).
        assert!(check_repo_path("repo_path", "/srv/código/ñ app").is_ok());
        assert!(
            check_visible("x", "a\u{00A0}b").is_ok(),
            "a no-break space is Zs"
        );
    }

    #[test]
    fn roots_hold_paths_by_components() {
        assert!(is_under("/srv/repos/app", "/srv/repos"));
        assert!(is_under("/srv/repos/app/sub", "/srv/repos/"));
        assert!(is_under("/srv/repos", "/srv/repos"));
        assert!(is_under("/srv//repos/app", "/srv/repos"));
        assert!(is_under("/anything", "/"));
        assert!(!is_under("/srv/reposX/app", "/srv/repos"));
        assert!(!is_under("/srv/repo", "/srv/repos"));
        assert!(!is_under("/srv", "/srv/repos"));
        assert!(!is_under("/opt/srv/repos", "/srv/repos"));
    }

    #[test]
    fn a_workspace_allows_its_own_repository_and_its_roots() {
        let roots = vec!["/srv/repos".to_string(), "/opt/work".to_string()];
        let ws = Allowed {
            workspace_id: 3,
            repo_path: Some("/srv/main/"),
            roots: &roots,
        };
        for ok in ["/srv/main", "/srv/repos/app", "/opt/work", "/opt/work/x/y"] {
            assert!(ws.check("repo_path", ok).is_ok(), "{ok}");
        }
        for bad in ["/srv/main/sub", "/srv/reposX/app", "/opt", "/etc"] {
            let e = ws.check("repo_path", bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{bad:?} is not allowed in workspace 3"))
                    && e.contains("repo_path (/srv/main/)")
                    && e.contains("repo_roots: /srv/repos, /opt/work"),
                "{e}"
            );
        }
        let none = Allowed {
            workspace_id: 3,
            repo_path: None,
            roots: &[],
        };
        let e = none.check("repo_path", "/srv/x").unwrap_err().to_string();
        assert!(
            e.contains("allows none") && e.contains("set repo_roots first"),
            "{e}"
        );
        assert!(e.starts_with("field `repo_path`"), "{e}");
    }

    #[test]
    fn roots_are_checked_sorted_and_deduplicated() {
        let r = check_roots(vec!["/b".into(), "/a".into(), "/b".into()]).unwrap();
        assert_eq!(r, ["/a", "/b"]);
        let e = check_roots(vec!["/a".into(), "rel".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `repo_roots[1]`"), "{e}");
        let e = check_roots(vec!["/a".into(); ROOTS_MAX + 1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most"), "{e}");
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
