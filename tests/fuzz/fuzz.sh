#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: libFuzzer (libfuzzer-sys) on stable rustc.
# cargo-fuzz needs nightly for its sanitizer flags; the SanitizerCoverage instrumentation
# libFuzzer needs is reachable with stable -C flags, so this script passes them itself.
#
#   tests/fuzz/fuzz.sh [seconds per target, default 60] [target ...]
#
# Corpora grow under tests/fuzz/corpus/<target>/ (git-ignored); crashes land in
# tests/fuzz/artifacts/<target>/ and fail the run. Needs a C++ compiler (libFuzzer is built
# from source by libfuzzer-sys) and root for tar_import (it creates device nodes).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fuzz="$here"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(cmdline ip_param boot_json dhcp_reply tar_import cpio modules_list glob)

export CARGO_TARGET_DIR="$here/../../target/fuzz"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros (they are not
# linked with libFuzzer).
triple=$(rustc -vV | sed -n 's/^host: //p')
(cd "$fuzz" && cargo build --release --bins --target "$triple")
bin="$CARGO_TARGET_DIR/$triple/release"

status=0
for t in "${targets[@]}"; do
    corpus="$fuzz/corpus/$t" artifacts="$fuzz/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    seeds=()
    [ -d "$fuzz/seeds/$t" ] && seeds=("$fuzz/seeds/$t")
    log="$artifacts/last-run.log"
    echo "== $t: ${secs}s"
    if "$bin/$t" -max_total_time="$secs" -max_len=65536 -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" \
        "$corpus" "${seeds[@]}" >"$log" 2>&1; then
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
        echo "   ok: $execs executions, corpus $(ls "$corpus" | wc -l) inputs"
    else
        status=1
        echo "   FAILED (log: $log):"
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -5 | sed 's/^/   /'
    fi
done
exit $status
