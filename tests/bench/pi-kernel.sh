#!/usr/bin/env bash
# A Pi-like arm64 kernel for the benchmarks (not the tests): Raspberry Pi OS kernels have
# the NFS client (v3, v4) and ROOT_NFS built in and overlayfs as a module, where Debian's
# loads the NFS client as four modules at boot. Built once from Debian's linux-source with
# gcc-aarch64-linux-gnu and a small config (tests/bench/pi-kernel.config: what QEMU virt
# needs, plus what the Pi defconfigs build in or as modules), into the git-ignored cache:
#   $CACHE/pi-kernel/{vmlinuz,version,root/lib/modules/<version>/}
# the same layout as the Debian kernel tests/setup.sh unpacks, so the harness takes either.
# About 15 minutes on 2 cores the first time (887 s, sharing them with other work); a config
# change rebuilds incrementally (the build tree stays in the cache: 215 s for NFSv4.1/4.2);
# nothing when the cache holds it.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${PUREBOOT_CACHE:-$REPO/.cache}"
OUT="$CACHE/pi-kernel"
CONFIG="$REPO/tests/bench/pi-kernel.config"
say() { echo "pi-kernel: $*"; }
die() { echo "pi-kernel: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (apt-get): sudo $0"

# Rebuilt when the config changes: its hash is part of what the cache records.
stamp="$(sha256sum "$CONFIG" | cut -c1-16)"
if [ -s "$OUT/vmlinuz" ] && [ "$(cat "$OUT/config-hash" 2>/dev/null)" = "$stamp" ]; then
  say "$(cat "$OUT/version") in $OUT"
  exit 0
fi

# make, bc, flex and bison run the kernel's build; libssl-dev is not needed (no module signing).
pkgs=(linux-source-6.1 gcc-aarch64-linux-gnu make bc flex bison libc6-dev xz-utils kmod)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
tarball="$(ls /usr/src/linux-source-6.1.tar.xz)"
SRC="$CACHE/pi-kernel-src"
if [ ! -s "$SRC/Makefile" ]; then
  say "unpacking $tarball"
  rm -rf "$SRC.tmp" && mkdir -p "$SRC.tmp"
  tar -xJf "$tarball" -C "$SRC.tmp" --strip-components=1
  rm -rf "$SRC" && mv "$SRC.tmp" "$SRC"
fi

BUILD="$CACHE/pi-kernel-build"
mkdir -p "$BUILD"
mk() { make -C "$SRC" O="$BUILD" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- "$@"; }
# allnoconfig with the fragment forced: everything not named is off.
mk -s KCONFIG_ALLCONFIG="$CONFIG" allnoconfig
# Every line of the fragment must have survived (a dependency not met drops it silently).
while IFS= read -r line; do
  case "$line" in ''|'#'*) continue ;; esac
  grep -qxF "$line" "$BUILD/.config" || die "config: '$line' did not take (a dependency missing?)"
done < "$CONFIG"
t0=$(date +%s)
say "building (make -j$(nproc) Image modules)"
mk -s -j"$(nproc)" Image modules
kver="$(mk -s kernelrelease)"
rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp/root"
mk -s INSTALL_MOD_PATH="$OUT.tmp/root" modules_install
rm -f "$OUT.tmp/root/lib/modules/$kver/build" "$OUT.tmp/root/lib/modules/$kver/source"
cp "$BUILD/arch/arm64/boot/Image" "$OUT.tmp/vmlinuz"
printf '%s\n' "$kver" > "$OUT.tmp/version"
printf '%s\n' "$stamp" > "$OUT.tmp/config-hash"
cp "$BUILD/.config" "$OUT.tmp/config"
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
say "$kver in $OUT (built in $(( $(date +%s) - t0 )) s)"
