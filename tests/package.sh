#!/usr/bin/env bash
# The Debian packages (controller/packaging/build-deb.sh), built and checked without installing them on
# this machine: each is unpacked with `dpkg -x` into a throwaway root, and
#   - every file is where the unit and the config say (binary, unit, conffile, workflows,
#     state directory, pi-init), with the modes the package means;
#   - the unit's ExecStart names the packaged binary and the packaged config; the config's
#     database lies in the unit's StateDirectory, its workflows_dir holds the workflows, its
#     export is one of the unit's ReadWritePaths;
#   - `systemd-analyze verify --root` accepts the unit, warnings included, in a root holding
#     the package and systemd's own units;
#   - the packaged binaries run `--version` (the package's version), the packaged controller
#     reads the packaged config and validates the packaged workflows, and the packaged
#     pureboot-image builds an initramfs without --pi-init, from the pi-init beside it;
#   - control fields (Architecture, Depends, conffiles), md5sums, maintainer scripts' syntax.
#
#   tests/package.sh [--arch amd64|arm64] [--no-build]
#
# arm64 packages are cross-built (see controller/packaging/build-deb.sh) and their binaries run under
# qemu-aarch64-static with the cross libc (libc6-arm64-cross). Needs tests/setup.sh first
# (the initramfs check uses the cached arm64 kernel's modules). Not as root: fine.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PUREBOOT_CACHE:-$REPO/.cache}"
ARCH="$(dpkg --print-architecture)"
declare -a BUILD_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH="${2:?}"; shift 2 ;;
    --no-build) BUILD_ARGS+=(--no-build); shift ;;
    *) echo "package.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

PASSED=0 FAILED=0
pass() { PASSED=$((PASSED + 1)); printf 'ok      %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAILED  %s\n' "$*"; }
check() { # <label> <command...>: passes when the command succeeds
  local label="$1"; shift
  local out
  if out=$("$@" 2>&1); then pass "$label"; else fail "$label: $out"; fi
}

WORK="$(mktemp -d /tmp/pureboot-package.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
OUT="$WORK/debs"

echo "=== build: controller/packaging/build-deb.sh --arch $ARCH"
t0=$(date +%s)
if ! bash "$REPO/controller/packaging/build-deb.sh" --arch "$ARCH" --out "$OUT" "${BUILD_ARGS[@]}"; then
  echo "package: 0 passed, 1 failed (build-deb.sh)"
  exit 1
fi
echo "built in $(( $(date +%s) - t0 )) s"

# Run a packaged binary: natively, or an arm64 one under qemu-user with the cross libc.
declare -a RUN=()
if [ "$ARCH" != "$(dpkg --print-architecture)" ]; then
  [ "$ARCH" = arm64 ] || { echo "package.sh: cannot run $ARCH binaries here" >&2; exit 2; }
  RUN=(qemu-aarch64-static -L /usr/aarch64-linux-gnu)
fi

deb_of() { ls "$OUT/$1"_*_"$ARCH".deb 2>/dev/null | head -n1; }
field() { dpkg-deb -f "$1" "$2"; }

# --- pureboot-controller -------------------------------------------------------------------
echo "=== pureboot-controller"
DEB=$(deb_of pureboot-controller)
[ -n "$DEB" ] || { fail "no pureboot-controller_*_$ARCH.deb in $OUT"; echo "package: $PASSED passed, $FAILED failed"; exit 1; }
pass "built $(basename "$DEB") ($(du -k "$DEB" | cut -f1) KiB)"
ROOT="$WORK/controller-root"
CTRL="$WORK/controller-control"
dpkg -x "$DEB" "$ROOT" && dpkg-deb -e "$DEB" "$CTRL" || { fail "dpkg -x / dpkg-deb -e $DEB"; exit 1; }
VERSION=$(field "$DEB" Version)

UNIT="$ROOT/lib/systemd/system/pureboot-controller.service"
CONF="$ROOT/etc/pureboot/controller.toml"
check "Architecture is $ARCH" test "$(field "$DEB" Architecture)" = "$ARCH"
check "Depends names libc6, e2fsprogs (mkfs.ext4 for persist images and volumes), init-system-helpers" \
  bash -c 'd=$(dpkg-deb -f "$1" Depends); for p in "libc6 (>= " e2fsprogs init-system-helpers; do [[ "$d" == *"$p"* ]] || { echo "Depends: $d"; exit 1; }; done' _ "$DEB"
check "binary /usr/bin/pureboot-controller (0755)" test "$(stat -c %a "$ROOT/usr/bin/pureboot-controller")" = 755
check "unit /lib/systemd/system/pureboot-controller.service" test -f "$UNIT"
check "config /etc/pureboot/controller.toml is the only conffile" \
  test "$(cat "$CTRL/conffiles")" = /etc/pureboot/controller.toml
check "config is the controller/packaging/controller.toml" cmp "$CONF" "$REPO/controller/packaging/controller.toml"
check "state directory /var/lib/pureboot (0750)" test "$(stat -c %a "$ROOT/var/lib/pureboot")" = 750
for wf in "$REPO"/workflows/*.yaml; do
  check "workflow /usr/share/pureboot/workflows/$(basename "$wf")" \
    cmp "$wf" "$ROOT/usr/share/pureboot/workflows/$(basename "$wf")"
done
check "bash completion names the verbs" \
  grep -q overlay "$ROOT/usr/share/bash-completion/completions/pureboot-controller"
check "zsh and fish completions" test -s "$ROOT/usr/share/zsh/vendor-completions/_pureboot-controller" -a \
  -s "$ROOT/usr/share/fish/vendor_completions.d/pureboot-controller.fish"
check "man page pureboot-controller(1)" \
  bash -c 'gzip -dc "$1" | grep -q "^.TH pureboot-controller 1"' _ "$ROOT/usr/share/man/man1/pureboot-controller.1.gz"
check "md5sums match the files" bash -c 'cd "$1" && md5sum -c --quiet "$2"' _ "$ROOT" "$CTRL/md5sums"
for script in postinst prerm postrm; do
  check "maintainer script $script: executable, sh -n" \
    bash -c 'test -x "$1" && sh -n "$1"' _ "$CTRL/$script"
done

# What the unit says, against what the package and the config hold.
unit_value() { sed -n "s/^$1=//p" "$UNIT"; }
conf_value() { sed -n "s/^$1 = \"\(.*\)\".*/\1/p" "$CONF" | head -n1; }
EXEC_START=$(unit_value ExecStart)
EXEC_BIN=${EXEC_START%% *}
EXEC_CONF=$(sed -n 's/.*--config \([^ ]*\).*/\1/p' <<<"$EXEC_START")
check "ExecStart runs the packaged binary ($EXEC_BIN)" test "$EXEC_BIN" = /usr/bin/pureboot-controller
check "ExecStart reads the packaged conffile ($EXEC_CONF)" \
  bash -c 'test "$1" = "$(cat "$2")"' _ "$EXEC_CONF" "$CTRL/conffiles"
check "ExecReload sends SIGHUP (reloads the workflows)" test "$(unit_value ExecReload)" = '/bin/kill -HUP $MAINPID'
STATE_DIR=/var/lib/$(unit_value StateDirectory)
DATABASE=$(conf_value database)
check "config database ($DATABASE) is in the unit's StateDirectory ($STATE_DIR)" \
  test "$(dirname "$DATABASE")" = "$STATE_DIR"
WORKFLOWS=$(conf_value workflows_dir)
check "config workflows_dir ($WORKFLOWS) holds the packaged workflows" \
  bash -c 'ls "$1$2"/*.yaml >/dev/null' _ "$ROOT" "$WORKFLOWS"
EXPORT=$(sed -n '/^\[nfs\]/,$ s/^root_path = "\(.*\)".*/\1/p' "$CONF")
RW_PATHS=$(unit_value ReadWritePaths)
check "config [nfs] root_path ($EXPORT) is one of the unit's ReadWritePaths ($RW_PATHS)" \
  bash -c 'for p in $2; do [ "${p#-}" = "$1" ] && exit 0; done; exit 1' _ "$EXPORT" "$RW_PATHS"
TFTP_ROOT=$(sed -n '/^\[tftp\]/,$ s/^# root = "\(.*\)".*/\1/p' "$CONF")
check "config [tftp] root ($TFTP_ROOT, as the comment suggests it) is one of the unit's ReadWritePaths" \
  bash -c '[ -n "$1" ] && for p in $2; do [ "${p#-}" = "$1" ] && exit 0; done; exit 1' _ "$TFTP_ROOT" "$RW_PATHS"
check "After= network-online.target and both NFS servers; Wants= network-online.target" \
  bash -c 'a=$(sed -n "s/^After=//p" "$1"); w=$(sed -n "s/^Wants=//p" "$1"); for u in network-online.target nfs-server.service nfs-ganesha.service; do [[ " $a " == *" $u "* ]] || exit 1; done; [[ " $w " == *" network-online.target "* ]]' _ "$UNIT"

# systemd-analyze verify in a root holding the package and systemd's own units (so
# sysinit.target and friends resolve) and /bin/kill (ExecReload's command): it prints a
# warning and still exits 0 for a value it ignores, so any output is a failure.
SD_ROOT="$WORK/systemd-root"
mkdir -p "$SD_ROOT/usr/lib/systemd/system" "$SD_ROOT/bin"
ln -s usr/lib "$SD_ROOT/lib"
dpkg -L systemd | grep -E '^(/usr)?/lib/systemd/system/[^/]+$' | while read -r unit; do
  cp -a "$unit" "$SD_ROOT/usr/lib/systemd/system/"
done
cp /bin/kill "$SD_ROOT/bin/kill"
dpkg -x "$DEB" "$SD_ROOT"
if out=$(systemd-analyze verify --root="$SD_ROOT" pureboot-controller.service 2>&1) && [ -z "$out" ]; then
  pass "systemd-analyze verify accepts pureboot-controller.service (no warning)"
else
  fail "systemd-analyze verify pureboot-controller.service: $out"
fi

out=$("${RUN[@]}" "$ROOT/usr/bin/pureboot-controller" --version 2>&1)
check "pureboot-controller --version: $out" test "$out" = "pureboot-controller $VERSION"
# The packaged controller reads the packaged config and checks the packaged workflows (the
# workflows directory moved into the unpacked root by its environment override).
check "packaged controller reads its config and validates the packaged workflows" \
  env PUREBOOT_WORKFLOWS_DIR="$ROOT$WORKFLOWS" \
  "${RUN[@]}" "$ROOT/usr/bin/pureboot-controller" --config "$CONF" workflow validate

# --- pureboot-image ------------------------------------------------------------------------
echo "=== pureboot-image"
DEB=$(deb_of pureboot-image)
[ -n "$DEB" ] || { fail "no pureboot-image_*_$ARCH.deb in $OUT"; echo "package: $PASSED passed, $FAILED failed"; exit 1; }
pass "built $(basename "$DEB") ($(du -k "$DEB" | cut -f1) KiB)"
ROOT="$WORK/image-root"
CTRL="$WORK/image-control"
dpkg -x "$DEB" "$ROOT" && dpkg-deb -e "$DEB" "$CTRL" || { fail "dpkg -x / dpkg-deb -e $DEB"; exit 1; }
VERSION=$(field "$DEB" Version)
PI_INIT="$ROOT/usr/lib/pureboot/pi-init"
check "Architecture is $ARCH" test "$(field "$DEB" Architecture)" = "$ARCH"
check "binary /usr/bin/pureboot-image (0755)" test "$(stat -c %a "$ROOT/usr/bin/pureboot-image")" = 755
check "pi-init /usr/lib/pureboot/pi-init (0755)" test "$(stat -c %a "$PI_INIT")" = 755
check "pi-init is a static aarch64 executable" \
  bash -c 'readelf -h "$1" | grep -q "Machine: *AArch64" && ! readelf -l "$1" | grep -q "program interpreter"' _ "$PI_INIT"
check "md5sums match the files" bash -c 'cd "$1" && md5sum -c --quiet "$2"' _ "$ROOT" "$CTRL/md5sums"
out=$("${RUN[@]}" "$ROOT/usr/bin/pureboot-image" --version 2>&1)
check "pureboot-image --version: $out" test "$out" = "pureboot-image $VERSION"
if [ -d "$CACHE/kernel/root/lib/modules" ]; then
  log="$WORK/initramfs.log"
  if "${RUN[@]}" "$ROOT/usr/bin/pureboot-image" initramfs --modules-root "$CACHE/kernel/root" \
       --preset qemu-virt -o "$WORK/initramfs.cpio.gz" >"$log" 2>&1 \
     && grep -qF "note: pi-init: $ROOT/usr/lib/pureboot/pi-init" "$log" \
     && [ -s "$WORK/initramfs.cpio.gz" ]; then
    pass "packaged pureboot-image initramfs takes the packaged pi-init without --pi-init"
  else
    fail "pureboot-image initramfs without --pi-init: $(cat "$log")"
  fi
else
  fail "no cached kernel modules in $CACHE/kernel/root (run tests/setup.sh)"
fi

echo "package: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
