//! The one error type of the server side. Every layer returns it; only
//! `http::response` turns it into a status code and a JSON body.

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// The request is malformed or a field is invalid (400).
    BadRequest { code: &'static str, message: String },
    /// No or unknown credentials (401).
    Unauthorized(String),
    /// Known caller, not allowed (403).
    Forbidden(String),
    /// A browser request from another site with the session cookie (403
    /// `cross_origin`).
    CrossOrigin(String),
    /// A cookie-authenticated write whose body is not JSON (415).
    UnsupportedMediaType(String),
    /// The thing named does not exist (404).
    NotFound(String),
    /// The state of a resource forbids the change (409). `code` is part of
    /// the API contract (`done_guard`, `human_gate`, `stale_claim`, ...).
    Conflict { code: &'static str, message: String },
    /// Too many attempts (429); the value is the seconds to wait.
    RateLimited { retry_after_secs: u64 },
    /// The caller holds as many of something as it may (429).
    TooMany { code: &'static str, message: String },
    /// The server serves as many of something as it can (503).
    Busy { code: &'static str, message: String },
    /// The database file cannot be written right now (disk full, read-only,
    /// I/O error): the operator must act, the client may retry (503).
    StorageUnavailable(Storage),
    /// Anything the caller cannot fix: database failure, bug. The detail is
    /// logged, never sent.
    Internal(String),
}

/// Why the database cannot be written: the SQLite result codes that come
/// from the disk, not from the request or a bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    DiskFull,
    ReadOnly,
    Io,
    CantOpen,
    /// The file is damaged (`SQLITE_CORRUPT`, `SQLITE_NOTADB`): found while
    /// serving, after the start-up check passed.
    Corrupt,
}

impl Storage {
    /// The storage fault behind `e`, if it is one.
    pub fn of(e: &rusqlite::Error) -> Option<Storage> {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code()? {
            ErrorCode::DiskFull => Some(Storage::DiskFull),
            ErrorCode::ReadOnly => Some(Storage::ReadOnly),
            ErrorCode::SystemIoFailure => Some(Storage::Io),
            ErrorCode::CannotOpen => Some(Storage::CantOpen),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => Some(Storage::Corrupt),
            _ => None,
        }
    }

    /// The cause in plain words, for clients, health and the log.
    pub fn describe(self) -> &'static str {
        match self {
            Storage::DiskFull => "the disk holding the database is full",
            Storage::ReadOnly => "the database file is read-only",
            Storage::Io => "an I/O error occurred on the database file",
            Storage::CantOpen => "the database file (or its -wal/-shm) cannot be opened",
            Storage::Corrupt => {
                "the database file is damaged (stop the server; ops-center admin check shows \
                 the damage, and the README's \"Backups and replication\" how to restore)"
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::BadRequest {
            code: "bad_request",
            message: message.into(),
        }
    }

    pub fn invalid_field(field: &str, message: impl fmt::Display) -> Error {
        Error::BadRequest {
            code: "invalid_field",
            message: format!("field `{field}`: {message}"),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Error {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Error {
        Error::NotFound(what.into())
    }

    pub fn forbidden(message: impl Into<String>) -> Error {
        Error::Forbidden(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRequest { message, .. } => write!(f, "{message}"),
            Error::Unauthorized(m)
            | Error::Forbidden(m)
            | Error::CrossOrigin(m)
            | Error::UnsupportedMediaType(m)
            | Error::NotFound(m) => write!(f, "{m}"),
            Error::Conflict { message, .. }
            | Error::TooMany { message, .. }
            | Error::Busy { message, .. } => write!(f, "{message}"),
            Error::RateLimited { retry_after_secs } => {
                write!(f, "too many attempts, retry in {retry_after_secs} s")
            }
            Error::StorageUnavailable(s) => {
                write!(f, "storage unavailable: {}", s.describe())
            }
            Error::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Another process held the database's write lock for longer than the
/// busy timeout (Litestream checkpointing a large WAL, say): 503, retry.
pub fn busy_database() -> Error {
    Error::Busy {
        code: "database_busy",
        message: "the database is busy (another process holds its write lock, e.g. Litestream \
                  checkpointing): the change was not saved; retry"
            .into(),
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        if matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        ) {
            log::warn!("database: {e}");
            return busy_database();
        }
        match Storage::of(&e) {
            Some(s) => {
                log::error!("database: {e}");
                Error::StorageUnavailable(s)
            }
            None => Error::Internal(format!("database: {e}")),
        }
    }
}

impl From<r2d2::Error> for Error {
    fn from(e: r2d2::Error) -> Error {
        Error::Internal(format!("database pool: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::Internal(format!("json: {e}"))
    }
}
