//! Responses, and the one place where an [`Error`] becomes a status code
//! and a `{"error","message"}` body.

use serde::Serialize;

use ops_base::error::Error;
use ops_protocol::errors::ErrorBody;

/// What a client is told to wait after a storage failure: the writer
/// retries every second, so a freed disk is noticed well within this.
const STORAGE_RETRY_AFTER_SECS: u64 = 5;
/// What a client is told to wait when the server is at a cap.
const BUSY_RETRY_AFTER_SECS: u64 = 10;

pub struct Resp {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
    /// Runs when the answer cannot be handed to its client (see
    /// [`Resp::on_undelivered`]).
    pub delivery: Option<Delivery>,
}

/// What to do when an answer does not reach its client: the client left
/// before it was written, or the connection failed before its bytes were
/// all handed to the kernel. Dropped unconfirmed, it runs its action.
pub struct Delivery(Option<Box<dyn FnOnce() + Send>>);

impl Delivery {
    /// The answer is out: nothing to do.
    pub fn confirm(mut self) {
        self.0 = None;
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(undelivered) = self.0.take() {
            undelivered();
        }
    }
}

impl Resp {
    /// The one place where a body of the protocol becomes JSON.
    pub fn json(status: u16, v: &impl Serialize) -> Resp {
        Resp {
            status,
            content_type: "application/json",
            // Plain structs of strings, numbers and lists: serializing
            // cannot fail.
            body: serde_json::to_vec(v).expect("protocol types serialize"),
            headers: Vec::new(),
            delivery: None,
        }
    }

    pub fn ok(v: impl Serialize) -> Resp {
        Resp::json(200, &v)
    }

    pub fn created(v: impl Serialize) -> Resp {
        Resp::json(201, &v)
    }

    /// A body that is not JSON (the metrics' text format).
    pub fn text(content_type: &'static str, body: String) -> Resp {
        Resp {
            status: 200,
            content_type,
            body: body.into_bytes(),
            headers: Vec::new(),
            delivery: None,
        }
    }

    pub fn static_file(content_type: &'static str, body: &'static [u8]) -> Resp {
        Resp {
            status: 200,
            content_type,
            body: body.to_vec(),
            headers: Vec::new(),
            delivery: None,
        }
    }

    /// The head of a streamed answer (no body of its own).
    pub fn stream_head(content_type: &'static str, headers: Vec<(&'static str, String)>) -> Resp {
        Resp {
            status: 200,
            content_type,
            body: Vec::new(),
            headers,
            delivery: None,
        }
    }

    /// `undelivered` runs (on some thread; it must not block) when this
    /// answer cannot be handed to its client.
    pub fn on_undelivered(mut self, undelivered: impl FnOnce() + Send + 'static) -> Resp {
        self.delivery = Some(Delivery(Some(Box::new(undelivered))));
        self
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Resp {
        self.headers.push((name, value));
        self
    }

    pub fn error(code: &str, status: u16, message: &str) -> Resp {
        Resp::json(
            status,
            &ErrorBody {
                error: code.to_string(),
                message: message.to_string(),
            },
        )
    }

    pub fn method_not_allowed(allowed: &[&str]) -> Resp {
        Resp::error(
            "method_not_allowed",
            405,
            &format!("this route accepts {}", allowed.join(", ")),
        )
        .with_header("Allow", allowed.join(", "))
    }

    pub fn from_error(e: &Error) -> Resp {
        match e {
            Error::BadRequest { code, message } => Resp::error(code, 400, message),
            Error::Unauthorized(m) => Resp::error("unauthorized", 401, m),
            Error::Forbidden(m) => Resp::error("forbidden", 403, m),
            Error::CrossOrigin(m) => Resp::error("cross_origin", 403, m),
            Error::UnsupportedMediaType(m) => Resp::error("unsupported_media_type", 415, m),
            Error::NotFound(m) => Resp::error("not_found", 404, m),
            Error::Conflict { code, message } => Resp::error(code, 409, message),
            Error::RateLimited { retry_after_secs } => {
                Resp::error("rate_limited", 429, &e.to_string())
                    .with_header("Retry-After", retry_after_secs.to_string())
            }
            Error::TooMany { code, message } => Resp::error(code, 429, message),
            Error::Busy { code, message } => Resp::error(code, 503, message)
                .with_header("Retry-After", BUSY_RETRY_AFTER_SECS.to_string()),
            Error::StorageUnavailable(s) => Resp::error(
                "storage_unavailable",
                503,
                &format!(
                    "{}: the change was not saved; retry later (the operator must free space or \
                     fix the file's permissions)",
                    s.describe()
                ),
            )
            .with_header("Retry-After", STORAGE_RETRY_AFTER_SECS.to_string()),
            Error::Internal(detail) => {
                log::error!("internal error: {detail}");
                Resp::error("internal", 500, "internal server error; see the server log")
            }
        }
    }
}
