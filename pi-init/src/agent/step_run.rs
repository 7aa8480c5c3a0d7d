//! One post-boot step: `/bin/sh -c <script>` in a process group of its own, with the plan's
//! environment, its standard output and error on one pipe that is copied to the agent's own
//! output (the journal and the console) and kept as a bounded tail, and killed with the
//! whole group at its timeout.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pureboot_contract::after_boot::{PlannedStep, StepOutcome, Tail};

/// How long the output is still read after the step's group was killed or ended: a child
/// that left the group and kept the pipe open must not hold the agent.
const DRAIN: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(50);

/// Runs `step` with `shell`, its output copied to ours when `echo`; never panics, every way
/// it can end is an outcome.
pub fn run(shell: &str, step: &PlannedStep, echo: bool) -> StepOutcome {
    let start = Instant::now();
    let mut outcome = StepOutcome {
        name: step.name.clone(),
        digest: step.digest.clone(),
        ..Default::default()
    };
    let (reader, writer) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => {
            outcome.error = Some(format!("pipe: {e}"));
            return outcome;
        }
    };
    let spawned = writer.try_clone().and_then(|w2: OwnedFd| {
        Command::new(shell)
            .arg("-c")
            .arg(&step.script)
            .envs(&step.env)
            .env("PUREBOOT_STEP", &step.name)
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::from(w2))
            .process_group(0)
            .spawn()
    });
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            outcome.error = Some(format!("{shell}: {e}"));
            return outcome;
        }
    };
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut pipe = std::fs::File::from(reader);
        let mut tail = Tail::default();
        let mut buf = [0u8; 8192];
        let mut out = std::io::stdout();
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if echo {
                let _ = out.write_all(&buf[..n]);
            }
            tail.push(&buf[..n]);
        }
        let _ = out.flush();
        let _ = done_tx.send(tail);
    });
    let deadline = start + Duration::from_secs(u64::from(step.timeout_secs));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                outcome.timed_out = true;
                kill_group(child.id());
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                outcome.error = Some(format!("waiting for {shell}: {e}"));
                kill_group(child.id());
                break child.wait().ok();
            }
        }
    };
    // The step's group is gone (ended or killed): what is left of its output comes at once,
    // unless a descendant of its own session still holds the pipe.
    if status.is_some() && !outcome.timed_out {
        kill_group(child.id());
    }
    if let Some(status) = status {
        outcome.exit_code = status.code();
        outcome.signal = status.signal();
    }
    outcome.duration_ms = start.elapsed().as_millis() as u64;
    if let Ok(tail) = done_rx.recv_timeout(DRAIN) {
        let (text, dropped) = tail.finish();
        outcome.output = text;
        outcome.output_dropped = dropped;
    } else {
        outcome.output = "(output still held open by a process the step left behind)".into();
    }
    outcome
}

/// SIGKILL to the step's whole process group (its pid is the group's id).
fn kill_group(pid: u32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn run_quiet(step: &PlannedStep) -> StepOutcome {
        run("/bin/sh", step, false)
    }

    fn step(script: &str, timeout_secs: u32) -> PlannedStep {
        PlannedStep {
            name: "t".into(),
            script: script.into(),
            run: Default::default(),
            timeout_secs,
            env: BTreeMap::from([("GREETING".to_string(), "hello there".to_string())]),
            digest: "d".into(),
        }
    }

    #[test]
    fn exit_status_output_and_environment() {
        let o = run_quiet(&step(
            "echo \"$GREETING $PUREBOOT_STEP\"; echo err >&2; exit 3",
            10,
        ));
        assert_eq!(o.exit_code, Some(3));
        assert!(!o.succeeded());
        assert_eq!(o.output, "hello there t\nerr\n");
        let o = run_quiet(&step("true", 10));
        assert!(o.succeeded(), "{o:?}");
    }

    #[test]
    fn a_step_over_its_timeout_is_killed_with_its_children() {
        let start = Instant::now();
        let o = run_quiet(&step("echo started; sleep 30 & sleep 30", 1));
        assert!(o.timed_out && !o.succeeded(), "{o:?}");
        assert_eq!(o.signal, Some(9));
        assert!(o.output.starts_with("started"), "{o:?}");
        // The background sleep was in the group: the pipe closed, no drain wait.
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn megabytes_of_output_are_kept_as_a_tail() {
        let o = run_quiet(&step(
            "i=0; while [ $i -lt 3000 ]; do printf '%01000d\\n' $i; i=$((i+1)); done; echo LAST",
            30,
        ));
        assert!(o.succeeded(), "{o:?}");
        assert!(o.output.len() <= 4096 && o.output.ends_with("LAST\n"));
        assert!(o.output_dropped > 2_900_000, "{}", o.output_dropped);
    }

    #[test]
    fn a_missing_shell_is_an_outcome_not_a_panic() {
        let o = run("/nonexistent/sh", &step("true", 1), false);
        assert!(
            o.error.as_deref().unwrap().contains("/nonexistent/sh"),
            "{o:?}"
        );
        assert!(!o.succeeded());
    }
}
