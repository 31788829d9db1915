//! The process's counters and histograms for `GET /metrics`, and the
//! Prometheus text format they are written in.
//!
//! Counting is a few relaxed atomic additions on the paths that count
//! (each answered request, each commit, each claim): no lock, no SQL. The
//! gauges that come from the database are read once per scrape, by
//! `app::metrics`. One process serves one database, so the counters are
//! one static, [`METRICS`].

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Failure signatures kept as their own label value; later new ones are
/// counted under [`OTHER_SIGNATURE`], so a misbehaving agent cannot grow
/// the series without bound.
pub const MAX_SIGNATURES: usize = 32;
pub const OTHER_SIGNATURE: &str = "other";
/// A signature's label value is cut to this many characters.
const SIGNATURE_CHARS: usize = 80;

/// Upper bounds (seconds) of the request-duration buckets.
const REQUEST_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Upper bounds (seconds) of the commit-duration buckets: a commit is an
/// fsync or two, well under a request.
const COMMIT_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

pub static METRICS: Metrics = Metrics::new();

pub struct Metrics {
    /// Answered requests by status code (index = code; codes outside
    /// 100..=599 are not produced by the server).
    requests: [AtomicU64; 600],
    request_seconds: Histogram<12>,
    commit_seconds: Histogram<12>,
    claims: AtomicU64,
    /// Request log lines dropped because the log thread fell behind.
    log_dropped: AtomicU64,
    /// Requests dropped unrun: their client had gone, or they waited too
    /// long for a handler.
    dropped_requests: AtomicU64,
    /// Claim answers that never reached their worker (withdrawn).
    claims_undelivered: AtomicU64,
    /// Long-poll claims in the waiting room now.
    parked: AtomicU64,
    /// Events deleted by retention.
    pruned: AtomicU64,
    /// Events per second of the last retention run that deleted any (the
    /// bits of an f64).
    prune_rate: AtomicU64,
    /// Failure reports by signature. A lock is fine here: failure reports
    /// are rare next to requests.
    failures: Mutex<Option<HashMap<String, u64>>>,
}

impl Metrics {
    const fn new() -> Metrics {
        Metrics {
            requests: [const { AtomicU64::new(0) }; 600],
            request_seconds: Histogram::new(REQUEST_BUCKETS),
            commit_seconds: Histogram::new(COMMIT_BUCKETS),
            claims: AtomicU64::new(0),
            log_dropped: AtomicU64::new(0),
            dropped_requests: AtomicU64::new(0),
            claims_undelivered: AtomicU64::new(0),
            parked: AtomicU64::new(0),
            pruned: AtomicU64::new(0),
            prune_rate: AtomicU64::new(0),
            failures: Mutex::new(None),
        }
    }

    /// One answered request (any route, any status), and how long it took
    /// from its complete head to its answer.
    pub fn request(&self, status: u16, took: Duration) {
        if let Some(c) = self.requests.get(usize::from(status)) {
            c.fetch_add(1, Relaxed);
        }
        self.request_seconds.observe(took);
    }

    /// One answer to a request refused before its head was complete (a
    /// timeout, a head too large): counted by code, not timed.
    pub fn refused(&self, status: u16) {
        if let Some(c) = self.requests.get(usize::from(status)) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// One committed write transaction, and how long its `COMMIT` took.
    pub fn commit(&self, took: Duration) {
        self.commit_seconds.observe(took);
    }

    /// One request log line dropped (the log thread fell behind).
    pub fn log_line_dropped(&self) {
        self.log_dropped.fetch_add(1, Relaxed);
    }

    /// One request dropped before a handler ran it.
    pub fn request_dropped(&self) {
        self.dropped_requests.fetch_add(1, Relaxed);
    }

    /// One claim answer withdrawn because it could not be delivered.
    pub fn claim_undelivered(&self) {
        self.claims_undelivered.fetch_add(1, Relaxed);
    }

    /// How many long-poll claims the waiting room holds now.
    pub fn parked(&self, n: usize) {
        self.parked.store(n as u64, Relaxed);
    }

    /// One task claimed by a worker.
    pub fn claim(&self) {
        self.claims.fetch_add(1, Relaxed);
    }

    /// Events deleted by a retention batch.
    pub fn pruned(&self, n: u64) {
        self.pruned.fetch_add(n, Relaxed);
    }

    /// The rate of the retention run that just ended, in events per second.
    pub fn prune_rate(&self, per_second: f64) {
        self.prune_rate.store(per_second.to_bits(), Relaxed);
    }

    /// One failure report accepted, by its signature.
    pub fn failure(&self, signature: &str) {
        let sig: String = signature.chars().take(SIGNATURE_CHARS).collect();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let map = map.get_or_insert_with(HashMap::new);
        let key = if map.contains_key(&sig) || map.len() < MAX_SIGNATURES {
            sig
        } else {
            OTHER_SIGNATURE.to_string()
        };
        *map.entry(key).or_insert(0) += 1;
    }

    /// Writes the process's counters and histograms.
    pub fn write(&self, out: &mut Text) {
        out.header(
            "ops_dispatch_claims_total",
            "counter",
            "Tasks claimed by workers since the server started.",
        );
        out.sample("ops_dispatch_claims_total", &[], self.claims.load(Relaxed));

        out.header(
            "ops_dispatch_failures_total",
            "counter",
            "Failure reports accepted since the server started, by signature (at most 32 \
             signatures, the rest as \"other\").",
        );
        let mut failures: Vec<(String, u64)> = {
            let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            map.iter().flatten().map(|(k, v)| (k.clone(), *v)).collect()
        };
        failures.sort();
        for (sig, n) in &failures {
            out.sample("ops_dispatch_failures_total", &[("signature", sig)], n);
        }

        out.header(
            "ops_dispatch_claims_undelivered_total",
            "counter",
            "Claim answers that could not be delivered to their worker and were withdrawn \
             (the task went back to the queue).",
        );
        out.sample(
            "ops_dispatch_claims_undelivered_total",
            &[],
            self.claims_undelivered.load(Relaxed),
        );

        out.gauge(
            "ops_dispatch_claims_parked",
            "Long-poll claims (dispatch/next?wait=N) waiting for a task now.",
            self.parked.load(Relaxed),
        );

        out.header(
            "ops_http_log_dropped_total",
            "counter",
            "Request log lines dropped because the log thread fell behind.",
        );
        out.sample(
            "ops_http_log_dropped_total",
            &[],
            self.log_dropped.load(Relaxed),
        );

        out.header(
            "ops_http_requests_dropped_total",
            "counter",
            "Requests dropped before a handler ran them: their client had gone, or they \
             waited too long for a handler.",
        );
        out.sample(
            "ops_http_requests_dropped_total",
            &[],
            self.dropped_requests.load(Relaxed),
        );

        out.header(
            "ops_events_pruned_total",
            "counter",
            "Events deleted by retention (events_retention_days) since the server started.",
        );
        out.sample("ops_events_pruned_total", &[], self.pruned.load(Relaxed));
        out.gauge(
            "ops_events_prune_per_second",
            "Events deleted per second by the last retention run that deleted any (0 before).",
            f64::from_bits(self.prune_rate.load(Relaxed)),
        );

        out.header(
            "ops_http_requests_total",
            "counter",
            "HTTP requests answered since the server started, by status code.",
        );
        for (code, c) in self.requests.iter().enumerate() {
            let n = c.load(Relaxed);
            if n > 0 {
                out.sample("ops_http_requests_total", &[("code", &code.to_string())], n);
            }
        }

        self.request_seconds.write(
            out,
            "ops_http_request_seconds",
            "Time from a request's complete head to its answer.",
        );
        self.commit_seconds.write(
            out,
            "ops_db_commit_seconds",
            "Time of each COMMIT of the database writer (one per batch of writes).",
        );
    }
}

/// A histogram of durations with fixed bucket bounds; sums kept in
/// nanoseconds so that every update is an integer atomic addition.
struct Histogram<const N: usize> {
    bounds: [f64; N],
    /// Count of observations in each bucket alone (not cumulative), and
    /// past the last bound.
    buckets: [AtomicU64; N],
    over: AtomicU64,
    sum_nanos: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    const fn new(bounds: [f64; N]) -> Self {
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; N],
            over: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        match self.bounds.iter().position(|b| secs <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Relaxed),
            None => self.over.fetch_add(1, Relaxed),
        };
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    fn write(&self, out: &mut Text, name: &str, help: &str) {
        out.header(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, c) in self.bounds.iter().zip(&self.buckets) {
            cumulative += c.load(Relaxed);
            out.sample(&bucket, &[("le", &bound.to_string())], cumulative);
        }
        cumulative += self.over.load(Relaxed);
        out.sample(&bucket, &[("le", "+Inf")], cumulative);
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        out.sample(&format!("{name}_sum"), &[], sum);
        out.sample(&format!("{name}_count"), &[], cumulative);
    }
}

/// A document in the Prometheus text exposition format (version 0.0.4).
#[derive(Default)]
pub struct Text(String);

impl Text {
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    pub fn header(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A gauge of one sample without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.header(name, "gauge", help);
        self.sample(name, &[], value);
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A label value as the text format wants it: backslash, double quote and
/// line feed escaped.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str(r"\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str(r"\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut t = Text::default();
        t.sample("m", &[("l", "a\"b\\c\nd")], 1);
        assert_eq!(t.into_string(), "m{l=\"a\\\"b\\\\c\\nd\"} 1\n");
    }

    #[test]
    fn signatures_beyond_the_cap_fold_into_other() {
        let m = Metrics::new();
        for i in 0..MAX_SIGNATURES + 5 {
            m.failure(&format!("sig-{i}"));
        }
        m.failure("sig-0");
        let map = m.failures.lock().unwrap();
        let map = map.as_ref().unwrap();
        assert_eq!(map.len(), MAX_SIGNATURES + 1);
        assert_eq!(map[OTHER_SIGNATURE], 5);
        assert_eq!(map["sig-0"], 2);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new([0.01, 0.1]);
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_secs(1));
        let mut t = Text::default();
        h.write(&mut t, "h", "x");
        let s = t.into_string();
        assert!(s.contains("h_bucket{le=\"0.01\"} 1\n"), "{s}");
        assert!(s.contains("h_bucket{le=\"0.1\"} 2\n"), "{s}");
        assert!(s.contains("h_bucket{le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("h_count 3\n"), "{s}");
        assert!(s.contains("h_sum 1.055\n"), "{s}");
    }
}
