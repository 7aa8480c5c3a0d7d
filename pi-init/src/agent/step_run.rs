//! One post-boot step: `/bin/sh -c <script>` in a process group of its own, with the plan's
//! environment, its standard output and error on one pipe that is copied to the agent's own
//! output (the journal and the console) and kept as a bounded tail, and killed with the
//! whole group at its timeout. The same runner reads `systemctl`'s answers.
//!
//! One thread: the pipe is polled while the child is waited for, so nothing here needs
//! `std::process` or a reader thread (PID 1's binary carries this code).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use pureboot_contract::after_boot::{PlannedStep, StepOutcome, Tail};

use crate::sys::linux::spawn::{spawn_in_group, Program};

/// How long the output is still read after the step's group ended: a child that left the
/// group and kept the pipe open must not hold the agent.
const DRAIN: Duration = Duration::from_secs(2);
const POLL_MS: u8 = 50;

/// How a program ended, and what it wrote.
#[derive(Debug, Default)]
pub struct Executed {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// It could not be started (or waited for): why.
    pub error: Option<String>,
    pub output: Tail,
    /// The pipe was still held open by something it left behind when the agent stopped
    /// reading.
    pub held_open: bool,
}

/// Runs `argv` (its environment: ours, then `env`), killing its group after `timeout`; its
/// output copied to ours when `echo`.
pub fn execute(argv: &[&str], env: &[(String, String)], timeout: Duration, echo: bool) -> Executed {
    let mut done = Executed::default();
    let program = match program(argv, env) {
        Ok(p) => p,
        Err(e) => {
            done.error = Some(e);
            return done;
        }
    };
    let (reader, writer) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            done.error = Some(format!("pipe: {e}"));
            return done;
        }
    };
    let pid = match spawn_in_group(&program, &writer) {
        Ok(pid) => pid,
        Err(e) => {
            done.error = Some(format!("{}: {e}", argv[0]));
            return done;
        }
    };
    drop(writer);
    let deadline = Instant::now() + timeout;
    let mut pipe = std::fs::File::from(reader);
    let mut eof = false;
    let mut ended: Option<Instant> = None;
    let mut buf = [0u8; 8192];
    let mut out = std::io::stdout();
    loop {
        if !eof {
            let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(POLL_MS)).unwrap_or(0) > 0 {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => eof = true,
                    Ok(n) => {
                        if echo {
                            let _ = out.write_all(&buf[..n]);
                        }
                        done.output.push(&buf[..n]);
                    }
                }
            }
        } else if ended.is_none() {
            std::thread::sleep(Duration::from_millis(POLL_MS.into()));
        }
        if ended.is_none() {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => {
                    done.exit_code = Some(code);
                    ended = Some(Instant::now());
                }
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    done.signal = Some(sig as i32);
                    ended = Some(Instant::now());
                }
                Ok(_) => {}
                Err(e) => {
                    done.error = Some(format!("waiting for {}: {e}", argv[0]));
                    ended = Some(Instant::now());
                }
            }
            if ended.is_none() && Instant::now() >= deadline {
                done.timed_out = true;
                kill_group(pid);
            }
            if ended.is_some() {
                // What it left in its group goes with it.
                kill_group(pid);
            }
        }
        match ended {
            Some(_) if eof => break,
            Some(at) if at.elapsed() >= DRAIN => {
                done.held_open = true;
                break;
            }
            _ => {}
        }
    }
    let _ = out.flush();
    done
}

/// The program with our environment under the step's own (a step's name wins).
fn program(argv: &[&str], env: &[(String, String)]) -> Result<Program, String> {
    let path = argv.first().ok_or("nothing to run")?;
    std::fs::metadata(Path::new(path)).map_err(|e| format!("{path}: {e}"))?;
    let ours = std::env::vars().filter(|(k, _)| !env.iter().any(|(n, _)| n == k));
    let all = ours
        .chain(env.iter().cloned())
        .map(|(k, v)| format!("{k}={v}"));
    Program::new(argv.iter().copied(), all).map_err(|e| format!("{path}: {e}"))
}

fn kill_group(pid: Pid) {
    let _ = killpg(pid, Signal::SIGKILL);
}

/// Runs `step` with `shell`; never panics, every way it can end is an outcome.
pub fn run(shell: &str, step: &PlannedStep, echo: bool) -> StepOutcome {
    let start = Instant::now();
    let mut env: Vec<(String, String)> = step.env.clone().into_iter().collect();
    env.push(("PUREBOOT_STEP".into(), step.name.clone()));
    let timeout = Duration::from_secs(step.timeout_secs.into());
    let done = execute(&[shell, "-c", &step.script], &env, timeout, echo);
    let (mut output, output_dropped) = done.output.finish();
    if done.held_open {
        output.push_str("\n(output still held open by a process the step left behind)\n");
    }
    StepOutcome {
        name: step.name.clone(),
        digest: step.digest.clone(),
        exit_code: done.exit_code,
        signal: done.signal,
        timed_out: done.timed_out,
        error: done.error,
        duration_ms: start.elapsed().as_millis() as u64,
        output,
        output_dropped,
    }
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
    fn a_child_that_leaves_the_group_does_not_hold_the_agent() {
        if std::fs::metadata("/usr/bin/setsid").is_err() {
            println!("SKIP: no /usr/bin/setsid (util-linux) to leave the group with");
            return;
        }
        let start = Instant::now();
        // setsid -f: a session of its own before the step ends (else the kill takes it too).
        let o = run_quiet(&step("/usr/bin/setsid -f sleep 30; sleep 0.5; echo hi", 10));
        assert_eq!(o.exit_code, Some(0), "{o:?}");
        assert!(
            o.output.starts_with("hi\n") && o.output.contains("held open"),
            "{o:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
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
