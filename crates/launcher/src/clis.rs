//! What is known about each real agent CLI, in one table: its one-shot
//! command, how it learns whether it is logged in, and what it prints when
//! it is not. Each row names the release it was checked against; a CLI
//! release that changes a flag is a one-line change here (and a failing
//! `packaging/tests/real-clis.sh`).

/// One known agent CLI.
pub struct KnownCli {
    pub slug: &'static str,
    /// The program (first word of `command`).
    pub cli: &'static str,
    /// The release these lines were checked against.
    pub checked: &'static str,
    /// Non-interactive, one task per run. The prompt goes on stdin where
    /// the CLI reads it there, else as `{prompt}`; `[ … ]` words are left
    /// out when the task has no model.
    pub command: &'static str,
    /// A shell command that succeeds when the CLI is logged in (or has a
    /// provider key), used unless `AGENT_AUTH_CHECK_<SLUG>` is set.
    pub auth_check: &'static str,
    /// What to run to log in, for health and doctor.
    pub login_hint: &'static str,
    /// Lines the CLI prints when it runs without being logged in
    /// (lowercase).
    pub logged_out: &'static [&'static str],
}

pub const KNOWN: &[KnownCli] = &[
    KnownCli {
        slug: "opencode",
        cli: "opencode",
        checked: "opencode 1.18.33 (npm opencode-ai)",
        command: "opencode run [ -m {model} ]",
        // `auth list` exits 0 with no credential: read what it counts.
        auth_check: "opencode auth list 2>&1 | grep -Eq '(^|[^0-9])[1-9][0-9]* (credential|environment variable)'",
        login_hint: "opencode auth login (or a provider key such as OPENAI_API_KEY in the launcher's environment)",
        logged_out: &["no credentials", "api key is missing", "unauthorized"],
    },
    KnownCli {
        slug: "claudecode",
        cli: "claude",
        checked: "Claude Code 2.1.197 (npm @anthropic-ai/claude-code)",
        command: "claude -p --permission-mode acceptEdits [ --model {model} ]",
        auth_check: "claude auth status",
        login_hint: "claude auth login (or ANTHROPIC_API_KEY in the launcher's environment)",
        logged_out: &["not logged in", "please run /login"],
    },
    KnownCli {
        slug: "codex",
        cli: "codex",
        checked: "codex-cli 0.169.0 (npm @openai/codex)",
        command: "codex exec --skip-git-repo-check --sandbox workspace-write [ -m {model} ] -",
        auth_check: "codex login status",
        login_hint: "codex login (or OPENAI_API_KEY in the launcher's environment)",
        logged_out: &["not logged in", "codex login"],
    },
    KnownCli {
        slug: "hermes",
        cli: "hermes",
        checked: "Hermes Agent 0.19.0 (PyPI hermes-agent)",
        // Bare `hermes` is the interactive mode, which ignores stdin and
        // exits 0; `-z` exits 0 even when every API call failed. `chat -q`
        // fails honestly.
        command: "hermes chat -Q --yolo -q {prompt} [ -m {model} ]",
        auth_check: "hermes auth list 2>&1 | grep -Eq '[(][1-9][0-9]* credentials?[)]'",
        login_hint: "hermes setup (or a provider key such as OPENROUTER_API_KEY in the launcher's environment)",
        logged_out: &[
            "no inference provider configured",
            "no api keys or providers found",
        ],
    },
];

pub fn known(slug: &str) -> Option<&'static KnownCli> {
    KNOWN.iter().find(|k| k.slug == slug)
}

/// The logged-in check of `slug`, whose command runs the program at
/// `resolved` (`cli` as configured): `AGENT_AUTH_CHECK_<SLUG>` when set
/// (`none` turns checking off), else the built-in check of a known CLI —
/// only when the command runs that very CLI, whose resolved path is then
/// put in the check so that a CLI outside `PATH` is the one checked.
pub fn auth_check(
    configured: Option<&str>,
    slug: &str,
    cli: &str,
    resolved: &std::path::Path,
) -> Option<String> {
    match configured.map(str::trim) {
        Some(c) if c.eq_ignore_ascii_case("none") => return None,
        Some(c) if !c.is_empty() => return Some(c.to_string()),
        _ => {}
    }
    let k = known(slug)?;
    let name = std::path::Path::new(cli).file_name()?.to_str()?;
    if name != k.cli {
        return None;
    }
    let rest = k.auth_check.strip_prefix(k.cli)?;
    let path = resolved.display().to_string().replace('\'', "'\\''");
    Some(format!("'{path}'{rest}"))
}

/// The CLI whose not-logged-in message is in `text`, if any.
pub fn logged_out_in(slug: &str, text: &str) -> bool {
    let Some(k) = known(slug) else {
        return false;
    };
    let text = text.to_lowercase();
    k.logged_out.iter().any(|m| text.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{split_words, validate};

    #[test]
    fn every_builtin_command_is_a_valid_template() {
        for k in KNOWN {
            validate(k.command).unwrap_or_else(|e| panic!("{}: {e}", k.slug));
            assert_eq!(split_words(k.command).unwrap()[0], k.cli, "{}", k.slug);
        }
    }

    #[test]
    fn the_logged_in_check_follows_the_configuration() {
        let codex = std::path::Path::new("/opt/codex/bin/codex");
        assert_eq!(
            auth_check(None, "codex", "/opt/codex/bin/codex", codex).unwrap(),
            "'/opt/codex/bin/codex' login status"
        );
        assert_eq!(
            auth_check(Some("my-check"), "codex", "codex", codex).unwrap(),
            "my-check"
        );
        assert_eq!(auth_check(Some("none"), "codex", "codex", codex), None);
        // A wrapper is not the CLI: its login cannot be guessed.
        assert_eq!(auth_check(None, "codex", "sh", codex), None);
        assert_eq!(auth_check(None, "my-agent", "codex", codex), None);
    }

    #[test]
    fn recognises_the_not_logged_in_messages() {
        assert!(logged_out_in(
            "claudecode",
            "Not logged in · Please run /login"
        ));
        assert!(logged_out_in(
            "hermes",
            "Error: No inference provider configured."
        ));
        assert!(!logged_out_in("claudecode", "all tests pass"));
        assert!(!logged_out_in("my-agent", "not logged in"));
    }
}
