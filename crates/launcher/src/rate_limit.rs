//! Whether what an agent's CLI printed says it was rate limited or out of
//! quota — a run to retry later rather than a failure — and when it may
//! try again. One table of the messages of the model providers and of the
//! four known CLIs, each with who says it; `transcript/fixtures/` holds
//! real ones.

use ops_base::time::now_ms;

/// One rate-limit or quota message: a lowercase piece of its text and who
/// prints it.
pub struct Signal {
    pub needle: &'static str,
    pub source: &'static str,
}

pub const SIGNALS: &[Signal] = &[
    // HTTP status lines, as the CLIs quote them.
    Signal {
        needle: "http 429",
        source: "Hermes (`HTTP 429: …`), opencode's error event as the launcher reads it",
    },
    Signal {
        needle: "429 too many requests",
        source: "codex (`exceeded retry limit, last status: 429 Too Many Requests`)",
    },
    Signal {
        needle: "request rejected (429)",
        source: "Claude Code (`API Error: Request rejected (429) · …`)",
    },
    Signal {
        needle: "\"error_status\":429",
        source: "Claude Code's stream-json `api_retry` line",
    },
    Signal {
        needle: "\"api_error_status\":429",
        source: "Claude Code's stream-json `result` line",
    },
    Signal {
        needle: "too many requests",
        source: "HTTP 429's reason phrase, any provider",
    },
    // The providers' error types and messages.
    Signal {
        needle: "rate_limit_error",
        source: "Anthropic API error type",
    },
    Signal {
        needle: "rate_limit_exceeded",
        source: "OpenAI API error code",
    },
    Signal {
        needle: "insufficient_quota",
        source: "OpenAI API error code (no credit left)",
    },
    Signal {
        needle: "exceeded your current quota",
        source: "OpenAI API message (`You exceeded your current quota, …`)",
    },
    Signal {
        needle: "rate limit reached",
        source: "OpenAI API message (`Rate limit reached for … Please try again in 20s.`)",
    },
    Signal {
        needle: "rate limit exceeded",
        source: "OpenRouter and others",
    },
    Signal {
        needle: "resource_exhausted",
        source: "Google Gemini API status",
    },
    Signal {
        needle: "throttlingexception",
        source: "AWS Bedrock",
    },
    // The CLIs' own words.
    Signal {
        needle: "\"error\":\"rate_limit\"",
        source: "Claude Code's stream-json `api_retry` line",
    },
    Signal {
        needle: "server is temporarily limiting requests",
        source: "Claude Code",
    },
    Signal {
        needle: "rate limited",
        source: "Claude Code (`rate limited — wait and retry`), opencode's retry status",
    },
    Signal {
        needle: "usage limit reached",
        source: "Claude Code (`Claude AI usage limit reached|<reset>`; its `rate_limit_event` as `transcript` reads it), codex (`Usage limit reached`)",
    },
    Signal {
        needle: "5-hour limit reached",
        source: "Claude Code (`5-hour limit reached ∙ resets 3pm`)",
    },
    Signal {
        needle: "you've hit your",
        source: "Claude Code (`You've hit your session limit · resets …`), codex (`You've hit your usage limit. … try again at …`)",
    },
    Signal {
        needle: "you\u{2019}ve hit your",
        source: "the same with a typographic apostrophe",
    },
    Signal {
        needle: "reached your usage limit",
        source: "codex (`You've reached your usage limit.`)",
    },
    Signal {
        needle: "quota exceeded",
        source: "codex (`Quota exceeded. Check your plan and billing details.`)",
    },
    Signal {
        needle: "out of usage credits",
        source: "Claude Code (`You're out of usage credits`)",
    },
];

/// `Some(retry)` when `text` says the CLI was rate limited or is out of
/// quota, `retry` being the seconds to wait when the text says (a
/// `retry-after: 30`, "try again in 20s", a reset time), else `None`.
pub fn rate_limited(text: &str) -> Option<Option<i64>> {
    rate_limited_at(text, now_ms())
}

/// [`rate_limited`] at `now` (ms since the epoch), for reset times.
pub fn rate_limited_at(text: &str, now: i64) -> Option<Option<i64>> {
    let lower = text.to_lowercase();
    SIGNALS
        .iter()
        .any(|s| lower.contains(s.needle))
        .then(|| retry_after(&lower, now))
}

/// The wait, in seconds, that a (lowercase) text names.
fn retry_after(lower: &str, now: i64) -> Option<i64> {
    for key in ["retry-after", "retry_after", "retry after"] {
        if let Some(i) = lower.find(key) {
            let rest = lower[i + key.len()..].trim_start_matches([':', '"', ' ', '=', '\'']);
            if let Some(s) = duration(rest) {
                return Some(s);
            }
        }
    }
    if let Some(i) = lower.find("\"retry_delay_ms\":") {
        let digits: String = lower[i + 17..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        if let Ok(ms) = digits.parse::<i64>() {
            return Some((ms + 999) / 1000);
        }
    }
    for key in [
        "try again in",
        "retry in",
        "retrying in",
        "resets in",
        "reset in",
    ] {
        if let Some(i) = lower.find(key) {
            if let Some(s) = duration(lower[i + key.len()..].trim_start()) {
                return Some(s);
            }
        }
    }
    for key in ["resets at", "reset at", "try again at", "resets ", "|"] {
        for (i, _) in lower.match_indices(key) {
            if let Some(at) = instant(lower[i + key.len()..].trim_start()) {
                return Some(((at - now) / 1000).max(0));
            }
        }
    }
    None
}

/// A duration at the start of `s`: `30`, `20s`, `1m30s`, `6m 0s`,
/// `2 minutes`, `1h`, `250ms`, `1.5s` (seconds, rounded up).
fn duration(s: &str) -> Option<i64> {
    let mut total_ms: f64 = 0.0;
    let mut rest = s;
    let mut any = false;
    loop {
        let num: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        if num.is_empty() {
            break;
        }
        let Ok(n) = num.parse::<f64>() else { break };
        rest = rest[num.len()..].trim_start();
        let unit: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        let factor = match unit.as_str() {
            "ms" | "millisecond" | "milliseconds" => 1.0,
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1000.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60_000.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000.0,
            "d" | "day" | "days" => 86_400_000.0,
            _ => break,
        };
        total_ms += n * factor;
        any = true;
        rest = rest[unit.len()..].trim_start_matches([' ', ',']);
        if unit.is_empty() {
            break;
        }
    }
    any.then(|| (total_ms / 1000.0).ceil() as i64)
}

/// An instant at the start of `s`, in ms since the epoch: Unix seconds
/// (ten digits) or an RFC 3339 time (`2026-12-07T23:00:00Z`, an offset
/// allowed).
fn instant(s: &str) -> Option<i64> {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.len() == 10 && !s[10..].starts_with(['-', ':']) {
        return digits.parse::<i64>().ok().map(|secs| secs * 1000);
    }
    rfc3339(s)
}

fn rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b't' | b'T' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.chars().take_while(|c| c.is_ascii_digit()).count();
        rest = &frac[n..];
    }
    let offset = match rest.chars().next() {
        Some('z') | Some('Z') | None => 0,
        Some(sign @ ('+' | '-')) => {
            let oh = rest.get(1..3)?.parse::<i64>().ok()?;
            let om = rest.get(4..6)?.parse::<i64>().ok()?;
            let o = oh * 3600 + om * 60;
            if sign == '+' {
                o
            } else {
                -o
            }
        }
        _ => 0,
    };
    // Days since 1970-01-01 of a proleptic Gregorian date.
    let (y2, m2) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + se) - offset) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_680_000_000; // 2026-12-07T21:46:40Z

    /// One real (or documented) message per table entry.
    const EXAMPLES: &[(&str, &str)] = &[
        ("http 429", "API call failed after 3 retries: HTTP 429: Rate limit reached for requests (scripted). Please try again in 30s."),
        ("429 too many requests", "exceeded retry limit, last status: 429 Too Many Requests"),
        ("request rejected (429)", "API Error: Request rejected (429) · this may be a temporary capacity issue."),
        ("\"error_status\":429", r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":1,"retry_delay_ms":30000,"error_status":429,"error":"rate_limit"}"#),
        ("\"api_error_status\":429", r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":429,"result":"API Error"}"#),
        ("too many requests", "Error: 429 Too Many Requests"),
        ("rate_limit_error", r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#),
        ("rate_limit_exceeded", r#"{"error":{"type":"tokens","code":"rate_limit_exceeded","message":"slow down"}}"#),
        ("insufficient_quota", r#"{"error":{"type":"insufficient_quota","code":"insufficient_quota"}}"#),
        ("exceeded your current quota", "You exceeded your current quota, please check your plan and billing details."),
        ("rate limit reached", "Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Used 30000, Requested 10. Please try again in 20ms."),
        ("rate limit exceeded", "Rate limit exceeded: free-models-per-day"),
        ("resource_exhausted", r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}"#),
        ("throttlingexception", "ThrottlingException: Too many tokens, please wait before trying again."),
        ("\"error\":\"rate_limit\"", r#"{"subtype":"api_retry","error":"rate_limit"}"#),
        ("server is temporarily limiting requests", "API Error: Server is temporarily limiting requests (not your usage limit) · Rate limited"),
        ("rate limited", "rate limited — wait and retry"),
        ("usage limit reached", "Claude AI usage limit reached|1796683600"),
        ("5-hour limit reached", "5-hour limit reached ∙ resets 3pm"),
        ("you've hit your", "You've hit your session limit · resets 11pm (UTC)"),
        ("you\u{2019}ve hit your", "You\u{2019}ve hit your usage limit. Upgrade to Pro, or try again at 2026-12-08T01:00:00Z."),
        ("reached your usage limit", "Usage limit reached. You've reached your usage limit. Increase your limits to continue using codex."),
        ("quota exceeded", "Quota exceeded. Check your plan and billing details."),
        ("out of usage credits", "You're out of usage credits"),
    ];

    #[test]
    fn every_entry_is_recognised() {
        for s in SIGNALS {
            let (_, text) = EXAMPLES
                .iter()
                .find(|(n, _)| *n == s.needle)
                .unwrap_or_else(|| panic!("no example for {:?}", s.needle));
            assert!(
                text.to_lowercase().contains(s.needle),
                "{:?} is not in its example",
                s.needle
            );
            assert!(rate_limited_at(text, NOW).is_some(), "{text}");
        }
        assert_eq!(EXAMPLES.len(), SIGNALS.len());
    }

    #[test]
    fn ordinary_errors_are_not_rate_limits() {
        for text in [
            "HTTP 401: Incorrect API key provided.",
            "Invalid API key · Fix external API key",
            r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
            "unexpected status 401 Unauthorized: Incorrect API key provided., url: http://127.0.0.1:1/v1/responses",
            "HTTP 500: Internal Server Error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            "error: could not compile `foo` (retry-after: 30)",
            r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed","rateLimitType":"five_hour"}}"#,
            "",
        ] {
            assert_eq!(rate_limited_at(text, NOW), None, "{text}");
        }
    }

    #[test]
    fn says_when_to_try_again() {
        let r = |t: &str| rate_limited_at(t, NOW).expect(t);
        assert_eq!(r("HTTP 429\nretry-after: 30"), Some(30));
        assert_eq!(
            r(r#"429 Too Many Requests {"retry-after": "45"}"#),
            Some(45)
        );
        assert_eq!(r("Rate limit reached. Please try again in 20s."), Some(20));
        assert_eq!(r("Rate limit reached. Please try again in 20ms."), Some(1));
        assert_eq!(
            r("Rate limit reached. Please try again in 1m30s."),
            Some(90)
        );
        assert_eq!(
            r("Rate limit reached. Please try again in 6m 0s."),
            Some(360)
        );
        assert_eq!(r("rate limit exceeded, try again in 2 minutes"), Some(120));
        assert_eq!(r("Rate limit reached. Please try again in 1.5s."), Some(2));
        assert_eq!(
            r(r#"{"retry_delay_ms":30000,"error_status":429,"error":"rate_limit"}"#),
            Some(30)
        );
        assert_eq!(
            r("You've hit your session limit · resets in 2h 30m"),
            Some(9000)
        );
        // Reset times: Unix seconds and RFC 3339.
        assert_eq!(r("Claude AI usage limit reached|1796683600"), Some(3600));
        assert_eq!(
            r("You've hit your usage limit. try again at 2026-12-07T22:46:40Z."),
            Some(3600)
        );
        assert_eq!(
            r("You've hit your usage limit. try again at 2026-12-07T23:46:40+01:00."),
            Some(3600)
        );
        // A reset already past: no wait.
        assert_eq!(
            r("usage limit reached (five_hour), resets at 1796670000"),
            Some(0)
        );
        // None said.
        assert_eq!(
            r("exceeded retry limit, last status: 429 Too Many Requests"),
            None
        );
        assert_eq!(r("5-hour limit reached ∙ resets 3pm"), None);
    }

    #[test]
    fn reads_the_time_formats() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339("2000-03-01T00:00:00.5Z"), Some(951_868_800_000));
        assert_eq!(duration("30"), Some(30));
        assert_eq!(duration("soon"), None);
        assert_eq!(instant("1796683600 and more"), Some(1_796_683_600_000));
    }
}
