//! The settings of `ops_settings`: their keys, defaults and validation.

use std::collections::HashMap;

use ops_protocol::admin::{SettingValue, SettingsView};

use ops_base::error::{Error, Result};

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    Token,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A price table (`super::prices`).
    Prices,
}

struct Def {
    key: &'static str,
    default: &'static str,
    kind: Kind,
}

/// The shortest service token accepted: long enough that it cannot be
/// guessed (the generated ones are 64 hex characters).
pub const MIN_TOKEN_LEN: usize = 32;

pub const DISPATCH_ENABLED: &str = "dispatch_enabled";
pub const DISPATCH_STALE_MINUTES: &str = "dispatch_stale_minutes";
pub const WORKER_STALE_SECONDS: &str = "dispatch_worker_stale_seconds";
pub const CLAIM_GRACE_SECONDS: &str = "dispatch_claim_grace_seconds";
pub const SERVICE_API_TOKEN: &str = "service_api_token";
pub const WATCHDOG_INTERVAL_SECONDS: &str = "watchdog_interval_seconds";
pub const WATCHDOG_FAILURE_THRESHOLD: &str = "watchdog_failure_threshold";
pub const EVENTS_RETENTION_DAYS: &str = "events_retention_days";
pub const UI_LANGUAGE: &str = "ui_language";
pub const REPLICATION_MAX_LAG_SECONDS: &str = "replication_max_lag_seconds";
pub const MODEL_PRICES: &str = "model_prices";
/// Internal: `generated` while the token is the one made at first start.
pub const TOKEN_ORIGIN: &str = "service_api_token_origin";

const DEFS: &[Def] = &[
    Def {
        key: DISPATCH_ENABLED,
        default: "false",
        kind: Kind::Bool,
    },
    Def {
        key: DISPATCH_STALE_MINUTES,
        default: "20",
        kind: Kind::Int {
            min: 1,
            max: 10_080,
        },
    },
    Def {
        key: WORKER_STALE_SECONDS,
        default: "90",
        kind: Kind::Int {
            min: 5,
            max: 86_400,
        },
    },
    Def {
        key: CLAIM_GRACE_SECONDS,
        default: "60",
        kind: Kind::Int { min: 1, max: 3_600 },
    },
    Def {
        key: SERVICE_API_TOKEN,
        default: "",
        kind: Kind::Token,
    },
    Def {
        key: WATCHDOG_INTERVAL_SECONDS,
        default: "60",
        kind: Kind::Int {
            min: 5,
            max: 86_400,
        },
    },
    Def {
        key: WATCHDOG_FAILURE_THRESHOLD,
        default: "3",
        kind: Kind::Int { min: 1, max: 1_000 },
    },
    Def {
        key: EVENTS_RETENTION_DAYS,
        default: "90",
        kind: Kind::Int {
            min: 0,
            max: 36_500,
        },
    },
    Def {
        key: UI_LANGUAGE,
        default: "es",
        kind: Kind::Choice(&["es", "en"]),
    },
    Def {
        key: REPLICATION_MAX_LAG_SECONDS,
        default: "30",
        kind: Kind::Int {
            min: 1,
            max: 86_400,
        },
    },
    Def {
        key: MODEL_PRICES,
        default: "{}",
        kind: Kind::Prices,
    },
];

/// The language of the words the server itself writes for people to read
/// (the watchdog's alert and follow-up task titles); codes and kinds stay
/// as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Language {
    #[default]
    Es,
    En,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Es => "es",
            Language::En => "en",
        }
    }
}

fn def(key: &str) -> Option<&'static Def> {
    DEFS.iter().find(|d| d.key == key)
}

pub fn known_keys() -> Vec<&'static str> {
    DEFS.iter().map(|d| d.key).collect()
}

/// Checks `raw` for `key` and returns the value to store (trimmed, and
/// booleans lower-cased). A bad key or value names what is accepted.
pub fn validate(key: &str, raw: &str) -> Result<String> {
    let def = def(key).ok_or_else(|| Error::BadRequest {
        code: "unknown_setting",
        message: format!(
            "unknown setting `{key}`; known settings: {}",
            known_keys().join(", ")
        ),
    })?;
    let value = raw.trim();
    let bad = |why: String| Error::BadRequest {
        code: "invalid_setting",
        message: format!("invalid value for `{key}`: {why}"),
    };
    match def.kind {
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            v @ ("true" | "false") => Ok(v.to_string()),
            _ => Err(bad(format!("expected true or false, got {raw:?}"))),
        },
        Kind::Int { min, max } => match value.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n.to_string()),
            Ok(n) => Err(bad(format!("{n} is outside {min}..={max}"))),
            Err(_) => Err(bad(format!(
                "expected a whole number from {min} to {max}, got {raw:?}"
            ))),
        },
        Kind::Token => validate_token(value).map(str::to_string).map_err(bad),
        Kind::Prices => super::prices::parse(value)
            .map(|_| value.to_string())
            .map_err(bad),
        Kind::Choice(words) => {
            let v = value.to_ascii_lowercase();
            if words.contains(&v.as_str()) {
                Ok(v)
            } else {
                Err(bad(format!(
                    "expected one of {}, got {raw:?}",
                    words.join(", ")
                )))
            }
        }
    }
}

/// A service token: at least [`MIN_TOKEN_LEN`] printable characters, no
/// spaces, and not one character repeated.
pub fn validate_token(token: &str) -> std::result::Result<&str, String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "a service token needs at least {MIN_TOKEN_LEN} characters"
        ));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err("a service token may hold only printable ASCII without spaces".into());
    }
    let distinct: std::collections::HashSet<char> = token.chars().collect();
    if distinct.len() < 8 {
        return Err("a service token needs at least 8 different characters".into());
    }
    Ok(token)
}

/// The settings in force, with the runtime fallback for any value that is
/// unset or invalid in the table.
#[derive(Clone, Debug)]
pub struct Settings {
    pub dispatch_enabled: bool,
    pub dispatch_stale_minutes: i64,
    pub dispatch_worker_stale_seconds: i64,
    /// How long after a claim the worker's heartbeats must list the task;
    /// one that does not is taken back (the claim's answer was lost).
    pub dispatch_claim_grace_seconds: i64,
    pub service_api_token: String,
    pub watchdog_interval_seconds: i64,
    pub watchdog_failure_threshold: i64,
    /// Events older than this many days are pruned (0: never), except those
    /// of unfinished tasks and of tasks with an open alert.
    pub events_retention_days: i64,
    pub ui_language: Language,
    /// Health is not ok, and an alert opens, while the replica is further
    /// behind than this.
    pub replication_max_lag_seconds: i64,
    /// What tokens cost when the CLI does not say (`model_prices`).
    pub model_prices: Vec<super::prices::Price>,
    pub token_generated: bool,
}

impl Settings {
    pub fn from_map(stored: &HashMap<String, String>) -> Settings {
        let get = |key: &str| -> String {
            let def = def(key).expect("known key");
            stored
                .get(key)
                .and_then(|v| validate(key, v).ok())
                .unwrap_or_else(|| def.default.to_string())
        };
        let int = |key: &str| get(key).parse::<i64>().expect("validated integer");
        Settings {
            dispatch_enabled: get(DISPATCH_ENABLED) == "true",
            dispatch_stale_minutes: int(DISPATCH_STALE_MINUTES),
            dispatch_worker_stale_seconds: int(WORKER_STALE_SECONDS),
            dispatch_claim_grace_seconds: int(CLAIM_GRACE_SECONDS),
            service_api_token: stored.get(SERVICE_API_TOKEN).cloned().unwrap_or_default(),
            watchdog_interval_seconds: int(WATCHDOG_INTERVAL_SECONDS),
            watchdog_failure_threshold: int(WATCHDOG_FAILURE_THRESHOLD),
            events_retention_days: int(EVENTS_RETENTION_DAYS),
            ui_language: if get(UI_LANGUAGE) == "en" {
                Language::En
            } else {
                Language::Es
            },
            replication_max_lag_seconds: int(REPLICATION_MAX_LAG_SECONDS),
            model_prices: super::prices::parse(&get(MODEL_PRICES)).unwrap_or_default(),
            token_generated: stored.get(TOKEN_ORIGIN).map(String::as_str) == Some("generated"),
        }
    }

    /// What `GET /api/settings` and health show: typed values, the token
    /// never shown.
    pub fn view(&self) -> SettingsView {
        SettingsView {
            dispatch_enabled: self.dispatch_enabled,
            dispatch_stale_minutes: self.dispatch_stale_minutes,
            dispatch_worker_stale_seconds: self.dispatch_worker_stale_seconds,
            dispatch_claim_grace_seconds: self.dispatch_claim_grace_seconds,
            service_api_token: (!self.service_api_token.is_empty()).then(|| "[redacted]".into()),
            watchdog_interval_seconds: self.watchdog_interval_seconds,
            watchdog_failure_threshold: self.watchdog_failure_threshold,
            events_retention_days: self.events_retention_days,
            ui_language: self.ui_language.as_str().to_string(),
            replication_max_lag_seconds: self.replication_max_lag_seconds,
            model_prices: self.model_prices_text(),
        }
    }

    /// `model_prices` as a JSON object, families in order.
    fn model_prices_text(&self) -> String {
        let families: serde_json::Map<String, serde_json::Value> = self
            .model_prices
            .iter()
            .map(|p| {
                (
                    p.family.clone(),
                    serde_json::json!({"input": p.input, "output": p.output}),
                )
            })
            .collect();
        serde_json::Value::Object(families).to_string()
    }

    /// The typed value of one key, as in [`Settings::view`].
    pub fn value(&self, key: &str) -> Option<SettingValue> {
        use SettingValue::{Flag, Number, Text};
        Some(match key {
            DISPATCH_ENABLED => Flag(self.dispatch_enabled),
            DISPATCH_STALE_MINUTES => Number(self.dispatch_stale_minutes),
            WORKER_STALE_SECONDS => Number(self.dispatch_worker_stale_seconds),
            CLAIM_GRACE_SECONDS => Number(self.dispatch_claim_grace_seconds),
            SERVICE_API_TOKEN => Text(self.view().service_api_token?),
            WATCHDOG_INTERVAL_SECONDS => Number(self.watchdog_interval_seconds),
            WATCHDOG_FAILURE_THRESHOLD => Number(self.watchdog_failure_threshold),
            EVENTS_RETENTION_DAYS => Number(self.events_retention_days),
            UI_LANGUAGE => Text(self.ui_language.as_str().to_string()),
            REPLICATION_MAX_LAG_SECONDS => Number(self.replication_max_lag_seconds),
            MODEL_PRICES => Text(self.model_prices_text()),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_per_key() {
        assert_eq!(validate("dispatch_enabled", " TRUE ").unwrap(), "true");
        assert!(validate("dispatch_enabled", "yes").is_err());
        assert_eq!(validate("ui_language", " EN ").unwrap(), "en");
        assert_eq!(validate("ui_language", "es").unwrap(), "es");
        assert!(validate("ui_language", "fr").is_err());
        assert!(validate("ui_language", "").is_err());
        assert_eq!(validate("dispatch_stale_minutes", "20").unwrap(), "20");
        assert!(validate("dispatch_stale_minutes", "0").is_err());
        assert!(validate("dispatch_stale_minutes", "abc").is_err());
        assert!(validate("dispatch_worker_stale_seconds", "999999").is_err());
        assert!(validate("no_such_key", "1").is_err());
        assert!(validate("service_api_token", "short").is_err());
        assert!(validate("service_api_token", &"a".repeat(40)).is_err());
        assert!(validate("service_api_token", "0123456789abcdef0123456789abcdef").is_ok());
    }

    #[test]
    fn invalid_stored_values_fall_back_to_defaults() {
        let mut m = HashMap::new();
        m.insert("dispatch_stale_minutes".to_string(), "banana".to_string());
        m.insert("dispatch_enabled".to_string(), "true".to_string());
        let s = Settings::from_map(&m);
        assert_eq!(s.dispatch_stale_minutes, 20);
        assert!(s.dispatch_enabled);
        assert_eq!(s.dispatch_worker_stale_seconds, 90);
        assert_eq!(s.watchdog_failure_threshold, 3);
    }
}
