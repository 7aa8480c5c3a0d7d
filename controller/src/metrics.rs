//! Prometheus text metrics: boot answers by action, callbacks, failures, request latency.
//!
//! This process's counts: controllers sharing a PostgreSQL registry each count what they
//! answered (sum them over the scrape targets); the registry-wide figures (nodes per NFS
//! server) are read from the registry and the same on each.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram.
const BUCKETS: [f64; 11] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Inner {
    boots: BTreeMap<String, u64>,
    callbacks: BTreeMap<(String, String), u64>,
    node_failures: u64,
    server_errors: u64,
    /// Post-boot steps reported, by outcome (`ok`, `failed`).
    steps: BTreeMap<&'static str, u64>,
    /// "Boot complete" reports, by health (`healthy`, `unhealthy`).
    completes: BTreeMap<&'static str, u64>,
    latency: Histogram,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// One answered boot request (`action` as on the wire, `none` for null).
    pub fn boot(&self, action: &str) {
        self.with(|m| *m.boots.entry(action.to_string()).or_default() += 1);
    }

    /// `kind` = `installed` | `install_failed`; `outcome` = `ok` | `rejected`. Only
    /// reports the registry took count: a failure the node was moved to `install_failed`
    /// for is one node failure; 404s, 422s and refused transitions are not (anyone could
    /// send those).
    pub fn callback(&self, kind: &str, outcome: &str) {
        self.with(|m| {
            *m.callbacks
                .entry((kind.to_string(), outcome.to_string()))
                .or_default() += 1;
            if kind == "install_failed" && outcome == "ok" {
                m.node_failures += 1;
            }
        });
    }

    /// One post-boot step's outcome, as the node reported it.
    pub fn post_boot_step(&self, ok: bool) {
        let key = if ok { "ok" } else { "failed" };
        self.with(|m| *m.steps.entry(key).or_default() += 1);
    }

    /// One "boot complete" report.
    pub fn boot_complete(&self, healthy: bool) {
        let key = if healthy { "healthy" } else { "unhealthy" };
        self.with(|m| *m.completes.entry(key).or_default() += 1);
    }

    pub fn request(&self, elapsed: Duration, server_error: bool) {
        let secs = elapsed.as_secs_f64();
        self.with(|m| {
            let h = &mut m.latency;
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
            if server_error {
                m.server_errors += 1;
            }
        });
    }

    pub fn render(&self) -> String {
        self.with(|m| {
            let mut out = String::new();
            let _ = writeln!(
                out,
                "# HELP pureboot_boot_requests_total Boot requests this controller answered, by action."
            );
            let _ = writeln!(out, "# TYPE pureboot_boot_requests_total counter");
            for (action, n) in &m.boots {
                let _ = writeln!(
                    out,
                    "pureboot_boot_requests_total{{action=\"{action}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP pureboot_callbacks_total Node callbacks this controller received, by kind and outcome."
            );
            let _ = writeln!(out, "# TYPE pureboot_callbacks_total counter");
            for ((kind, outcome), n) in &m.callbacks {
                let _ = writeln!(
                    out,
                    "pureboot_callbacks_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP pureboot_node_failures_total Boot failures nodes reported to this controller."
            );
            let _ = writeln!(out, "# TYPE pureboot_node_failures_total counter");
            let _ = writeln!(out, "pureboot_node_failures_total {}", m.node_failures);
            let _ = writeln!(
                out,
                "# HELP pureboot_post_boot_steps_total Post-boot steps nodes reported to this controller, by outcome."
            );
            let _ = writeln!(out, "# TYPE pureboot_post_boot_steps_total counter");
            for key in ["ok", "failed"] {
                let n = m.steps.get(key).copied().unwrap_or(0);
                let _ = writeln!(out, "pureboot_post_boot_steps_total{{outcome=\"{key}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "# HELP pureboot_boot_complete_total Boot complete reports to this controller, by \
                 health (healthy: target reached, every step succeeded)."
            );
            let _ = writeln!(out, "# TYPE pureboot_boot_complete_total counter");
            for key in ["healthy", "unhealthy"] {
                let n = m.completes.get(key).copied().unwrap_or(0);
                let _ = writeln!(out, "pureboot_boot_complete_total{{health=\"{key}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "# HELP pureboot_http_server_errors_total This controller's responses with a 5xx status."
            );
            let _ = writeln!(out, "# TYPE pureboot_http_server_errors_total counter");
            let _ = writeln!(out, "pureboot_http_server_errors_total {}", m.server_errors);
            let _ = writeln!(
                out,
                "# HELP pureboot_http_request_duration_seconds This controller's HTTP request latency."
            );
            let _ = writeln!(
                out,
                "# TYPE pureboot_http_request_duration_seconds histogram"
            );
            let h = &m.latency;
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "pureboot_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "pureboot_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "pureboot_http_request_duration_seconds_sum {}", h.sum);
            let _ = writeln!(
                out,
                "pureboot_http_request_duration_seconds_count {}",
                h.count
            );
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.request(Duration::from_millis(3), false);
        m.request(Duration::from_millis(30), true);
        m.boot("nfs_boot");
        m.boot("nfs_boot");
        m.callback("install_failed", "ok");
        m.post_boot_step(false);
        m.boot_complete(true);
        let text = m.render();
        assert!(
            text.contains("pureboot_post_boot_steps_total{outcome=\"failed\"} 1\n")
                && text.contains("pureboot_post_boot_steps_total{outcome=\"ok\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("pureboot_boot_complete_total{health=\"healthy\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("le=\"0.001\"} 0\n"), "{text}");
        assert!(text.contains("le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("le=\"0.05\"} 2\n"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 2\n"), "{text}");
        assert!(
            text.contains("pureboot_boot_requests_total{action=\"nfs_boot\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("pureboot_node_failures_total 1\n"), "{text}");
        assert!(
            text.contains("pureboot_http_server_errors_total 1\n"),
            "{text}"
        );
    }
}
