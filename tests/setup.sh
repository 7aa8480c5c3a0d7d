#!/usr/bin/env bash
# pureboot set-up, shared by tests/demo.sh and tests/test.sh.
#
# Run as root on Debian bookworm. Idempotent: a second run only checks and exits.
# Installs the Debian packages the virtual Pi needs, the rustup target for pi-init, and fills
# the git-ignored cache (.cache/ at the repository root, or $PUREBOOT_CACHE) with:
#   kernel/     Debian's arm64 kernel package, unpacked, depmod run; kernel/vmlinuz, kernel/version
#   busybox/    busybox-static for arm64, unpacked; busybox/busybox
#   raspi-firmware/ Debian's raspi-firmware (non-free-firmware), unpacked: the real
#               bootcode.bin, start*.elf, fixup*.dat the TFTP folders in the tests carry
#   debian-root/ a debootstrap'ed arm64 bookworm (minbase + $DEBIAN_ROOT_PACKAGES), only with
#                PUREBOOT_DEBIAN_ROOT=1 (the Debian root scenarios; about 3 min and 450 MB)
# No prompts: CI has no stdin.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PUREBOOT_CACHE:-$REPO/.cache}"
export DEBIAN_FRONTEND=noninteractive

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (apt-get, depmod and the cache need it): sudo $0"

# Every file the tests take from the host comes from one of these or a Depends of one (never
# a Recommends: the install skips them); tests/harness/src/host.rs checks that. Base-system packages
# (mount, coreutils, tar, gzip, dpkg) are named too, so the list is the whole story.
PACKAGES=(
  qemu-system-arm nfs-ganesha nfs-ganesha-vfs rpcbind e2fsprogs kmod cpio busybox-static
  qemu-user-static binfmt-support debootstrap dnsmasq iproute2 curl zstd xz-utils
  util-linux mount coreutils tar gzip dpkg sed grep findutils sqlite3 ca-certificates build-essential pkg-config
  chromium fonts-dejavu-core
  device-tree-compiler
  # The test disk image (a Raspberry Pi OS layout): sfdisk, mkfs.vfat, mcopy
  fdisk dosfstools mtools
  # Base images in the squashfs format (controller image import --format squashfs)
  squashfs-tools
  # tests/package.sh: systemd-analyze verify, readelf for Depends and pi-init, /bin/kill
  systemd binutils procps
  # The registry's PostgreSQL back-end is tested against a private cluster (tests/postgres)
  postgresql-15
)

# --- Debian packages ---------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  apt-get update -q
  # Packaged services (rpcbind, ganesha) must not start on the host: the tests run their own
  # in a private network namespace. policy-rc.d stops invoke-rc.d from starting them.
  policy_added=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  apt-get install -y -q --no-install-recommends "${missing[@]}" || { [ -n "$policy_added" ] && rm -f /usr/sbin/policy-rc.d; die "apt-get install failed"; }
  [ -n "$policy_added" ] && rm -f /usr/sbin/policy-rc.d
else
  say "Debian packages: all ${#PACKAGES[@]} present"
fi

# --- Rust target for pi-init, rustfmt and clippy ------------------------------------------
if command -v rustup >/dev/null 2>&1; then
  if rustup target list --installed | grep -qx aarch64-unknown-linux-musl; then
    say "rustup target aarch64-unknown-linux-musl: present"
  else
    say "adding rustup target aarch64-unknown-linux-musl"
    rustup target add aarch64-unknown-linux-musl
  fi
  # test.sh checks formatting and lints on every run: their components are part of the set-up.
  for component in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^$component"; then
      say "adding rustup component $component"
      rustup component add "$component"
    fi
  done
else
  die "rustup not found: install Rust with rustup first (https://rustup.rs)"
fi

# --- arm64 packages into the cache ---------------------------------------------------------
mkdir -p "$CACHE"
APT_DIR="$CACHE/apt-arm64"
apt_arm64() { # <apt-get|apt-cache> <args...>
  local tool="$1"; shift
  "$tool" -q -oAPT::Sandbox::User=root -oAPT::Architecture=arm64 -oAPT::Architectures=arm64 \
    -oDir::State::Lists="$APT_DIR/lists" -oDir::Cache="$APT_DIR/cache" \
    -oDir::State::status=/dev/null "$@"
}
arm64_lists_ready=
arm64_update() {
  [ -n "$arm64_lists_ready" ] && return 0
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/debs"
  say "apt update for arm64 (private lists under $APT_DIR)"
  apt_arm64 apt-get update >/dev/null
  arm64_lists_ready=1
}
arm64_download() { # <package> -> path of the .deb
  local pkg="$1" deb
  deb="$(ls "$APT_DIR/debs/${pkg}_"*_arm64.deb 2>/dev/null | head -n1 || true)"
  if [ -z "$deb" ]; then
    arm64_update
    say "downloading $pkg:arm64" >&2
    (cd "$APT_DIR/debs" && apt_arm64 apt-get download "$pkg:arm64" >/dev/null)
    deb="$(ls "$APT_DIR/debs/${pkg}_"*_arm64.deb | head -n1)"
  fi
  printf '%s\n' "$deb"
}

# Kernel: linux-image-arm64 is a meta package; its Depends names the versioned image.
KDIR="$CACHE/kernel"
if [ -s "$KDIR/vmlinuz" ] && [ -s "$KDIR/version" ] && [ -s "$KDIR/root/lib/modules/$(cat "$KDIR/version")/modules.dep" ]; then
  say "arm64 kernel: $(cat "$KDIR/version") in $KDIR"
else
  arm64_update
  # Several versions may be listed (bookworm, security): take the newest.
  kpkg="$(apt_arm64 apt-cache show linux-image-arm64 | sed -n 's/^Depends: *//p' | tr ',' '\n' \
          | sed 's/^ *//; s/[ (].*//' | grep -E '^linux-image-[0-9].*-arm64$' | sort -V | tail -n1)"
  [ -n "$kpkg" ] || die "could not resolve linux-image-arm64 to a versioned kernel package"
  kdeb="$(arm64_download "$kpkg")"
  rm -rf "$KDIR.tmp" && mkdir -p "$KDIR.tmp/root"
  say "unpacking $(basename "$kdeb")"
  dpkg-deb -x "$kdeb" "$KDIR.tmp/root"
  kver="$(ls "$KDIR.tmp/root/lib/modules" | head -n1)"
  [ -n "$kver" ] || die "no /lib/modules/<version> in $kdeb"
  say "depmod -b for $kver (Debian ships no modules.dep)"
  depmod -b "$KDIR.tmp/root" "$kver"
  ln -s "root/boot/vmlinuz-$kver" "$KDIR.tmp/vmlinuz"
  printf '%s\n' "$kver" > "$KDIR.tmp/version"
  rm -rf "$KDIR" && mv "$KDIR.tmp" "$KDIR"
  say "arm64 kernel: $kver in $KDIR"
fi

# busybox-static for arm64: the tiny test roots and the baseline initramfs are built from it.
BDIR="$CACHE/busybox"
if [ -x "$BDIR/busybox" ]; then
  say "arm64 busybox: $BDIR/busybox"
else
  bdeb="$(arm64_download busybox-static)"
  rm -rf "$BDIR.tmp" && mkdir -p "$BDIR.tmp/root"
  dpkg-deb -x "$bdeb" "$BDIR.tmp/root"
  ln -s root/bin/busybox "$BDIR.tmp/busybox"
  rm -rf "$BDIR" && mv "$BDIR.tmp" "$BDIR"
  say "arm64 busybox: $BDIR/busybox"
fi

# Real Raspberry Pi firmware: raspi-firmware is in non-free-firmware, which the host's sources
# may not list. Its own sources file and lists (never the host's), the same mirror.
FDIR="$CACHE/raspi-firmware"
if [ -s "$FDIR/start.elf" ] && [ -s "$FDIR/bootcode.bin" ] && [ -s "$FDIR/start4.elf" ]; then
  say "raspi-firmware: $FDIR"
else
  FW_APT="$CACHE/apt-firmware"
  mkdir -p "$FW_APT/lists/partial" "$FW_APT/cache/archives/partial" "$FW_APT/debs"
  fw_mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n1)"
  fw_mirror="${fw_mirror:-http://deb.debian.org/debian}"
  printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s bookworm non-free-firmware\n' \
    "$fw_mirror" > "$FW_APT/sources.list"
  apt_fw() { # <apt-get> <args...>
    "$@" -q -oAPT::Sandbox::User=root -oAPT::Architecture=arm64 -oAPT::Architectures=arm64 \
      -oDir::Etc::SourceList="$FW_APT/sources.list" -oDir::Etc::SourceParts=/dev/null \
      -oDir::State::Lists="$FW_APT/lists" -oDir::Cache="$FW_APT/cache" -oDir::State::status=/dev/null
  }
  say "apt update for raspi-firmware (private sources and lists under $FW_APT)"
  apt_fw apt-get update >/dev/null
  (cd "$FW_APT/debs" && apt_fw apt-get download raspi-firmware >/dev/null)
  fdeb="$(ls "$FW_APT/debs"/raspi-firmware_*.deb | head -n1)"
  rm -rf "$FDIR.tmp" && mkdir -p "$FDIR.tmp/root"
  dpkg-deb -x "$fdeb" "$FDIR.tmp/root"
  for f in "$FDIR.tmp/root/usr/lib/raspi-firmware/"*; do ln -s "${f#"$FDIR.tmp/"}" "$FDIR.tmp/"; done
  [ -s "$FDIR.tmp/start.elf" ] && [ -s "$FDIR.tmp/bootcode.bin" ] || die "no start.elf/bootcode.bin in $fdeb"
  rm -rf "$FDIR" && mv "$FDIR.tmp" "$FDIR"
  say "raspi-firmware: $(basename "$fdeb") in $FDIR"
fi

# --- Debian arm64 root for the Debian root scenario (opt-in; tests/test.sh turns it on) ------
DROOT="$CACHE/debian-root"
# What the Debian root scenarios run: systemd; containerd and runc (a container on a
# diskless node's volume); the network stacks a root may bring (NetworkManager, ifupdown with
# Debian's DHCP client), each enabled by the scenario that tests its hand-over. dbus and
# libpam-systemd are named because NetworkManager and polkitd depend on the virtual
# default-dbus-system-bus and default-logind, which debootstrap does not resolve on its own
# (without them the second stage leaves both unconfigured and fails). A root made with
# another list is made again (the list is written into .complete).
DEBIAN_ROOT_PACKAGES="systemd-sysv,udev,dbus,libpam-systemd,containerd,runc,network-manager,ifupdown,isc-dhcp-client,dhcpcd,iproute2"
if [ "${PUREBOOT_DEBIAN_ROOT:-0}" = 1 ]; then
  if [ "$(cat "$DROOT/.complete" 2>/dev/null)" = "$DEBIAN_ROOT_PACKAGES" ]; then
    say "Debian arm64 root: $DROOT"
  else
    # debootstrap's second stage runs arm64 binaries: qemu-user-static through binfmt_misc.
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
      say "mounting binfmt_misc"
      mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
      say "registering qemu-aarch64 with binfmt_misc"
      update-binfmts --enable qemu-aarch64 || update-binfmts --import qemu-aarch64
    fi
    mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n1)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    say "debootstrap arm64 bookworm minbase + $DEBIAN_ROOT_PACKAGES from $mirror (about 3 min)"
    rm -rf "$DROOT" "$CACHE"/debian-root-*.tar
    debootstrap --arch=arm64 --variant=minbase --include="$DEBIAN_ROOT_PACKAGES" bookworm "$DROOT" "$mirror" \
      > "$CACHE/debootstrap.log" 2>&1 || { tail -n 30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
    printf '%s' "$DEBIAN_ROOT_PACKAGES" > "$DROOT/.complete"
    say "Debian arm64 root: $DROOT ($(du -sh "$DROOT" | cut -f1))"
  fi
fi

say "done; cache: $CACHE"
