//! Which command runs an agent, and whether its CLI exists on this host.
//!
//! Resolution order for a slug: the agent's `launch_command` in OPS, else
//! `AGENT_CMD_<SLUG>`, else a built-in default for the known slugs.
//! A command is split into words the way a shell would (quotes and
//! backslashes) and run directly, without a shell: the CLI (the first
//! word) can then be checked before launch, and placeholders can hold any
//! path without quoting trouble. Shell features need an explicit
//! `sh -c '…'`.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The placeholders a command template may use.
pub const PLACEHOLDERS: &[&str] = &["prompt_file", "task_id", "model", "workdir"];

/// Built-in commands of the known slugs. Each reads the prompt on stdin;
/// set `AGENT_CMD_<SLUG>` (or the agent's `launch_command`) to pass flags
/// such as a model.
pub fn builtin_command(slug: &str) -> Option<&'static str> {
    match slug {
        "opencode" => Some("opencode run"),
        "claudecode" => Some("claude -p --permission-mode acceptEdits"),
        "codex" => Some("codex exec --full-auto -"),
        "hermes" => Some("hermes"),
        _ => None,
    }
}

/// `AGENT_CMD_<SLUG>` for a slug: upper case, other characters than
/// letters and digits become `_` (`my-agent` → `AGENT_CMD_MY_AGENT`).
pub fn env_name(prefix: &str, slug: &str) -> String {
    let tail: String = slug
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}{tail}")
}

/// Where a resolved command came from, for logs and `doctor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Ops,
    Env,
    Builtin,
}

impl Source {
    pub fn describe(self, slug: &str) -> String {
        match self {
            Source::Ops => format!("launch_command of agent {slug} in OPS"),
            Source::Env => env_name("AGENT_CMD_", slug),
            Source::Builtin => format!("built-in default for {slug}"),
        }
    }
}

/// The command template for `slug`, following the resolution order.
pub fn configured(
    slug: &str,
    ops_launch_command: Option<&str>,
    env_cmds: &HashMap<String, String>,
) -> Option<(String, Source)> {
    if let Some(c) = ops_launch_command.map(str::trim).filter(|c| !c.is_empty()) {
        return Some((c.to_string(), Source::Ops));
    }
    if let Some(c) = env_cmds
        .get(slug)
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
    {
        return Some((c.to_string(), Source::Env));
    }
    builtin_command(slug).map(|c| (c.to_string(), Source::Builtin))
}

/// Splits a command into words: `'…'` is literal, `"…"` allows `\"`, `\\`,
/// `\$` and `` \` ``, a backslash outside quotes escapes the next
/// character. Shell operators are refused, since no shell runs the
/// command.
pub fn split_words(cmd: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = cmd.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                quoted = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unbalanced single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                quoted = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => cur.push(n),
                            Some(n) => {
                                cur.push('\\');
                                cur.push(n);
                            }
                            None => return Err("unbalanced double quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unbalanced double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => return Err("trailing backslash".into()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                    quoted = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
        // A bare operator word (`|`, `&&`, `;`, `>`, …) means the operator
        // expected a shell; say so instead of passing it to the CLI.
        if !in_word || quoted {
            continue;
        }
        if chars.peek().map_or(true, |n| n.is_whitespace()) && is_operator(&cur) {
            return Err(format!(
                "uses the shell operator `{cur}`, but commands run without a shell; wrap it as sh -c '…'"
            ));
        }
    }
    if in_word {
        words.push(cur);
    }
    if words.is_empty() {
        return Err("is empty".into());
    }
    Ok(words)
}

fn is_operator(w: &str) -> bool {
    matches!(
        w,
        "|" | "||" | "&&" | "&" | ";" | ">" | ">>" | "<" | "2>" | "2>&1" | "<<"
    )
}

/// Checks a template: words split, placeholders known.
pub fn validate(cmd: &str) -> Result<(), String> {
    let words = split_words(cmd)?;
    for w in &words {
        let mut rest = w.as_str();
        while let Some(start) = rest.find('{') {
            let after = &rest[start + 1..];
            let Some(end) = after.find('}') else { break };
            let name = &after[..end];
            if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !PLACEHOLDERS.contains(&name)
            {
                return Err(format!(
                    "uses unknown placeholder {{{name}}}; known: {}",
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
            rest = &after[end + 1..];
        }
    }
    Ok(())
}

/// Values of the placeholders for one launch.
pub struct Vars<'a> {
    pub prompt_file: &'a str,
    pub task_id: i64,
    pub model: &'a str,
    pub workdir: &'a str,
}

/// The argument vector of a template with its placeholders filled in.
pub fn render(cmd: &str, v: &Vars) -> Result<Vec<String>, String> {
    let id = v.task_id.to_string();
    Ok(split_words(cmd)?
        .into_iter()
        .map(|w| {
            w.replace("{prompt_file}", v.prompt_file)
                .replace("{task_id}", &id)
                .replace("{model}", v.model)
                .replace("{workdir}", v.workdir)
        })
        .collect())
}

/// The CLI of a template: its first word.
pub fn cli_of(cmd: &str) -> Result<String, String> {
    Ok(split_words(cmd)?.remove(0))
}

/// Finds `cli` as the OS would: a path when it holds a `/`, else the first
/// executable file of that name along `path_var` (`PATH`). The error says
/// why it is not runnable.
pub fn resolve_cli(cli: &str, path_var: Option<&str>) -> Result<PathBuf, String> {
    if cli.contains('/') {
        let p = Path::new(cli);
        return match executable(p) {
            Ok(()) => Ok(p.to_path_buf()),
            Err(why) => Err(why),
        };
    }
    let path_var = path_var.unwrap_or("/usr/local/bin:/usr/bin:/bin");
    let mut not_exec = None;
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(cli);
        match executable(&p) {
            Ok(()) => return Ok(p),
            Err(why) if p.exists() => not_exec = Some(why),
            Err(_) => {}
        }
    }
    Err(not_exec.unwrap_or_else(|| "not found in PATH".into()))
}

fn executable(p: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(p).map_err(|_| format!("{} does not exist", p.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", p.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable", p.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            split_words("codex exec  -").unwrap(),
            ["codex", "exec", "-"]
        );
        assert_eq!(
            split_words(r#"a 'b c' "d \"e\"" f\ g"#).unwrap(),
            ["a", "b c", "d \"e\"", "f g"]
        );
        assert_eq!(
            split_words("sh -c 'x && y | z'").unwrap(),
            ["sh", "-c", "x && y | z"]
        );
        assert_eq!(split_words("a ''").unwrap(), ["a", ""]);
        assert!(split_words("a 'b").unwrap_err().contains("single quote"));
        assert!(split_words("a \"b").unwrap_err().contains("double quote"));
        assert!(split_words("   ").unwrap_err().contains("empty"));
        assert!(split_words("a && b").unwrap_err().contains("`&&`"));
        assert!(split_words("a > out").unwrap_err().contains("sh -c"));
        assert_eq!(split_words("a '|'").unwrap(), ["a", "|"]);
    }

    #[test]
    fn placeholders_are_checked_and_filled() {
        assert!(validate("x --file {prompt_file} --model {model} {task_id} {workdir}").is_ok());
        assert!(validate("x --json '{\"a\":1}'").is_ok());
        assert!(validate("x {prompt}").unwrap_err().contains("{prompt}"));
        let v = Vars {
            prompt_file: "/tmp/p q.md",
            task_id: 7,
            model: "gpt-5",
            workdir: "/w",
        };
        assert_eq!(
            render(
                "x --file {prompt_file} -m {model} --id=t{task_id} -C {workdir}",
                &v
            )
            .unwrap(),
            [
                "x",
                "--file",
                "/tmp/p q.md",
                "-m",
                "gpt-5",
                "--id=t7",
                "-C",
                "/w"
            ]
        );
    }

    #[test]
    fn resolution_order() {
        let mut env = HashMap::new();
        assert_eq!(configured("codex", None, &env).unwrap().1, Source::Builtin);
        env.insert("codex".to_string(), "my-codex".to_string());
        assert_eq!(
            configured("codex", None, &env).unwrap(),
            ("my-codex".into(), Source::Env)
        );
        assert_eq!(
            configured("codex", Some("ops-codex"), &env).unwrap(),
            ("ops-codex".into(), Source::Ops)
        );
        assert_eq!(
            configured("codex", Some("  "), &env).unwrap().1,
            Source::Env
        );
        assert!(configured("unknown", None, &env).is_none());
        assert_eq!(env_name("AGENT_CMD_", "my-agent.x"), "AGENT_CMD_MY_AGENT_X");
    }

    #[test]
    fn finds_clis() {
        assert!(resolve_cli("sh", Some("/usr/bin:/bin")).is_ok());
        assert_eq!(
            resolve_cli("no-such-cli-xyz", Some("/bin")).unwrap_err(),
            "not found in PATH"
        );
        assert!(resolve_cli("/etc/passwd", None)
            .unwrap_err()
            .contains("not executable"));
        assert!(resolve_cli("/nope/x", None)
            .unwrap_err()
            .contains("does not exist"));
    }
}
