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

/// The placeholders a command template may use. `{prompt}` is the prompt
/// itself, as one argument, for a CLI that does not read it on stdin;
/// `{session}` the CLI's session that a resume command continues.
pub const PLACEHOLDERS: &[&str] = &[
    "prompt_file",
    "prompt",
    "task_id",
    "model",
    "workdir",
    "session",
];

/// Built-in commands of the known slugs (`launcher::clis`).
pub fn builtin_command(slug: &str) -> Option<&'static str> {
    super::clis::known(slug).map(|k| k.command)
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

/// Checks a template: words split, placeholders known, `[ … ]` groups
/// balanced.
pub fn validate(cmd: &str) -> Result<(), String> {
    let words = split_words(cmd)?;
    groups(&words)?;
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
    pub prompt: &'a str,
    pub task_id: i64,
    pub model: &'a str,
    pub workdir: &'a str,
    /// The session a follow-up resumes (`{session}`); empty otherwise.
    pub session: &'a str,
}

/// For each word, whether it stands in an optional `[ … ]` group; the
/// bracket words themselves are `None`.
fn groups(words: &[String]) -> Result<Vec<Option<bool>>, String> {
    let mut open = false;
    let mut out = Vec::with_capacity(words.len());
    for w in words {
        match w.as_str() {
            "[" if open => return Err("has a `[` inside a `[ … ]` group".into()),
            "[" => {
                open = true;
                out.push(None);
            }
            "]" if !open => return Err("has a `]` without its `[`".into()),
            "]" => {
                open = false;
                out.push(None);
            }
            _ => out.push(Some(open)),
        }
    }
    if open {
        return Err("has a `[` without its `]`".into());
    }
    Ok(out)
}

/// The argument vector of a template with its placeholders filled in. The
/// words of a `[ … ]` group are left out when a placeholder in it is empty
/// (`[ -m {model} ]` without a model). The prompt goes in last, so that
/// text in it is never taken for a placeholder.
pub fn render(cmd: &str, v: &Vars) -> Result<Vec<String>, String> {
    let id = v.task_id.to_string();
    let values: [(&str, &str); 6] = [
        ("{prompt_file}", v.prompt_file),
        ("{task_id}", &id),
        ("{model}", v.model),
        ("{workdir}", v.workdir),
        ("{session}", v.session),
        ("{prompt}", v.prompt),
    ];
    let words = split_words(cmd)?;
    let in_group = groups(&words)?;
    let mut out = Vec::new();
    let mut group: Vec<String> = Vec::new();
    let mut group_empty = false;
    for (w, g) in words.iter().zip(in_group) {
        let filled = || {
            values
                .iter()
                .fold(w.clone(), |acc, (name, value)| acc.replace(name, value))
        };
        match g {
            None if w == "[" => {
                group.clear();
                group_empty = false;
            }
            None => {
                if !group_empty {
                    out.append(&mut group);
                }
                group.clear();
            }
            Some(true) => {
                group_empty |= values
                    .iter()
                    .any(|(name, value)| value.is_empty() && w.contains(name));
                group.push(filled());
            }
            Some(false) => out.push(filled()),
        }
    }
    Ok(out)
}

/// The CLI of a template: its first word, or for a shell wrapper
/// (`sh -c 'exec hermes -z "$(cat)"'`) the program the script runs, so
/// that what is checked is the agent and not the shell.
pub fn cli_of(cmd: &str) -> Result<String, String> {
    let words = split_words(cmd)?;
    Ok(wrapped_cli(&words).unwrap_or_else(|| words[0].clone()))
}

/// The program a `sh -c SCRIPT` (or bash, dash, zsh) runs: the word after
/// its `exec`, else its first word after variable assignments unless that
/// is a shell builtin or keyword (then the script is not understood here,
/// and the shell is what gets checked).
fn wrapped_cli(words: &[String]) -> Option<String> {
    let shell = Path::new(&words[0]).file_name()?.to_str()?;
    if !matches!(shell, "sh" | "bash" | "dash" | "zsh") || words.get(1)? != "-c" {
        return None;
    }
    let text = words.get(2)?;
    // The script may use what only a shell understands (`&&`, `;`).
    let script =
        split_words(text).unwrap_or_else(|_| text.split_whitespace().map(str::to_string).collect());
    if let Some(i) = script.iter().position(|w| w == "exec") {
        return script
            .get(i + 1..)?
            .iter()
            .find(|w| !is_assignment(w))
            .cloned();
    }
    let first = script.into_iter().find(|w| !is_assignment(w))?;
    const BUILTINS: &[&str] = &[
        "cd", "export", "set", "source", ".", "if", "for", "while", "case", "[", "test", "echo",
        "printf", "true", "false", "read", "umask", "ulimit", "{", "(",
    ];
    (!BUILTINS.contains(&first.as_str())).then_some(first)
}

fn is_assignment(w: &str) -> bool {
    w.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// What `doctor` checks a template against its CLI's `--help`: the
/// subcommand words after the program, and the flags. `None` for a shell
/// wrapper (its flags are the shell's) or a template without flags.
pub fn flags_of(cmd: &str) -> Option<(Vec<String>, Vec<String>)> {
    let words = split_words(cmd).ok()?;
    if wrapped_cli(&words).is_some() {
        return None;
    }
    let subcommands: Vec<String> = words[1..]
        .iter()
        .take_while(|w| {
            w.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !w.starts_with('-')
        })
        .cloned()
        .collect();
    let flags: Vec<String> = words[1..]
        .iter()
        .filter(|w| {
            w.len() > 1 && w.starts_with('-') && !w[1..].starts_with(|c: char| c.is_ascii_digit())
        })
        .map(|w| w.split('=').next().unwrap_or(w).to_string())
        .collect();
    (!flags.is_empty()).then_some((subcommands, flags))
}

/// The flags that a CLI's help text does not mention.
pub fn unknown_flags(help: &str, flags: &[String]) -> Vec<String> {
    let mentions = |flag: &str| {
        help.match_indices(flag).any(|(i, _)| {
            let before = help[..i].chars().next_back();
            let after = help[i + flag.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
                && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
        })
    };
    flags.iter().filter(|f| !mentions(f)).cloned().collect()
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
        assert!(validate("x {prompts}").unwrap_err().contains("{prompts}"));
        assert!(validate("x --resume {session} [ -m {model} ]").is_ok());
        assert!(validate("x {sessions}").unwrap_err().contains("{session}"));
        assert!(validate("x [ -m {model} ]").is_ok());
        assert!(validate("x [ -m {model}")
            .unwrap_err()
            .contains("without its `]`"));
        assert!(validate("x -m ]").unwrap_err().contains("without its `[`"));
        assert!(validate("x [ [ ] ]").is_err());
        let v = Vars {
            prompt_file: "/tmp/p q.md",
            prompt: "fix {model} in a.rs",
            task_id: 7,
            model: "gpt-5",
            workdir: "/w",
            session: "",
        };
        // The prompt is one argument, and text in it is not a placeholder.
        assert_eq!(
            render("h chat -q {prompt} [ -m {model} ]", &v).unwrap(),
            ["h", "chat", "-q", "fix {model} in a.rs", "-m", "gpt-5"]
        );
        let no_model = Vars { model: "", ..v };
        assert_eq!(
            render("h chat -q {prompt} [ -m {model} ] -", &no_model).unwrap(),
            ["h", "chat", "-q", "fix {model} in a.rs", "-"]
        );
        let v = Vars {
            prompt: "",
            ..no_model
        };
        let v = Vars {
            model: "gpt-5",
            ..v
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
    fn the_cli_of_a_shell_wrapper_is_the_program_it_runs() {
        assert_eq!(cli_of("codex exec -").unwrap(), "codex");
        assert_eq!(
            cli_of(r#"sh -c 'exec hermes -z "$(cat)"'"#).unwrap(),
            "hermes"
        );
        assert_eq!(
            cli_of("/bin/bash -c 'FOO=1 exec /opt/bin/agent --x'").unwrap(),
            "/opt/bin/agent"
        );
        assert_eq!(cli_of("sh script.sh").unwrap(), "sh");
        assert_eq!(
            cli_of("sh -c 'cd /repo && exec claude -p'").unwrap(),
            "claude"
        );
        assert_eq!(cli_of("sh -c 'cd /repo; make'").unwrap(), "sh");
    }

    #[test]
    fn flags_are_checked_against_the_help_text() {
        let (sub, flags) =
            flags_of("codex exec --skip-git-repo-check -s workspace-write [ -m {model} ] -")
                .unwrap();
        assert_eq!(sub, ["exec"]);
        assert_eq!(flags, ["--skip-git-repo-check", "-s", "-m"]);
        let help = "  -s, --sandbox <MODE>\n  -m, --model <MODEL>\n      --skip-git-repo-check\n";
        assert!(unknown_flags(help, &flags).is_empty());
        let old = ["--full-auto".to_string(), "--model".to_string()];
        assert_eq!(unknown_flags(help, &old), ["--full-auto"]);
        // A flag is a whole word of the help, not part of another.
        assert_eq!(
            unknown_flags("--sandboxed", &["--sandbox".into()]),
            ["--sandbox"]
        );
        assert_eq!(flags_of("fake-agent.sh 4"), None);
        assert_eq!(flags_of("sh -c 'exec x --y'"), None);
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
