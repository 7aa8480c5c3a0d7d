#!/usr/bin/env bash
# A disk image laid out as Raspberry Pi OS's: an MBR (disk id $DISK_ID), partition 1 FAT32
# "bootfs" from BOOT_DIR at 4 MiB, partition 2 ext4 "rootfs" from ROOT_DIR right after it.
# Built without mounting anything: sfdisk on the file; mkfs.vfat and mcopy, mkfs.ext4 -d, each
# into a file of its own, copied into place.
#
#   tests/disk-image.sh ROOT_DIR BOOT_DIR OUT.img
#
# Environment: DISK_ID (8 hex digits), BOOT_MB (default 64), ROOT_MB (default: the root's
# size + 30% + 32 MiB), ROOT_DEBUGFS (a debugfs -w command file run on the ext4 file system
# before it is placed: the hostile-image tests use it), ROOT_TYPE (MBR type, default 83).
# Run as root when ROOT_DIR holds files owned by others or device nodes.
set -euo pipefail

[ $# = 3 ] || { echo "usage: $0 ROOT_DIR BOOT_DIR OUT.img" >&2; exit 2; }
root="$1" boot="$2" out="$3"
disk_id="${DISK_ID:-8a438930}"
boot_mb="${BOOT_MB:-64}"
root_mb="${ROOT_MB:-$(( $(du -sm "$root" | cut -f1) * 13 / 10 + 32 ))}"

start=8192                                  # 4 MiB, as Raspberry Pi OS aligns
boot_sectors=$(( boot_mb * 2048 ))
root_start=$(( start + boot_sectors ))
root_sectors=$(( root_mb * 2048 ))

rm -f "$out"
truncate -s $(( (root_start + root_sectors) * 512 )) "$out"
sfdisk --quiet "$out" <<TABLE
label: dos
label-id: 0x$disk_id
start=$start, size=$boot_sectors, type=c
start=$root_start, size=$root_sectors, type=${ROOT_TYPE:-83}
TABLE

# The FAT in a file of its own, exactly the partition's size (mkfs.vfat sizes its clusters
# from the file: on the whole image it would choose too few for FAT32), copied into place.
fat="$out.bootfs"
log="$out.log"
rm -f "$fat"
truncate -s "${boot_mb}M" "$fat"
mkfs.vfat -F 32 -n bootfs "$fat" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
export MTOOLS_SKIP_CHECK=1
if [ -n "$(ls -A "$boot")" ]; then
  mcopy -s -p -m -i "$fat" "$boot"/* ::/
fi
dd if="$fat" of="$out" bs=1M seek=$(( start * 512 )) oflag=seek_bytes conv=notrunc,sparse status=none
rm -f "$fat"

ext4="$out.rootfs"
rm -f "$ext4"
truncate -s "${root_mb}M" "$ext4"
mkfs.ext4 -q -F -L rootfs -d "$root" "$ext4" "${root_mb}M"
if [ -n "${ROOT_DEBUGFS:-}" ]; then
  debugfs -w -f "$ROOT_DEBUGFS" "$ext4" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
fi
dd if="$ext4" of="$out" bs=1M seek=$(( root_start * 512 )) oflag=seek_bytes conv=notrunc,sparse status=none
rm -f "$ext4"
rm -f "$log"
