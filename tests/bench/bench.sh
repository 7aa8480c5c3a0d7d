#!/usr/bin/env bash
# Benchmarks, each beside its baseline in the same run; NOT part of tests/test.sh
# or CI. Set-up (with the Pi-like kernel, tests/bench/pi-kernel.sh: built once, then cached,
# and the debootstrapped Debian root), release build, then tests/bench/src (pureboot-bench): boot
# path (pi-init vs the busybox shell flow, virtual Pi, on Debian's kernel and on the Pi-like
# one), sizes, a boot storm against the release controller on 127.0.0.1, base image import vs
# GNU tar, time to a usable Debian root and the NFS load of a boot (pi-init vs the shell flow),
# several Pis at once from one NFS server (crowd), the same Pis at once from a pool of two NFS
# servers against one (pool), and the storm on two controllers sharing a private PostgreSQL
# beside the one on SQLite, then one of the two killed (storm-pg).
# Prints a Markdown report; a full run (no --only) also writes it to tests/bench/RESULTS.md.
# Takes about 25 minutes on 2 cores, plus the Pi-like kernel's build the first time.
#
#   tests/bench/bench.sh (as root) [--boots 7] [--kernels debian,pi] [--nodes 1000] [--clients 100]
#                       [--rounds 3] [--import-mb 300] [--import-runs 5] [--usable-boots 5]
#                       [--usable-variant '<label>=<kernel parameters>']
#                       [--pis 4] [--crowd-rounds 2] [--pi-memory 384]
#                       [--only boot,sizes,storm,storm-pg,import,usable,crowd,pool]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"

out=(--out "$REPO/tests/bench/RESULTS.md")
for a in "$@"; do [ "$a" = --only ] && out=(); done

PUREBOOT_DEBIAN_ROOT=1 bash tests/setup.sh
bash tests/bench/pi-kernel.sh
echo "bench: building (release): controller, pureboot-image, pureboot-bench; pi-init for aarch64"
cargo build --release -p pureboot-controller -p pureboot-image -p pureboot-bench \
  --bin pureboot-controller --bin pureboot-image --bin pureboot-bench
cargo build --release -p pi-init --target aarch64-unknown-linux-musl

# Scratch directories (NFS exports, databases, consoles) go here; kept when a run fails.
export PUREBOOT_E2E_TMP
PUREBOOT_E2E_TMP="$(mktemp -d /tmp/pureboot-bench.XXXXXX)"
rc=0
"$REPO/target/release/pureboot-bench" "${out[@]}" "$@" || rc=$?
if [ "$rc" = 0 ]; then rm -rf "$PUREBOOT_E2E_TMP"; else echo "bench: failed ($rc); kept $PUREBOOT_E2E_TMP"; fi
exit "$rc"
