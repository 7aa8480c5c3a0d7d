#!/usr/bin/env bash
# Builds the baseline initramfs: busybox + a shell flow doing pi-init's job the usual way
# (./init: insmod one module at a time, udhcpc, mount, overlay, switch_root) + the modules
# the QEMU virt board needs, in load order (17 on Debian's kernel; only overlay on the Pi-like
# kernel, which builds the rest in). Used by the virtual Pi tests and the benchmark as the
# figure pi-init is compared with.
#   build.sh -o <out.cpio.gz> [--cache <dir>] [--kernel <dir>]
#   (cache: as tests/setup.sh fills it; kernel: <dir>/{version,root/lib/modules}, default
#   <cache>/kernel, Debian's; tests/bench/pi-kernel.sh makes <cache>/pi-kernel)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${PUREBOOT_CACHE:-$HERE/../../.cache}"
OUT=
KDIR=
while [ $# -gt 0 ]; do
  case "$1" in
    -o) OUT="$2"; shift 2 ;;
    --cache) CACHE="$2"; shift 2 ;;
    --kernel) KDIR="$2"; shift 2 ;;
    *) echo "usage: $0 -o <out.cpio.gz> [--cache <dir>] [--kernel <dir>]" >&2; exit 2 ;;
  esac
done
[ -n "$OUT" ] || { echo "usage: $0 -o <out.cpio.gz> [--cache <dir>] [--kernel <dir>]" >&2; exit 2; }
KDIR="${KDIR:-$CACHE/kernel}"
KROOT="$KDIR/root"
KVER="$(cat "$KDIR/version" 2>/dev/null)" || { echo "no kernel in $KDIR: run tests/setup.sh" >&2; exit 1; }
BUSYBOX="$CACHE/busybox/busybox"
[ -x "$BUSYBOX" ] || { echo "no arm64 busybox in $CACHE: run tests/setup.sh" >&2; exit 1; }

# What the flow needs (NIC, NFS v3/v4 client, overlayfs); modprobe resolves what they need
# from this kernel's modules.dep, in load order, and names the built-in ones `builtin`: those
# have no file and are not loaded (busybox insmod would fail on them).
WANTED=(virtio_pci virtio_net nfsv3 nfsv4 overlay)
APPLETS=(sh mount umount insmod ip udhcpc mkdir cat sleep poweroff switch_root wget echo)

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,run,tmp,etc/pureboot,mnt}
cp "$BUSYBOX" "$stage/bin/busybox"
for a in "${APPLETS[@]}"; do ln -s busybox "$stage/bin/$a"; done
install -m 0755 "$HERE/init" "$stage/init"
install -m 0755 "$HERE/udhcpc.script" "$stage/etc/udhcpc.script"
mknod -m 0600 "$stage/dev/console" c 5 1
: > "$stage/etc/pureboot/modules"
n=0
for m in "${WANTED[@]}"; do
  deps="$(modprobe -d "$KROOT" -S "$KVER" --show-depends "$m")" \
    || { echo "module $m not in $KROOT ($KVER)" >&2; exit 1; }
  while read -r kind path _; do
    [ "$kind" = insmod ] || continue
    rel="${path#"$KROOT"}"
    rel="${rel%.xz}" && rel="${rel%.zst}"
    grep -qxF "$rel" "$stage/etc/pureboot/modules" && continue
    mkdir -p "$stage$(dirname "$rel")"
    case "$path" in
      *.ko.xz) xz -dc "$path" > "$stage$rel" ;;
      *.ko.zst) zstd -qdc "$path" > "$stage$rel" ;;
      *) cp "$path" "$stage$rel" ;;
    esac
    echo "$rel" >> "$stage/etc/pureboot/modules"
    n=$((n + 1))
  done <<< "$deps"
done
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -9n > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "baseline initramfs: $OUT ($(stat -c %s "$OUT") bytes, $n modules, kernel $KVER)"
