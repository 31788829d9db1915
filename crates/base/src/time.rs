//! Time as stored (unix milliseconds) and as shown (RFC 3339, UTC).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How far this process's clock has been moved ahead of the wall clock:
/// always 0 but in a server started with `OPS_TEST_CLOCK=1`, whose tests
/// move time through `POST /api/test/clock` instead of rewriting
/// timestamps in the database behind the writer.
static AHEAD_MS: AtomicI64 = AtomicI64::new(0);

/// Milliseconds since the unix epoch: every timestamp the server stores
/// and every age it compares comes from here.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
        + AHEAD_MS.load(Ordering::Relaxed)
}

/// Moves [`now_ms`] forward by `ms` (test servers only; see `AHEAD_MS`).
pub fn advance(ms: i64) {
    AHEAD_MS.fetch_add(ms.max(0), Ordering::Relaxed);
}

/// Something done at most once per `every_ms` of [`now_ms`]: it follows
/// the test clock, so a test that moves time sees it done again.
pub struct Throttle {
    every_ms: i64,
    /// When it was last done; `i64::MIN` before the first time.
    last: AtomicI64,
}

impl Throttle {
    pub const fn new(every_ms: i64) -> Throttle {
        Throttle {
            every_ms,
            last: AtomicI64::new(i64::MIN),
        }
    }

    /// Whether it is due at `now`.
    pub fn due(&self, now: i64) -> bool {
        let last = self.last.load(Ordering::Relaxed);
        last == i64::MIN || now - last >= self.every_ms || now < last
    }

    /// Records that it was done at `now`.
    pub fn done(&self, now: i64) {
        self.last.store(now, Ordering::Relaxed);
    }
}

/// `2026-11-23T23:52:48.123Z` for a unix-millisecond timestamp.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// A calendar month (UTC): `2026-12`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Month {
    pub year: i64,
    pub month: u32,
}

impl Month {
    /// The month holding the unix-millisecond timestamp `ms`.
    pub fn of(ms: i64) -> Month {
        let (year, month, _) = civil_from_days(ms.div_euclid(86_400_000));
        Month { year, month }
    }

    /// `2026-12`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Month> {
        let (y, m) = s.split_once('-')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        let (year, month): (i64, u32) = (y.parse().ok()?, m.parse().ok()?);
        ((1970..=9999).contains(&year) && (1..=12).contains(&month))
            .then_some(Month { year, month })
    }

    /// Its first and the next month's first instant, in unix milliseconds.
    pub fn bounds(self) -> (i64, i64) {
        let next = if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        };
        (self.first_ms(), next.first_ms())
    }

    fn first_ms(self) -> i64 {
        days_from_civil(self.year, self.month, 1) * 86_400_000
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// (year, month, day) to days since 1970-01-01 (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::{rfc3339, Month};

    #[test]
    fn months_have_their_bounds() {
        let dec = Month::of(1_796_601_600_000); // 2026-12-07
        assert_eq!(dec.to_string(), "2026-12");
        let (from, to) = dec.bounds();
        assert_eq!(rfc3339(from), "2026-12-01T00:00:00.000Z");
        assert_eq!(rfc3339(to), "2027-01-01T00:00:00.000Z");
        let feb = Month::parse("2024-02").unwrap();
        assert_eq!(rfc3339(feb.bounds().1), "2024-03-01T00:00:00.000Z");
        assert_eq!(Month::of(feb.bounds().1 - 1), feb);
        for bad in ["2024-13", "2024-2", "24-02", "x", "2024-00", ""] {
            assert_eq!(Month::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_392_000_123), "2026-11-23T00:00:00.123Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }
}
