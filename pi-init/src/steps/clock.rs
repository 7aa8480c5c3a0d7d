//! Setting the clock from the controller's, before the NFS mount and the exec of init: the
//! decision is [`crate::decide::clock::correction`], this is the call and its log line.

use crate::decide::clock;
use crate::sys::Sys;
use std::time::{Duration, SystemTime};

/// Set the system clock from the controller's `Date` (seconds since the epoch) when the
/// clock is behind it by more than the tolerance; logs what it did. Never fails the boot: a
/// clock left wrong is reported, and the root's NTP may still mend it.
pub fn follow_controller(sys: &dyn Sys, server: u64) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let Some(to) = clock::correction(now, server) else {
        return;
    };
    match sys.set_clock(to) {
        Ok(()) => log::info!(
            "clock set from the controller's: {} s forward (was {} s after the epoch, now {})",
            (to - now).as_secs(),
            now.as_secs(),
            to.as_secs()
        ),
        Err(e) => log::warn!(
            "clock {} s behind the controller's, could not set it: {e}",
            (to - now).as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::{Call, FakeSys};

    #[test]
    fn a_clock_behind_is_set_and_one_in_step_left_alone() {
        let sys = FakeSys::default();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        follow_controller(&sys, now);
        follow_controller(&sys, now - 3600);
        assert_eq!(sys.calls(), [], "in step, or ahead: not touched");
        follow_controller(&sys, now + 86_400);
        assert_eq!(
            sys.calls(),
            [Call::SetClock(
                Duration::from_secs(now + 86_400) + Duration::from_millis(500)
            )]
        );
    }
}
