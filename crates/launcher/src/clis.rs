//! What is known about each real agent CLI, in one table: its one-shot
//! command in its machine-readable streaming mode, how it resumes a
//! session, which stream it prints, how it learns whether it is logged in,
//! and what it prints when it is not. Each row names the release it was
//! checked against (against `packaging/tests/scripted-model.py`); a CLI
//! release that changes a flag is a one-line change here (and a failing
//! `packaging/tests/real-clis.sh`).

use crate::transcript::Stream;

/// One known agent CLI.
pub struct KnownCli {
    pub slug: &'static str,
    /// The program (first word of `command`).
    pub cli: &'static str,
    /// The release these lines were checked against.
    pub checked: &'static str,
    /// Non-interactive, one task per run, printing its stream (`stream`).
    /// The prompt goes on stdin where the CLI reads it there, else as
    /// `{prompt}`; `[ … ]` words are left out when the task has no model.
    pub command: &'static str,
    /// The same in the session `{session}` (what the stream's `session`
    /// event named), the prompt being the follow-up; `None`: the CLI cannot
    /// resume a session non-interactively.
    pub resume: Option<&'static str>,
    /// What `command` and `resume` print on stdout.
    pub stream: Stream,
    /// A shell command that succeeds when the CLI is logged in (or has a
    /// provider key it uses), used unless `AGENT_AUTH_CHECK_<SLUG>` is set.
    /// It starts with the CLI's name, which is replaced by its resolved
    /// path.
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
        // The prompt on stdin. `--format json` prints one event a line and
        // nothing while it waits out a 429 (it retries without end):
        // `--print-logs --log-level ERROR` puts the provider's error
        // ("Rate limit reached …") on stderr meanwhile.
        command: "opencode run --format json --print-logs --log-level ERROR [ -m {model} ]",
        resume: Some(
            "opencode run --format json --print-logs --log-level ERROR --session {session} [ -m {model} ]",
        ),
        stream: Stream::Opencode,
        // `auth list` exits 0 with no credential: read what it lists. A
        // credential in its auth.json counts (a deliberate `opencode auth
        // login`); so does a provider key in the environment that opencode
        // itself names as one of its models' providers, except a GitHub
        // token, which opencode lists for Copilot but which is not a Copilot
        // login (that takes `opencode auth login`) and is in many
        // environments for other reasons; so does a provider of its own
        // configuration that carries an `apiKey`. Only the agent's
        // environment is seen (`boundary::builtin_env`: `*_API_KEY`), so a
        // key the launcher holds for another CLI only counts when it is a
        // key opencode uses. See `opencode_check_*` tests.
        auth_check: concat!(
            r#"opencode auth list 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | awk '"#,
            r#"$1 == "┌" { s = $2 } "#,
            r#"$1 == "●" && s == "Credentials" { ok = 1 } "#,
            r#"$1 == "●" && s == "Environment" && $NF !~ /^(GITHUB_TOKEN|GH_TOKEN)$/ { ok = 1 } "#,
            r#"END { exit !ok }' "#,
            r#"|| grep -Eqs '"apiKey"[[:space:]]*:[[:space:]]*"[^"]' "#,
            r#""${XDG_CONFIG_HOME:-$HOME/.config}/opencode/opencode.json""#,
        ),
        login_hint: "opencode auth login (or a provider key such as OPENAI_API_KEY in the launcher's environment)",
        logged_out: &["no credentials", "api key is missing", "unauthorized"],
    },
    KnownCli {
        slug: "claudecode",
        cli: "claude",
        checked: "Claude Code 2.1.197 (npm @anthropic-ai/claude-code)",
        // The prompt on stdin. `--include-partial-messages` adds a
        // `stream_event` line per streamed delta, so a slow model shows as
        // activity (`transcript::is_activity_only`).
        command: "claude -p --output-format stream-json --verbose --include-partial-messages --permission-mode acceptEdits [ --model {model} ]",
        resume: Some(
            "claude -p --output-format stream-json --verbose --include-partial-messages --permission-mode acceptEdits --resume {session} [ --model {model} ]",
        ),
        stream: Stream::Claude,
        auth_check: "claude auth status",
        login_hint: "claude auth login (or ANTHROPIC_API_KEY in the launcher's environment)",
        logged_out: &["not logged in", "please run /login", "invalid api key"],
    },
    KnownCli {
        slug: "codex",
        cli: "codex",
        checked: "codex-cli 0.171.0 (npm @openai/codex)",
        // The prompt on stdin (`-`). `exec`'s flags go before `resume`.
        command: "codex exec --json --skip-git-repo-check --sandbox workspace-write [ -m {model} ] -",
        resume: Some(
            "codex exec --json --skip-git-repo-check --sandbox workspace-write [ -m {model} ] resume {session} -",
        ),
        stream: Stream::Codex,
        // Logged in: `codex login` (ChatGPT or `--with-api-key`), or
        // CODEX_API_KEY, which `codex exec` sends as its bearer token; or a
        // config.toml that picks a provider of its own (`model_provider`
        // other than the built-in `openai`), which brings its own key
        // (`env_key`). OPENAI_API_KEY alone is not enough: 0.171's built-in
        // provider sends no Authorization header with it.
        auth_check: concat!(
            r#"codex login status >/dev/null 2>&1 || [ -n "$CODEX_API_KEY" ] || { "#,
            r#"f="${CODEX_HOME:-$HOME/.codex}/config.toml"; "#,
            r#"grep -Eqs '^[[:space:]]*model_provider[[:space:]]*=[[:space:]]*"[^"]+"' "$f" "#,
            r#"&& ! grep -Eqs '^[[:space:]]*model_provider[[:space:]]*=[[:space:]]*"openai"' "$f"; }"#,
        ),
        login_hint: "codex login (or CODEX_API_KEY in the launcher's environment)",
        logged_out: &[
            "not logged in",
            "codex login",
            "missing bearer or basic authentication",
        ],
    },
    KnownCli {
        slug: "hermes",
        cli: "hermes",
        checked: "Hermes Agent 0.19.0 (PyPI hermes-agent)",
        // Bare `hermes` is the interactive mode, which ignores stdin and
        // exits 0; `chat -q` fails honestly. It has no JSON mode: `-Q`
        // prints the final answer (and edits' diffs) on stdout and
        // `session_id: …` on stderr.
        command: "hermes chat -Q --yolo -q {prompt} [ -m {model} ]",
        resume: Some("hermes chat -Q --yolo --resume {session} -q {prompt} [ -m {model} ]"),
        stream: Stream::Hermes,
        // `auth list` counts provider keys of the environment and of
        // ~/.hermes/.env; a key written in config.yaml (`api_key:` of the
        // model or of a provider) is used but not listed.
        auth_check: concat!(
            r#"hermes auth list 2>&1 | grep -Eq '[(][1-9][0-9]* credentials?[)]' "#,
            r#"|| grep -Eqs '^[[:space:]]*api_key:[[:space:]]*[^[:space:]#]' "#,
            r#""${HERMES_HOME:-$HOME/.hermes}/config.yaml""#,
        ),
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
            assert!(!k.command.contains("{session}"), "{}", k.slug);
            let resume = k.resume.unwrap();
            validate(resume).unwrap_or_else(|e| panic!("{}: {e}", k.slug));
            assert_eq!(split_words(resume).unwrap()[0], k.cli, "{}", k.slug);
            assert!(resume.contains("{session}"), "{}", k.slug);
            assert!(k.auth_check.starts_with(k.cli), "{}", k.slug);
        }
    }

    #[test]
    fn the_logged_in_check_follows_the_configuration() {
        let codex = std::path::Path::new("/opt/codex/bin/codex");
        let check = auth_check(None, "codex", "/opt/codex/bin/codex", codex).unwrap();
        assert!(
            check.starts_with("'/opt/codex/bin/codex' login status"),
            "{check}"
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
        assert!(logged_out_in(
            "claudecode",
            "HTTP 401: Invalid API key · Fix external API key"
        ));
        assert!(!logged_out_in("claudecode", "all tests pass"));
        assert!(!logged_out_in("my-agent", "not logged in"));
    }

    /// Runs the built-in check of `slug` with a stand-in CLI printing
    /// `listing` (and failing when `fails`), in a home holding `files`,
    /// with `vars` as the environment.
    fn check_passes(
        slug: &str,
        listing: &str,
        fails: bool,
        files: &[(&str, &str)],
        vars: &[(&str, &str)],
    ) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        for (path, text) in files {
            let p = home.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let k = known(slug).unwrap();
        let cli = dir.path().join(k.cli);
        let script = format!(
            "#!/bin/sh\ncat <<'EOF'\n{listing}\nEOF\nexit {}\n",
            u8::from(fails)
        );
        std::fs::write(&cli, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();
        let check = auth_check(None, slug, k.cli, &cli).unwrap();
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&check)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &home)
            .envs(vars.iter().copied())
            .status()
            .unwrap()
            .success()
    }

    /// `opencode auth list` of 1.18.33, colours and all.
    fn opencode_listing(credentials: &[&str], env: &[(&str, &str)]) -> String {
        let mut out =
            String::from("\x1b[0m\n┌  Credentials \x1b[90m~/.local/share/opencode/auth.json\n│\n");
        for c in credentials {
            out.push_str(&format!("●  {c} \x1b[90mapi\n│\n"));
        }
        out.push_str(&format!("└  {} credentials\n", credentials.len()));
        if !env.is_empty() {
            out.push_str("\n┌  Environment\n│\n");
            for (name, var) in env {
                out.push_str(&format!("●  {name} \x1b[90m{var}\n│\n"));
            }
            out.push_str(&format!("└  {} environment variables\n", env.len()));
        }
        out
    }

    #[test]
    fn opencode_check_counts_credentials_and_provider_keys_only() {
        let pass = |l: &str, files: &[(&str, &str)]| check_passes("opencode", l, false, files, &[]);
        assert!(!pass(&opencode_listing(&[], &[]), &[]));
        assert!(pass(&opencode_listing(&["scripted"], &[]), &[]));
        assert!(pass(
            &opencode_listing(&[], &[("OpenAI", "OPENAI_API_KEY")]),
            &[]
        ));
        // A GitHub token is not a Copilot login.
        assert!(!pass(
            &opencode_listing(&[], &[("GitHub Copilot", "GITHUB_TOKEN")]),
            &[]
        ));
        assert!(pass(
            &opencode_listing(
                &[],
                &[
                    ("GitHub Copilot", "GITHUB_TOKEN"),
                    ("Anthropic", "ANTHROPIC_API_KEY")
                ]
            ),
            &[]
        ));
        // A provider of its configuration with its own key.
        let config = r#"{"provider":{"local":{"options":{"baseURL":"http://127.0.0.1:1/v1","apiKey":"k"}}}}"#;
        assert!(pass(
            &opencode_listing(&[], &[]),
            &[(".config/opencode/opencode.json", config)]
        ));
        let keyless = r#"{"provider":{"local":{"options":{"apiKey":""}}}}"#;
        assert!(!pass(
            &opencode_listing(&[], &[]),
            &[(".config/opencode/opencode.json", keyless)]
        ));
    }

    #[test]
    fn codex_check_takes_its_login_its_key_or_a_provider_of_its_own() {
        let check = |fails: bool, files: &[(&str, &str)], vars: &[(&str, &str)]| {
            check_passes("codex", "Not logged in", fails, files, vars)
        };
        assert!(check(false, &[], &[]));
        assert!(!check(true, &[], &[]));
        // OPENAI_API_KEY alone: codex 0.171 does not send it.
        assert!(!check(true, &[], &[("OPENAI_API_KEY", "sk")]));
        assert!(check(true, &[], &[("CODEX_API_KEY", "sk")]));
        assert!(!check(true, &[], &[("CODEX_API_KEY", "")]));
        let own = "model = \"m\"\nmodel_provider = \"local\"\n[model_providers.local]\nenv_key = \"LOCAL_KEY\"\n";
        assert!(check(true, &[(".codex/config.toml", own)], &[]));
        let openai = "model_provider = \"openai\"\n";
        assert!(!check(true, &[(".codex/config.toml", openai)], &[]));
        assert!(!check(
            true,
            &[(".codex/config.toml", "model = \"m\"\n")],
            &[]
        ));
    }

    #[test]
    fn hermes_check_takes_listed_credentials_or_a_configured_key() {
        let listed = "openrouter (1 credentials):\n  #1  OPENROUTER_API_KEY   api_key env:OPENROUTER_API_KEY ←";
        assert!(check_passes("hermes", listed, false, &[], &[]));
        assert!(!check_passes("hermes", "", false, &[], &[]));
        let config = "model:\n  provider: custom\n  base_url: http://127.0.0.1:1/v1\n  api_key: scripted-key\n";
        assert!(check_passes(
            "hermes",
            "",
            false,
            &[(".hermes/config.yaml", config)],
            &[]
        ));
        let empty = "model:\n  provider: custom\n  api_key: # none\n";
        assert!(!check_passes(
            "hermes",
            "",
            false,
            &[(".hermes/config.yaml", empty)],
            &[]
        ));
    }
}
