#!/usr/bin/env bash
# README command 1 — run it: a virtual Pi boots diskless from NFS through pureboot.
#
#   sudo tests/demo.sh [--serial 8hex] [--hostname name] [--overlay tmpfs|image] [--keep]
#
# Set-up (tests/setup.sh), release build (controller, pureboot-image, pi-init for
# aarch64-unknown-linux-musl), then tests/harness/src/bin/pureboot-demo.rs: nfs-ganesha and the
# controller on 127.0.0.1 in a private network namespace, the busybox test root imported as a
# base image, a node registered to the pi-diskless-nfs workflow, the initramfs built with
# `pureboot-image initramfs --preset qemu-virt`, and a QEMU virt guest booting with its console
# shown. Everything is stopped on exit or Ctrl-C.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

demo_pid=
keep=
for a in "$@"; do [ "$a" = --keep ] && keep=1; done
# The demo's scratch directory (NFS export, database, logs, console), removed at the end.
export PUREBOOT_E2E_TMP
PUREBOOT_E2E_TMP="$(mktemp -d /tmp/pureboot-demo.XXXXXX)"
cleanup() {
  local rc=$?
  # The demo's servers die with it (PR_SET_PDEATHSIG); this covers an interrupted build too.
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -TERM "$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
  fi
  # A failed demo keeps its directory: the console and server logs are in it.
  if [ -n "$keep" ] || { [ "$rc" != 0 ] && [ "$rc" != 130 ]; }; then echo "demo: kept $PUREBOOT_E2E_TMP"; else rm -rf "$PUREBOOT_E2E_TMP"; fi
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted, stopping"; exit 130' INT TERM

bash tests/setup.sh
echo "demo: building (release): controller, pureboot-image, demo harness; pi-init for aarch64"
cargo build --release -p pureboot-controller -p pureboot-image -p pureboot-harness --bin pureboot-controller --bin pureboot-image --bin pureboot-demo
cargo build --release -p pi-init --target aarch64-unknown-linux-musl
"$REPO/target/release/pureboot-demo" "$@" &
demo_pid=$!
wait "$demo_pid"
