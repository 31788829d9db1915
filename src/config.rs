//! The server's configuration: flags and environment, read and checked
//! once at start (flags win over the environment).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ops_app::accounts::StartSecrets;
use ops_http::{Limits, StreamLimits};
use ops_store::db::Sync;

#[derive(Clone)]
pub struct ServeConfig {
    pub bind: SocketAddr,
    pub db_path: PathBuf,
    pub sync: Sync,
    pub http_threads: usize,
    pub http_limits: Limits,
    pub stream_limits: StreamLimits,
    pub trust_proxy: bool,
    pub secrets: StartSecrets,
    /// `OPS_TEST_CLOCK=1`: the route that moves the clock exists.
    pub test_clock: bool,
    /// `--init` or `OPS_DB_INIT=1`: a missing or empty database may be
    /// created even though replication is configured, and a zero-length
    /// file may be initialized.
    pub init: bool,
    /// `--check-full`: `PRAGMA integrity_check` at start instead of
    /// `quick_check`.
    pub check_full: bool,
    /// Whether a replica is kept, and how to ask it how far behind it is.
    pub replication: Replication,
    /// `OPS_DB_RESERVE_MB`: space kept in a preallocated file next to the
    /// database, released when the disk fills (0: none).
    pub reserve_bytes: u64,
}

/// How the database is replicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replication {
    None,
    /// Litestream (`OPS_REPLICA=litestream`, or `LITESTREAM_REPLICA_URL`
    /// given to the server by the shipped unit): its staging folder and
    /// control socket are under `dir` (`OPS_LITESTREAM_DIR`).
    Litestream {
        dir: PathBuf,
    },
}

impl Replication {
    pub fn configured(&self) -> bool {
        !matches!(self, Replication::None)
    }
}

/// The default of `OPS_DB_RESERVE_MB`.
pub const DEFAULT_RESERVE_MB: u64 = 64;

/// Where Litestream keeps its staging files and control socket when
/// `OPS_LITESTREAM_DIR` is unset: `litestream/` beside the database.
pub fn default_litestream_dir(db: &std::path::Path) -> PathBuf {
    db.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .join("litestream")
}

pub const DEFAULT_BIND: &str = "127.0.0.1:3847";
pub const DEFAULT_DB: &str = "./ops-center.db";

/// Reads the environment through `env` (a parameter so tests can feed it).
pub fn serve_config(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<ServeConfig, String> {
    let env = |k: &str| {
        env(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut bind = env("OPS_BIND").unwrap_or_else(|| DEFAULT_BIND.into());
    let mut db = env("OPS_DB").unwrap_or_else(|| DEFAULT_DB.into());
    let mut init = false;
    let mut check_full = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--init" => {
                init = true;
                continue;
            }
            "--check-full" => {
                check_full = true;
                continue;
            }
            _ => {}
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or(format!("{flag} needs a value"))
        };
        match flag {
            "--bind" => bind = value()?,
            "--db" => db = value()?,
            other => {
                return Err(format!(
                    "unknown option {other:?} for serve (accepted: --bind ADDR, --db PATH, --init, \
                     --check-full)"
                ))
            }
        }
    }
    let bind: SocketAddr = bind.parse().map_err(|_| {
        format!(
            "bind address {bind:?} is not IP:PORT (e.g. 127.0.0.1:3847; port 0 picks a free one)"
        )
    })?;
    let sync = match env("OPS_DB_SYNC") {
        None => Sync::Normal,
        Some(s) => {
            Sync::parse(&s).ok_or(format!("OPS_DB_SYNC must be normal or full, got {s:?}"))?
        }
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let http_threads = match env("OPS_HTTP_THREADS") {
        None => (cores * 4).clamp(4, 64),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => n,
            _ => {
                return Err(format!(
                    "OPS_HTTP_THREADS must be a number from 1 to 1024, got {s:?}"
                ))
            }
        },
    };
    let number = |name: &str, default: u64, max: u64| match env(name) {
        None => Ok(default),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "{name} must be a number from 1 to {max}, got {s:?}"
            )),
        },
    };
    let max_connections = number("OPS_HTTP_MAX_CONNECTIONS", 1024, 1_000_000)? as usize;
    let http_limits = Limits {
        read_timeout: Duration::from_secs(number("OPS_HTTP_READ_TIMEOUT", 30, 3600)?),
        idle_timeout: Duration::from_secs(number("OPS_HTTP_IDLE_TIMEOUT", 60, 3600)?),
        max_connections,
        auth_reserve: match env("OPS_HTTP_AUTH_RESERVE") {
            None => max_connections / 8,
            Some(_) => number("OPS_HTTP_AUTH_RESERVE", 0, max_connections as u64 - 1)? as usize,
        },
        anon_per_client: number("OPS_HTTP_ANON_PER_CLIENT", 64, 1_000_000)? as usize,
        queue: number("OPS_HTTP_QUEUE", 1024, 1_000_000)? as usize,
    };
    let stream_limits = StreamLimits {
        max_total: number("OPS_STREAMS_MAX", 256, 100_000)? as usize,
        max_per_caller: number("OPS_STREAMS_PER_USER", 8, 100_000)? as usize,
    };
    let trust_proxy = match env("TRUST_PROXY")
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("false") | Some("0") | Some("no") => false,
        Some("true") | Some("1") | Some("yes") => true,
        Some(other) => return Err(format!("TRUST_PROXY must be true or false, got {other:?}")),
    };
    let init = init
        || match env("OPS_DB_INIT").as_deref() {
            None | Some("0") | Some("false") => false,
            Some("1") | Some("true") => true,
            Some(other) => return Err(format!("OPS_DB_INIT must be 1 or 0, got {other:?}")),
        };
    let db_path = PathBuf::from(db);
    let replication = match env("OPS_REPLICA")
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("litestream") => true,
        Some("none") => false,
        // The shipped unit gives the server Litestream's environment file:
        // a replica URL there means Litestream replicates this database.
        None => env("LITESTREAM_REPLICA_URL").is_some(),
        Some(other) => {
            return Err(format!(
                "OPS_REPLICA must be litestream or none, got {other:?}"
            ))
        }
    };
    let replication = if replication {
        Replication::Litestream {
            dir: env("OPS_LITESTREAM_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| default_litestream_dir(&db_path)),
        }
    } else {
        Replication::None
    };
    let reserve_mb = match env("OPS_DB_RESERVE_MB") {
        None => DEFAULT_RESERVE_MB,
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n <= 65_536 => n,
            _ => {
                return Err(format!(
                    "OPS_DB_RESERVE_MB must be a number from 0 to 65536 (MiB), got {s:?}"
                ))
            }
        },
    };
    Ok(ServeConfig {
        bind,
        db_path,
        sync,
        http_threads,
        http_limits,
        stream_limits,
        trust_proxy,
        // Test servers only: lets `POST /api/test/clock` move time.
        test_clock: env("OPS_TEST_CLOCK").as_deref() == Some("1"),
        secrets: StartSecrets {
            admin_user: env("OPS_ADMIN_USER"),
            admin_password: env("OPS_ADMIN_PASSWORD"),
            service_token: env("OPS_SERVICE_TOKEN"),
        },
        init,
        check_full,
        replication,
        reserve_bytes: reserve_mb * 1024 * 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str], env: &[(&str, &str)]) -> Result<ServeConfig, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        serve_config(&args, |k| {
            env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_and_precedence() {
        let c = cfg(&[], &[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:3847");
        assert_eq!(c.db_path, PathBuf::from("./ops-center.db"));
        assert_eq!(c.sync, Sync::Normal);
        assert!(!c.trust_proxy);
        assert_eq!(c.http_limits.read_timeout, Duration::from_secs(30));
        assert_eq!(c.http_limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.http_limits.max_connections, 1024);
        let c = cfg(
            &[],
            &[
                ("OPS_HTTP_READ_TIMEOUT", "2"),
                ("OPS_HTTP_IDLE_TIMEOUT", "3"),
                ("OPS_HTTP_MAX_CONNECTIONS", "32"),
            ],
        )
        .unwrap();
        assert_eq!(c.http_limits.read_timeout, Duration::from_secs(2));
        assert_eq!(c.http_limits.idle_timeout, Duration::from_secs(3));
        assert_eq!(c.http_limits.max_connections, 32);
        let c = cfg(
            &["--bind", "127.0.0.1:0", "--db=/tmp/x.db"],
            &[("OPS_BIND", "0.0.0.0:1"), ("OPS_DB", "y")],
        )
        .unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:0");
        assert_eq!(c.db_path, PathBuf::from("/tmp/x.db"));
    }

    #[test]
    fn replication_init_and_reserve() {
        let c = cfg(&["--db", "/srv/ops/ops.db"], &[]).unwrap();
        assert_eq!(c.replication, Replication::None);
        assert!(!c.init && !c.check_full);
        assert_eq!(c.reserve_bytes, 64 * 1024 * 1024);
        // The unit's Litestream environment file names a replica.
        let c = cfg(
            &["--db", "/srv/ops/ops.db"],
            &[("LITESTREAM_REPLICA_URL", "s3://b/ops")],
        )
        .unwrap();
        assert_eq!(
            c.replication,
            Replication::Litestream {
                dir: PathBuf::from("/srv/ops/litestream")
            }
        );
        let c = cfg(
            &["--init", "--check-full"],
            &[
                ("OPS_REPLICA", "litestream"),
                ("OPS_LITESTREAM_DIR", "/var/ls"),
                ("OPS_DB_RESERVE_MB", "0"),
            ],
        )
        .unwrap();
        assert!(c.init && c.check_full);
        assert_eq!(
            c.replication,
            Replication::Litestream {
                dir: PathBuf::from("/var/ls")
            }
        );
        assert_eq!(c.reserve_bytes, 0);
        let c = cfg(
            &[],
            &[
                ("OPS_REPLICA", "none"),
                ("LITESTREAM_REPLICA_URL", "x"),
                ("OPS_DB_INIT", "1"),
            ],
        )
        .unwrap();
        assert_eq!(c.replication, Replication::None);
        assert!(c.init);
        for (name, value) in [
            ("OPS_REPLICA", "rsync"),
            ("OPS_DB_INIT", "yes please"),
            ("OPS_DB_RESERVE_MB", "-1"),
        ] {
            assert!(cfg(&[], &[(name, value)]).err().unwrap().contains(name));
        }
    }

    #[test]
    fn mistakes_are_named() {
        assert!(cfg(&["--bogus"], &[]).err().unwrap().contains("--bogus"));
        assert!(cfg(&["--bind"], &[])
            .err()
            .unwrap()
            .contains("needs a value"));
        assert!(cfg(&[], &[("OPS_BIND", "nope")])
            .err()
            .unwrap()
            .contains("nope"));
        assert!(cfg(&[], &[("OPS_DB_SYNC", "fast")])
            .err()
            .unwrap()
            .contains("OPS_DB_SYNC"));
        assert!(cfg(&[], &[("TRUST_PROXY", "maybe")])
            .err()
            .unwrap()
            .contains("TRUST_PROXY"));
        for (name, value) in [
            ("OPS_HTTP_READ_TIMEOUT", "0"),
            ("OPS_HTTP_IDLE_TIMEOUT", "1.5"),
            ("OPS_HTTP_MAX_CONNECTIONS", "lots"),
        ] {
            assert!(cfg(&[], &[(name, value)]).err().unwrap().contains(name));
        }
        assert!(cfg(&[], &[("OPS_HTTP_THREADS", "0")])
            .err()
            .unwrap()
            .contains("OPS_HTTP_THREADS"));
    }
}
