#!/usr/bin/env bash
# README command 2 — test it: set-up, build, the workspace's tests, the Debian packages, then the virtual Pi
# scenarios (tests/harness/tests/*.rs: the busybox baseline, the virtual Pis on QEMU virt and raspi3b, users' set-ups, dnsmasq).
#
#   sudo tests/test.sh
#
# Exits non-zero on any failure; ends with a summary of every step and the test counts.
# Missing prerequisites make scenarios fail here (PUREBOOT_E2E_STRICT=1), never skip.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PUREBOOT_E2E_STRICT=1 PUREBOOT_DEBIAN_ROOT=1 CARGO_TERM_COLOR=never
LOG_DIR="$REPO/target/pureboot-e2e"
mkdir -p "$LOG_DIR"
START=$(date +%s)
declare -a SUMMARY=()
FAILED=0

# step <label> <command...>: runs, tees output to a log, records pass/fail and duration.
step() {
  local label="$1"; shift
  local log="$LOG_DIR/step-${#SUMMARY[@]}.log" t0 rc
  t0=$(date +%s)
  echo "=== $label: $*"
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  local took=$(( $(date +%s) - t0 ))
  if [ "$rc" = 0 ]; then
    SUMMARY+=("ok     ${took}s  $label")
  else
    SUMMARY+=("FAILED ${took}s  $label (exit $rc, log $log)")
    FAILED=1
  fi
  return "$rc"
}

summary() {
  local passed=0 failed=0 ignored=0 skipped
  # Sum cargo's "test result:" lines over every test step.
  while read -r p f i; do
    passed=$((passed + p)); failed=$((failed + f)); ignored=$((ignored + i))
  done < <(cat "$LOG_DIR"/step-*.log 2>/dev/null \
           | sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed; \([0-9]*\) ignored.*/\1 \2 \3/p')
  skipped=$(cat "$LOG_DIR"/step-*.log 2>/dev/null | grep -c '^SKIPPED ' || true)
  echo
  echo "=== summary ($(( $(date +%s) - START )) s in all)"
  printf '  %s\n' "${SUMMARY[@]}"
  # cargo counts a skipped scenario as passed: report it as skipped.
  echo "tests: $((passed - skipped)) passed, $failed failed, $((ignored + skipped)) skipped"
  if [ "$FAILED" = 0 ]; then echo "test.sh: ALL PASSED"; else echo "test.sh: FAILED"; fi
}
trap summary EXIT

rm -f "$LOG_DIR"/step-*.log
step "set-up (tests/setup.sh)" bash tests/setup.sh || exit 1
step "build: workspace binaries (release)" cargo build --release --workspace || exit 1
step "build: pi-init for aarch64-unknown-linux-musl (release)" \
  cargo build --release -p pi-init --target aarch64-unknown-linux-musl || exit 1
# Style and lints hold on every change (set-up installs rustfmt and clippy).
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy, warnings as errors" cargo clippy --workspace --all-targets -- -D warnings
# The fuzz targets are a workspace of their own (tests/fuzz): they must keep compiling
# against the crates they exercise, even when no one fuzzes.
step "fuzz targets compile (tests/fuzz, cargo check)" \
  env CARGO_TARGET_DIR="$REPO/target/fuzz-check" cargo check --manifest-path tests/fuzz/Cargo.toml --bins
step "cargo test --workspace (unit and HTTP tests)" \
  cargo test --workspace --exclude pureboot-harness
# The controller's suite again with the registry on PostgreSQL: a private cluster (initdb in a
# temporary directory, a free 127.0.0.1 port; tests/postgres) started for the run and stopped
# after it; every test's registry is a database of its own there (store/test_support.rs).
step "cargo test -p pureboot-controller, registry on PostgreSQL" \
  bash -c 'cargo build -q -p pureboot-test-postgres --bin pureboot-with-postgres &&
           target/debug/pureboot-with-postgres cargo test -p pureboot-controller'
# The harness's own unit tests, among them the import graph (tests/harness/src/import_graph/):
# no import circle between files; pi-init and image take only the contract from controller/.
step "harness self-tests" cargo test -p pureboot-harness --lib --bins
# The Debian packages from the binaries just built, unpacked into a throwaway root and checked.
step "Debian packages (tests/package.sh)" bash tests/package.sh --no-build
# Two scenarios at a time: QEMU under TCG on 2 cores; every boot inside is bounded.
step "virtual Pi scenarios" timeout --kill-after=30 4500 \
  cargo test -p pureboot-harness --test '*' -- --test-threads=2 --show-output
exit "$FAILED"
