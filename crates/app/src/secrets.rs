//! Random secrets, password hashes and digests.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use ops_base::error::{Error, Result};

/// The shortest password accepted for a user.
pub const MIN_PASSWORD_LEN: usize = 12;

/// `bytes` random bytes from the OS, as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    hex(&buf)
}

pub fn sha256_hex(s: &str) -> String {
    sha256_hex_bytes(s.as_bytes())
}

pub fn sha256_hex_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares in time independent of where the inputs differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    // Comparing digests keeps the length of the secret from leaking too.
    Sha256::digest(a.as_bytes())
        .ct_eq(&Sha256::digest(b.as_bytes()))
        .into()
}

/// Password hashes computed at once, at most: each takes argon2id's 19 MiB
/// for a few tens of milliseconds, so unbounded logins could take the
/// memory and every core of a small host.
pub const HASHES_AT_ONCE: usize = 2;
/// Logins waiting for a turn, at most; the next is refused (429).
const LOGINS_WAITING: usize = 2;
/// How long a login waits for a turn before it is refused (429).
const LOGIN_WAIT: Duration = Duration::from_secs(3);

/// Turns at hashing: at most [`HASHES_AT_ONCE`] run, the rest wait.
struct Gate {
    state: Mutex<(usize, usize)>,
    turn: Condvar,
}

static GATE: Gate = Gate {
    state: Mutex::new((0, 0)),
    turn: Condvar::new(),
};

/// A turn at hashing, given back when dropped.
struct Turn;

impl Drop for Turn {
    fn drop(&mut self) {
        let mut s = GATE.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 -= 1;
        GATE.turn.notify_one();
    }
}

/// Waits for a turn; with `limit` (a login), refuses past the waiting
/// queue's length or the wait.
fn turn(limit: bool) -> Result<Turn> {
    let busy = || Error::RateLimited {
        retry_after_secs: 1,
    };
    let mut s = GATE.state.lock().unwrap_or_else(|p| p.into_inner());
    if s.0 < HASHES_AT_ONCE {
        s.0 += 1;
        return Ok(Turn);
    }
    if limit && s.1 >= LOGINS_WAITING {
        return Err(busy());
    }
    s.1 += 1;
    let until = Instant::now() + LOGIN_WAIT;
    while s.0 >= HASHES_AT_ONCE {
        if limit && Instant::now() >= until {
            s.1 -= 1;
            return Err(busy());
        }
        s = GATE
            .turn
            .wait_timeout(
                s,
                until
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            )
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    s.1 -= 1;
    s.0 += 1;
    Ok(Turn)
}

/// An argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> Result<String> {
    let _turn = turn(false)?;
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("password hashing failed: {e}")))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(_turn) = turn(false) else {
        return false;
    };
    verify(password, phc)
}

/// [`verify_password`] for a login: when [`HASHES_AT_ONCE`] run and the
/// short queue is full, or the turn does not come within a few seconds,
/// `429 rate_limited` with `Retry-After: 1` instead of waiting.
pub fn verify_login(password: &str, phc: &str) -> Result<bool> {
    let _turn = turn(true)?;
    Ok(verify(password, phc))
}

fn verify(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// A password a user may set: long enough, not blank.
pub fn check_password_strength(password: &str) -> std::result::Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "a password needs at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    if password.trim().is_empty() {
        return Err("a password cannot be only spaces".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong horse battery", &h));
    }

    #[test]
    fn random_and_compare() {
        let a = random_hex(32);
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_hex(32));
        assert!(constant_time_eq(&a, &a.clone()));
        assert!(!constant_time_eq(&a, &random_hex(32)));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
