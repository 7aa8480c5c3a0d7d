//! A node's last boot as a timeline for the status page: pi-init's steps from its start,
//! the boot answer, the way from `exec` to the agent's steps, the post-boot steps, "boot
//! complete". Positions are computed here (percent of the whole), so the page only draws
//! rectangles and a slow or missing stage shows at a glance without any script.

use serde::Serialize;

use crate::store::after_boot::BootRecord;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    /// From pi-init's start to the last stage reached, ms.
    pub total_ms: u64,
    pub segments: Vec<Segment>,
    /// Where the boot answer was sent, percent from the left.
    pub answer_at: f64,
    /// The last stage reached, when it is not boot complete.
    pub waiting: Option<&'static str>,
    pub healthy: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    pub label: String,
    /// `pi-init`, `systemd`, `step-ok`, `step-failed`.
    pub kind: &'static str,
    pub ms: u64,
    /// Left edge and width, percent of the whole.
    pub x: f64,
    pub w: f64,
}

fn name_ms(v: &serde_json::Value) -> Option<(String, u64)> {
    Some((v["step"].as_str()?.to_string(), v["ms"].as_u64()?))
}

/// The timeline of `b`; `None` before pi-init reported (nothing to draw but the answer).
pub fn timeline(b: &BootRecord) -> Option<Timeline> {
    let installed_ms = b.installed_ms?;
    let answer_to_installed = b.answer_to_installed_ms.unwrap_or(0);
    // pi-init's own clock starts before the answer (network, the request itself).
    let answer_from_start = installed_ms.saturating_sub(answer_to_installed);
    let mut raw: Vec<(String, &'static str, u64, u64)> = Vec::new();
    let mut t = 0;
    let pi_steps: Vec<(String, u64)> = b
        .pi_init_steps
        .as_ref()
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(name_ms).collect())
        .unwrap_or_default();
    for (name, ms) in pi_steps {
        raw.push((format!("pi-init {name}"), "pi-init", t, ms));
        t += ms;
    }
    t = t.max(installed_ms);
    let (total, waiting) = match (&b.complete, b.answer_to_complete_ms) {
        (Some(c), Some(to_complete)) => {
            let total = (answer_from_start + to_complete).max(t);
            let steps_ms: u64 = c.steps.iter().map(|s| s.duration_ms).sum();
            let steps_start = total.saturating_sub(steps_ms).max(t);
            raw.push((
                format!("exec to {} and the agent", c.target),
                "systemd",
                t,
                steps_start - t,
            ));
            let mut s_t = steps_start;
            for s in &c.steps {
                let kind = if s.succeeded() {
                    "step-ok"
                } else {
                    "step-failed"
                };
                raw.push((
                    format!("step {}: {}", s.name, s.summary()),
                    kind,
                    s_t,
                    s.duration_ms,
                ));
                s_t += s.duration_ms;
            }
            (total.max(s_t), None)
        }
        _ => (t, Some(b.stage())),
    };
    let pct = |v: u64| {
        if total == 0 {
            0.0
        } else {
            (v as f64 * 10000.0 / total as f64).round() / 100.0
        }
    };
    Some(Timeline {
        total_ms: total,
        segments: raw
            .into_iter()
            .map(|(label, kind, start, ms)| Segment {
                label,
                kind,
                ms,
                x: pct(start),
                w: pct(ms),
            })
            .collect(),
        answer_at: pct(answer_from_start),
        waiting,
        healthy: b.healthy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pureboot_contract::after_boot::{BootComplete, StepOutcome};
    use serde_json::json;

    fn boot() -> BootRecord {
        BootRecord {
            boot_id: "b".into(),
            ip: "10.0.2.15".into(),
            at: "t".into(),
            layer: "image:persist.img".into(),
            installed_at: Some("t2".into()),
            installed_ms: Some(1000),
            pi_init_steps: Some(
                json!([{"step": "network", "ms": 300}, {"step": "overlay", "ms": 600}]),
            ),
            complete_at: None,
            answer_to_complete_ms: None,
            answer_to_installed_ms: Some(600),
            complete: None,
            healthy: None,
        }
    }

    #[test]
    fn a_boot_without_complete_stops_at_pi_inits_report() {
        let t = timeline(&boot()).unwrap();
        assert_eq!(t.total_ms, 1000);
        assert_eq!(t.waiting, Some("pi-init report"));
        assert_eq!(t.answer_at, 40.0);
        assert_eq!(t.segments.len(), 2);
        assert_eq!((t.segments[1].x, t.segments[1].w), (30.0, 60.0));
    }

    #[test]
    fn a_complete_boot_ends_with_its_steps() {
        let mut b = boot();
        b.complete_at = Some("t3".into());
        b.answer_to_complete_ms = Some(9600);
        b.healthy = Some(false);
        b.complete = Some(BootComplete {
            target: "multi-user.target".into(),
            reached: true,
            steps: vec![
                StepOutcome {
                    name: "a".into(),
                    exit_code: Some(0),
                    duration_ms: 1000,
                    ..Default::default()
                },
                StepOutcome {
                    name: "b".into(),
                    exit_code: Some(3),
                    duration_ms: 1000,
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        let t = timeline(&b).unwrap();
        assert_eq!(t.total_ms, 10000);
        assert_eq!(t.waiting, None);
        let kinds: Vec<&str> = t.segments.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            ["pi-init", "pi-init", "systemd", "step-ok", "step-failed"]
        );
        let last = t.segments.last().unwrap();
        assert_eq!((last.x, last.w), (90.0, 10.0));
        assert_eq!(t.segments[2].ms, 7000, "exec at 1 s, steps from 8 s");
        assert!(last.label.contains("exit 3"));
    }

    #[test]
    fn nothing_to_draw_before_pi_init_reports() {
        let mut b = boot();
        b.installed_ms = None;
        assert!(timeline(&b).is_none());
    }
}
