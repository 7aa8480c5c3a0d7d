#!/usr/bin/env bash
# Builds the baseline initramfs: busybox + a shell flow doing pi-init's job the usual way
# (./init: insmod one module at a time, udhcpc, mount, overlay, switch_root) + the 17 modules
# the QEMU virt board needs, in load order. Used by the virtual Pi tests and the benchmark as
# the figure pi-init is compared with.
#   build.sh -o <out.cpio.gz> [--cache <dir>]      (cache: as tests/setup.sh fills it)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${PUREBOOT_CACHE:-$HERE/../../.cache}"
OUT=
while [ $# -gt 0 ]; do
  case "$1" in
    -o) OUT="$2"; shift 2 ;;
    --cache) CACHE="$2"; shift 2 ;;
    *) echo "usage: $0 -o <out.cpio.gz> [--cache <dir>]" >&2; exit 2 ;;
  esac
done
[ -n "$OUT" ] || { echo "usage: $0 -o <out.cpio.gz> [--cache <dir>]" >&2; exit 2; }
KROOT="$CACHE/kernel/root"
KVER="$(cat "$CACHE/kernel/version" 2>/dev/null)" || { echo "no kernel in $CACHE: run tests/setup.sh" >&2; exit 1; }
BUSYBOX="$CACHE/busybox/busybox"
[ -x "$BUSYBOX" ] || { echo "no arm64 busybox in $CACHE: run tests/setup.sh" >&2; exit 1; }

MODULES=(virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net
         dns_resolver sunrpc grace lockd netfs fscache nfs nfs_acl nfsv3 nfsv4 overlay)
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
for m in "${MODULES[@]}"; do
  rel="$(modinfo -b "$KROOT" -k "$KVER" -n "$m")" || { echo "module $m not in $KROOT ($KVER)" >&2; exit 1; }
  rel="${rel#"$KROOT"}"
  mkdir -p "$stage$(dirname "$rel")"
  case "$rel" in
    *.ko.xz) xz -dc "$KROOT$rel" > "$stage${rel%.xz}"; rel="${rel%.xz}" ;;
    *.ko.zst) zstd -qdc "$KROOT$rel" > "$stage${rel%.zst}"; rel="${rel%.zst}" ;;
    *) cp "$KROOT$rel" "$stage$rel" ;;
  esac
  echo "$rel" >> "$stage/etc/pureboot/modules"
done
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -9n > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "baseline initramfs: $OUT ($(stat -c %s "$OUT") bytes, ${#MODULES[@]} modules, kernel $KVER)"
