//! A rollout's decision, pure: from its spec, what its canaries' boots on the new version
//! reported and the clock, what happens next. The controller's tick (service/rollout.rs)
//! gathers the inputs from the registry and carries out the answer.

/// What a canary counts as healthy on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The booted root's agent reported "boot complete", healthy, no post-boot step failed.
    Complete,
    /// pi-init's installed report (a root without the agent: no boot complete ever comes).
    Installed,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Complete => "complete",
            Health::Installed => "installed",
        }
    }

    pub fn parse(s: &str) -> Result<Health, String> {
        match s {
            "complete" => Ok(Health::Complete),
            "installed" => Ok(Health::Installed),
            _ => Err(format!("health {s:?}: complete or installed")),
        }
    }
}

/// One canary's newest boot on the rollout's version, started after the rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Canary {
    /// No boot on the new version yet (waits for a reboot).
    NotBooted,
    /// Answered the new version; no report yet.
    Booting,
    /// pi-init reported it installed; boot complete not yet in.
    Installed,
    /// Boot complete, healthy, no failed post-boot step.
    Complete,
    /// Why it failed: pi-init's failure report, an unhealthy boot complete, a failed step.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub wait_secs: u64,
    /// Healthy canaries needed to move the channel.
    pub min_healthy: usize,
    pub health: Health,
    /// Unix seconds.
    pub started_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Wait,
    /// Enough canaries healthy: the channel moves to the version.
    Promote,
    /// Stop: canaries back to the previous version, the version marked bad, with why.
    Abort(String),
}

impl Canary {
    pub fn healthy(&self, health: Health) -> bool {
        match self {
            Canary::Complete => true,
            Canary::Installed => health == Health::Installed,
            _ => false,
        }
    }

    /// `waiting`, `booting`, `healthy` or `failed`, for the status page and the CLI.
    pub fn label(&self, health: Health) -> &'static str {
        match self {
            Canary::Failed(_) => "failed",
            c if c.healthy(health) => "healthy",
            Canary::NotBooted => "waiting",
            _ => "booting",
        }
    }
}

/// The rule: any failed canary stops the rollout at once; else enough healthy ones move the
/// channel; else past the wait it stops, naming the canaries that were not healthy in time.
pub fn next(spec: &Spec, canaries: &[(String, Canary)], now: i64) -> Next {
    if let Some((serial, Canary::Failed(why))) = canaries
        .iter()
        .find(|(_, c)| matches!(c, Canary::Failed(_)))
    {
        return Next::Abort(format!("canary {serial} failed: {why}"));
    }
    let healthy = canaries
        .iter()
        .filter(|(_, c)| c.healthy(spec.health))
        .count();
    if healthy >= spec.min_healthy.max(1) {
        return Next::Promote;
    }
    if now >= spec.started_at.saturating_add(spec.wait_secs as i64) {
        let late: Vec<String> = canaries
            .iter()
            .filter(|(_, c)| !c.healthy(spec.health))
            .map(|(s, c)| format!("{s} ({})", c.label(spec.health)))
            .collect();
        return Next::Abort(format!(
            "{healthy} of {} needed canaries healthy within {} s; not healthy: {}",
            spec.min_healthy.max(1),
            spec.wait_secs,
            late.join(", ")
        ));
    }
    Next::Wait
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min_healthy: usize, health: Health) -> Spec {
        Spec {
            wait_secs: 600,
            min_healthy,
            health,
            started_at: 1000,
        }
    }

    fn c(list: &[Canary]) -> Vec<(String, Canary)> {
        list.iter()
            .enumerate()
            .map(|(i, c)| (format!("0000000{i}"), c.clone()))
            .collect()
    }

    #[test]
    fn the_table() {
        use Canary::*;
        use Health as H;
        let failed = Failed("pi-init: init not found".into());
        let cases: Vec<(Spec, Vec<Canary>, i64, &str)> = vec![
            (spec(1, H::Complete), vec![NotBooted], 1001, "wait"),
            (spec(1, H::Complete), vec![Booting], 1001, "wait"),
            (spec(1, H::Complete), vec![Installed], 1001, "wait"),
            (spec(1, H::Installed), vec![Installed], 1001, "promote"),
            (spec(1, H::Complete), vec![Complete], 1001, "promote"),
            (
                spec(2, H::Complete),
                vec![Complete, Installed],
                1001,
                "wait",
            ),
            (
                spec(2, H::Complete),
                vec![Complete, Complete],
                1001,
                "promote",
            ),
            // One failure stops it even when enough others are healthy.
            (
                spec(1, H::Complete),
                vec![Complete, failed.clone()],
                1001,
                "abort",
            ),
            (spec(1, H::Installed), vec![failed.clone()], 1001, "abort"),
            // The wait runs out.
            (spec(1, H::Complete), vec![Installed], 1599, "wait"),
            (spec(1, H::Complete), vec![Installed], 1600, "abort"),
            (spec(1, H::Complete), vec![NotBooted], 5000, "abort"),
            // Healthy at the deadline still promotes.
            (spec(1, H::Complete), vec![Complete], 5000, "promote"),
            // min_healthy 0 means one.
            (spec(0, H::Complete), vec![NotBooted], 1001, "wait"),
        ];
        for (i, (s, canaries, now, want)) in cases.into_iter().enumerate() {
            let got = match next(&s, &c(&canaries), now) {
                Next::Wait => "wait",
                Next::Promote => "promote",
                Next::Abort(_) => "abort",
            };
            assert_eq!(got, want, "case {i}: {canaries:?} at {now}");
        }
    }

    #[test]
    fn an_abort_says_why() {
        let s = spec(1, Health::Complete);
        let Next::Abort(why) = next(&s, &c(&[Canary::Failed("no init".into())]), 1001) else {
            panic!()
        };
        assert_eq!(why, "canary 00000000 failed: no init");
        let Next::Abort(why) = next(&s, &c(&[Canary::Booting]), 2000) else {
            panic!()
        };
        assert!(
            why.contains("00000000 (booting)") && why.contains("600 s"),
            "{why}"
        );
    }
}
