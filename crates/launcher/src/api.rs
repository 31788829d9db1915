//! A small client of the OPS API with the service token, shared by the
//! launcher and the smokes. Statuses are data here, not errors: callers
//! decide whether a 409 means "retry" or "give up".

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use ops_protocol::errors::ErrorBody;

pub const TOKEN_HEADER: &str = "X-OPS-Service-Token";

#[derive(Clone)]
pub struct Api {
    agent: ureq::Agent,
    base: String,
    token: String,
}

#[derive(Debug, Clone)]
pub enum ApiError {
    /// No answer: connection refused, timeout, broken body.
    Transport(String),
    /// The server answered with a status outside 2xx.
    Status {
        status: u16,
        code: String,
        message: String,
    },
}

impl ApiError {
    /// A refusal that repeating the same request cannot change (a 4xx
    /// other than 401, 408 and 429). 401 is left retryable because the
    /// token may be rotated on the server while the launcher runs.
    pub fn is_permanent(&self) -> bool {
        match self {
            ApiError::Transport(_) => false,
            ApiError::Status { status, .. } => {
                (400..500).contains(status) && ![401, 408, 429].contains(status)
            }
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            ApiError::Transport(_) => None,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            ApiError::Status { code, .. } => code,
            ApiError::Transport(_) => "",
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Transport(e) => write!(f, "server unreachable: {e}"),
            ApiError::Status {
                status,
                code,
                message,
            } => write!(f, "HTTP {status} {code}: {message}"),
        }
    }
}

impl Api {
    /// `base` ends with `/api`; `timeout` bounds each whole call.
    pub fn new(base: &str, token: &str, timeout: Duration) -> Api {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build();
        Api {
            agent: config.into(),
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub fn get(&self, path: &str) -> Result<Value, ApiError> {
        let r = self
            .agent
            .get(self.url(path))
            .header(TOKEN_HEADER, &self.token)
            .call();
        finish(r)
    }

    pub fn delete(&self, path: &str) -> Result<Value, ApiError> {
        let r = self
            .agent
            .delete(self.url(path))
            .header(TOKEN_HEADER, &self.token)
            .call();
        finish(r)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        let r = self
            .agent
            .post(self.url(path))
            .header(TOKEN_HEADER, &self.token)
            .send_json(body);
        finish(r)
    }

    /// `POST` a body of the protocol and read the answer as its type.
    pub fn post_as<A: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<A, ApiError> {
        let v = self.post(path, &serde_json::to_value(body).map_err(transport)?)?;
        typed(v)
    }

    /// `PUT` a body of the protocol and read the answer as its type.
    pub fn put_as<A: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<A, ApiError> {
        let v = self.put(path, &serde_json::to_value(body).map_err(transport)?)?;
        typed(v)
    }

    /// `GET` an answer of the protocol as its type.
    pub fn get_as<A: DeserializeOwned>(&self, path: &str) -> Result<A, ApiError> {
        typed(self.get(path)?)
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        let r = self
            .agent
            .put(self.url(path))
            .header(TOKEN_HEADER, &self.token)
            .send_json(body);
        finish(r)
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        let r = self
            .agent
            .patch(self.url(path))
            .header(TOKEN_HEADER, &self.token)
            .send_json(body);
        finish(r)
    }
}

fn transport(e: impl fmt::Display) -> ApiError {
    ApiError::Transport(e.to_string())
}

/// An answer that is not the protocol's shape is a broken answer, like a
/// cut connection: the caller retries.
fn typed<A: DeserializeOwned>(v: Value) -> Result<A, ApiError> {
    serde_json::from_value(v.clone())
        .map_err(|e| ApiError::Transport(format!("unexpected answer ({e}): {v}")))
}

fn finish(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Value, ApiError> {
    let resp = r.map_err(|e| ApiError::Transport(e.to_string()))?;
    let status = resp.status().as_u16();
    let text = resp
        .into_body()
        .read_to_string()
        .map_err(|e| ApiError::Transport(e.to_string()))?;
    let json: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    if (200..300).contains(&status) {
        return Ok(json);
    }
    // Any refusal of the server is an `ErrorBody`; a proxy's page is not.
    let (code, message) = match serde_json::from_value::<ErrorBody>(json) {
        Ok(b) => (b.error, b.message),
        Err(_) => (String::new(), text.chars().take(300).collect()),
    };
    Err(ApiError::Status {
        status,
        code,
        message,
    })
}
