//! Optional hardware watchdog (`pureboot.watchdog=<s>`): armed at start and fed from a thread
//! until the switch, so a boot that hangs anywhere ends in a reboot. The thread feeds only
//! while the boot makes progress (a step finished, a `wait` poll answered) within the timeout:
//! a step stuck in the kernel stops the feeding. At hand-over the device is closed without
//! the magic 'V', so it stays armed and the new init (systemd's RuntimeWatchdogSec) must take
//! it over in time.

use crate::sys::Sys;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();
/// Milliseconds since EPOCH of the last sign of progress.
static PROGRESS: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The boot moved on: keep feeding.
pub fn progress() {
    PROGRESS.store(now_ms(), Ordering::Relaxed);
}

/// One watchdog per boot, so its state is global like the device.
static STOP: AtomicBool = AtomicBool::new(false);
static FEEDER: Mutex<Option<std::thread::JoinHandle<()>>> = Mutex::new(None);

/// How often to feed a watchdog of `timeout`: a third of it, at least every 100 ms.
pub fn feed_interval(timeout: Duration) -> Duration {
    (timeout / 3).max(Duration::from_millis(100))
}

/// Feed regardless of progress (a rescue shell is waiting on a person) until the next
/// [`progress`].
pub fn keep_fed() {
    PROGRESS.store(u64::MAX, Ordering::Relaxed);
}

/// Open `device`, set its timeout (through `sys`) and start feeding it.
/// Why the watchdog could not be armed; the boot goes on without it.
#[derive(Debug)]
pub enum WatchdogError {
    Open(PathBuf, io::Error),
    /// Opened (so armed) but nothing can feed it: it will reset the board.
    NoThread(io::Error),
}

impl fmt::Display for WatchdogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchdogError::Open(p, e) => write!(f, "watchdog {}: {e}", p.display()),
            WatchdogError::NoThread(e) => {
                write!(f, "no thread to feed it ({e}); it will reset the board")
            }
        }
    }
}

impl std::error::Error for WatchdogError {}

pub fn arm(sys: &dyn Sys, device: &Path, timeout: Duration) -> Result<(), WatchdogError> {
    let mut dev: File = OpenOptions::new()
        .write(true)
        .open(device) // std opens with O_CLOEXEC
        .map_err(|e| WatchdogError::Open(device.into(), e))?;
    let asked = timeout.as_secs().clamp(1, i32::MAX as u64) as i32;
    let secs = sys.watchdog_timeout(&dev, asked).unwrap_or_else(|e| {
        // A device that keeps its own timeout: feed it anyway.
        log::warn!("watchdog {}: cannot set the timeout: {e}", device.display());
        asked
    });
    STOP.store(false, Ordering::Relaxed);
    let every = feed_interval(timeout);
    let stall = timeout.as_millis() as u64;
    progress();
    let feeder = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let mut starving = false;
            while !STOP.load(Ordering::Relaxed) {
                let idle = now_ms().saturating_sub(PROGRESS.load(Ordering::Relaxed));
                if idle < stall {
                    let _ = dev.write_all(b"\0");
                    starving = false;
                } else if !starving {
                    log::error!(
                        "watchdog: no progress for {} s; letting it reset the board",
                        idle / 1000
                    );
                    starving = true;
                }
                std::thread::sleep(every);
            }
        });
    // Without a feeder the device stays armed and resets the board: the recovery asked for.
    let feeder = feeder.map_err(WatchdogError::NoThread)?;
    log::info!("watchdog {} armed: {} s", device.display(), secs);
    *FEEDER.lock().unwrap_or_else(|e| e.into_inner()) = Some(feeder);
    Ok(())
}

/// Stop feeding and close the device without the magic 'V': it stays armed for the next init.
pub fn hand_over() {
    STOP.store(true, Ordering::Relaxed);
    if let Some(f) = FEEDER.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = f.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::testutil::TempDir;
    use crate::sys::fake::{Call, FakeSys};

    #[test]
    fn interval_is_a_third_with_a_floor() {
        assert_eq!(
            feed_interval(Duration::from_secs(30)),
            Duration::from_secs(10)
        );
        assert_eq!(
            feed_interval(Duration::from_millis(150)),
            Duration::from_millis(100)
        );
    }

    /// One test drives the global progress mark: progress feeds, a stall starves, hand-over stops.
    #[test]
    fn feeds_a_fake_device_while_the_boot_progresses() {
        let d = TempDir::new();
        let dev = d.path().join("watchdog");
        std::fs::write(&dev, b"").unwrap();
        let fed = || std::fs::read(&dev).unwrap().len();
        let sys = FakeSys::new();
        arm(&sys, &dev, Duration::from_millis(600)).unwrap();
        assert_eq!(sys.calls(), [Call::WatchdogTimeout(1)], "at least a second");
        for _ in 0..6 {
            std::thread::sleep(Duration::from_millis(100));
            progress();
        }
        let while_progressing = fed();
        assert!(
            while_progressing >= 2,
            "fed {while_progressing} times in 600 ms at 200 ms"
        );
        // No progress: feeding stops once the timeout has passed.
        std::thread::sleep(Duration::from_millis(1000));
        let stalled = fed();
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(fed(), stalled, "a stalled boot is not fed");
        progress();
        std::thread::sleep(Duration::from_millis(450));
        assert!(fed() > stalled, "progress resumes feeding");
        hand_over();
        let at_hand_over = fed();
        std::thread::sleep(Duration::from_millis(450));
        assert_eq!(fed(), at_hand_over, "no feeding after hand-over");
        // Closed without the magic 'V': the device stays armed for the next init.
        assert!(
            std::fs::read(&dev).unwrap().iter().all(|&b| b == 0),
            "only keep-alive bytes were written"
        );
        assert!(arm(&sys, &d.path().join("absent"), Duration::from_secs(1)).is_err());
    }
}
