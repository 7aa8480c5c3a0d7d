//! What happens when a scenario's prerequisite is missing: the scenario skips loudly and says
//! which command provides it; with `PUREBOOT_E2E_STRICT=1` (set by tests/test.sh and CI) a
//! missing piece is a failure instead, so CI cannot pass by skipping.

/// Whether skipping is forbidden (tests/test.sh and CI set PUREBOOT_E2E_STRICT=1).
pub fn strict() -> bool {
    std::env::var("PUREBOOT_E2E_STRICT").is_ok_and(|v| v == "1")
}

/// Says on the real stderr (not the test harness's captured output) that a scenario skipped.
pub fn announce_skip(scenario: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {scenario}: {why}");
}

/// Unwraps a prerequisite or skips the scenario loudly (returns from the test), unless strict.
#[macro_export]
macro_rules! require {
    ($scenario:expr, $what:expr) => {
        match $what {
            Ok(v) => v,
            Err(why) => {
                if $crate::skip::strict() {
                    panic!(
                        "{}: prerequisite missing (PUREBOOT_E2E_STRICT=1): {}",
                        $scenario, why
                    );
                }
                $crate::skip::announce_skip($scenario, &why);
                return;
            }
        }
    };
}
