//! The `ops-center` command: parses the subcommand and calls into the
//! library.

use std::process::ExitCode;

const USAGE: &str = "\
ops-center — task board and dispatcher for AI coding agents

usage:
  ops-center serve [--bind ADDR] [--db PATH] [--init] [--check-full]
                                               run the HTTP API, web UI and watchdog; the
                                               file is checked first (quick_check, or
                                               integrity_check with --check-full); --init
                                               allows a new database where a missing or
                                               empty file would otherwise be refused
  ops-center admin COMMAND [--db PATH]         set-service-token, set-admin-password,
                                               backup --to FILE (see ops-center admin --help)
  ops-center launcher                          run a dispatch worker (environment: OPS_API_BASE, ...)
  ops-center launcher prune-worktrees [--older-than-days N]
                                               remove the worktrees of finished tasks now
  ops-center doctor                            check that every supported agent CLI is installed
  ops-center smoke dispatch                    API smoke of a whole dispatch, no AI runtime needed
  ops-center smoke watchdog                    API smoke of stale reconciliation and the watchdog
  ops-center --version

Environment for serve: OPS_BIND (127.0.0.1:3847), OPS_DB (./ops-center.db),
OPS_DB_SYNC (normal|full), OPS_HTTP_THREADS, OPS_HTTP_READ_TIMEOUT (30 s),
OPS_HTTP_IDLE_TIMEOUT (60 s), OPS_HTTP_MAX_CONNECTIONS (1024), OPS_ADMIN_USER,
OPS_ADMIN_PASSWORD, OPS_SERVICE_TOKEN, TRUST_PROXY (false), RUST_LOG (info),
OPS_DB_INIT (as --init), OPS_DB_RESERVE_MB (64), OPS_REPLICA (litestream|none),
OPS_LITESTREAM_DIR (<db folder>/litestream).

Environment for launcher: OPS_API_BASE, OPS_SERVICE_TOKEN, OPS_WORKSPACE_ID,
SUPPORTED_AGENT_SLUGS, SUPPORTED_MODELS, AGENT_CMD_<SLUG>, AGENT_AUTH_CHECK_<SLUG>,
OPS_LAUNCHER_SLOTS (2), OPS_LAUNCHER_LOG_DIR ($HOME/.ops-launcher-logs),
OPS_LAUNCHER_LOG_FILE (stderr), OPS_LAUNCHER_WORKTREES_DIR (<log dir>/worktrees),
OPS_LAUNCHER_WORKTREE_MAX_AGE_DAYS (30), OPS_LAUNCHER_GIT_TIMEOUT_SECONDS (120). doctor reads SUPPORTED_AGENT_SLUGS and
AGENT_CMD_<SLUG>; the smokes OPS_API_BASE, OPS_SERVICE_TOKEN, OPS_WORKSPACE_ID.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The launcher installs its own logger: it may write to a file that
    // SIGHUP reopens.
    if args.first().map(String::as_str) != Some("launcher") {
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
            .format_timestamp_millis()
            .init();
    }
    let result = match args.first().map(String::as_str) {
        Some("serve") => ops_center::config::serve_config(&args[1..], |k| std::env::var(k).ok())
            .and_then(ops_center::server::run),
        Some("admin") => ops_center::commands::admin::main(&args[1..]),
        Some("launcher") => ops_center::launcher::main(&args[1..]),
        Some("doctor") => return ops_center::commands::doctor::main(&args[1..]),
        Some("smoke") => return ops_center::commands::smoke::main(&args[1..]),
        Some("--version" | "-V" | "version") => {
            println!("ops-center {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
        None => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ops-center: {e}");
            ExitCode::FAILURE
        }
    }
}
