#!/usr/bin/env bash
# Builds the Debian packages pureboot-controller and pureboot-image with dpkg-deb.
#
#   controller/packaging/build-deb.sh [--arch amd64|arm64] [--out DIR] [--no-build]
#
# --arch    the packages' architecture (default: this machine's). arm64 is cross-built:
#           rustup target aarch64-unknown-linux-gnu and Debian's gcc-aarch64-linux-gnu (the
#           C parts: SQLite for rusqlite, zstd, liblzma) and libc6-dev-arm64-cross.
# --out     where the .deb files go (default: target/debian).
# --no-build  package what target/ holds (after `cargo build --release ...`).
#
# Why not cargo-deb: it is not in Debian bookworm, so every fresh CI machine would compile
# it (and its dependency tree) with `cargo install` before packaging; what we need from it
# (files, conffiles, maintainer scripts for one unit, Depends from the ELF) is this script
# and dpkg-deb, which every Debian machine has.
#
# Each package's own files sit beside the crate it packages, in <crate>/packaging/:
# controller/packaging/ (description, unit, config, maintainer scripts) and image/packaging/
# (description); this script, shared by both, stays here.
#
# Layout (the unit and the config name the same paths; tests/package.sh checks them):
#   pureboot-controller  /usr/bin/pureboot-controller
#                        /lib/systemd/system/pureboot-controller.service
#                        /etc/pureboot/controller.toml            (conffile)
#                        /usr/share/pureboot/workflows/*.yaml
#                        /var/lib/pureboot/                        (state, 0750)
#   pureboot-image       /usr/bin/pureboot-image
#                        /usr/lib/pureboot/pi-init                 (static aarch64, any host)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ARCH="$(dpkg --print-architecture)"
OUT="$REPO/target/debian"
BUILD=1

die() { printf 'build-deb: ERROR: %s\n' "$*" >&2; exit 1; }
say() { printf 'build-deb: %s\n' "$*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH="${2:?--arch needs a value}"; shift 2 ;;
    --out) OUT="${2:?--out needs a value}"; shift 2 ;;
    --no-build) BUILD=; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

HOST_ARCH="$(dpkg --print-architecture)"
declare -a CARGO_TARGET=()
case "$ARCH" in
  "$HOST_ARCH") BIN_DIR="$REPO/target/release" ;;
  arm64)
    TRIPLE=aarch64-unknown-linux-gnu
    CARGO_TARGET=(--target "$TRIPLE")
    BIN_DIR="$REPO/target/$TRIPLE/release"
    command -v aarch64-linux-gnu-gcc >/dev/null ||
      die "cross-building arm64 needs Debian's cross compiler: apt-get install --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
    rustup target list --installed 2>/dev/null | grep -qx "$TRIPLE" ||
      die "cross-building arm64 needs the Rust target: rustup target add $TRIPLE"
    # Rust links with the cross gcc; the cc crate builds SQLite, zstd and liblzma with it.
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
    ;;
  *) die "--arch $ARCH: only $HOST_ARCH (native) and arm64 (cross) are built here" ;;
esac
PI_INIT="$REPO/target/aarch64-unknown-linux-musl/release/pi-init"

cd "$REPO"
if [ -n "$BUILD" ]; then
  say "cargo build --release ${CARGO_TARGET[*]} -p pureboot-controller -p pureboot-image"
  cargo build --release "${CARGO_TARGET[@]}" -p pureboot-controller -p pureboot-image
  say "cargo build --release -p pi-init --target aarch64-unknown-linux-musl"
  cargo build --release -p pi-init --target aarch64-unknown-linux-musl
fi
for f in "$BIN_DIR/pureboot-controller" "$BIN_DIR/pureboot-image" "$PI_INIT"; do
  [ -x "$f" ] || die "$f is missing: build it (or drop --no-build)"
done

# `key = "value"` from a crate's [package] table (the first such line: [package] comes first).
cargo_field() { # <Cargo.toml> <key>
  sed -n "s/^$2 = \"\(.*\)\"\$/\1/p" "$1" | head -n1
}

# Depends for the shared libraries an ELF needs, with libc6's minimum from the newest
# GLIBC_x.y symbol version it uses (readelf reads any architecture's ELF).
elf_depends() { # <elf>
  local needed lib glibc
  needed=$(readelf -d -W "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  local deps=()
  for lib in $needed; do
    case "$lib" in
      libc.so.6|libm.so.6|libpthread.so.0|libdl.so.2|librt.so.1|libutil.so.1|ld-linux-*) ;;
      libgcc_s.so.1) deps+=("libgcc-s1") ;;
      *) die "$1 needs $lib: add its package to elf_depends in $0" ;;
    esac
  done
  if [ -n "$needed" ]; then
    glibc=$(readelf --dyn-syms -W "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' \
      | sort -t. -k1,1n -k2,2n -k3,3n -u | tail -n1)
    deps=("libc6 (>= ${glibc:-2.17})" "${deps[@]}")
  fi
  local IFS=,
  printf '%s' "${deps[*]}" | sed 's/,/, /g'
}

# SOURCE_DATE_EPOCH: the last commit's time, so two builds of one commit are the same files.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}"

# install_file <mode> <src> <root> <dest>
install_file() {
  install -D -m "$1" "$2" "$3$4"
}

# finish_package <root> <package> <crate dir> <Depends> [extra control lines]: control (the
# description from <crate dir>/packaging/<package>.description), md5sums, then dpkg-deb.
# Owners are root:root in the archive (--root-owner-group).
finish_package() {
  local root="$1" pkg="$2" crate="$3" depends="$4" extra="${5:-}"
  local version description size
  version=$(cargo_field "$crate/Cargo.toml" version)
  description=$(cargo_field "$crate/Cargo.toml" description)
  [ -n "$version" ] && [ -n "$description" ] || die "$crate/Cargo.toml: no version or description"
  install -D -m 0644 "$REPO/README.md" "$root/usr/share/doc/$pkg/README.md"
  cat > "$root/usr/share/doc/$pkg/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pureboot
Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
  size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  mkdir -p "$root/DEBIAN"
  {
    echo "Package: $pkg"
    echo "Version: $version"
    echo "Architecture: $ARCH"
    echo "Maintainer: pureboot developers <pureboot@localhost>"
    echo "Installed-Size: $size"
    echo "Depends: $depends"
    [ -n "$extra" ] && printf '%s\n' "$extra"
    echo "Section: admin"
    echo "Priority: optional"
    echo "Description: $description"
    cat "$crate/packaging/$pkg.description"
  } > "$root/DEBIAN/control"
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z \
    | xargs -0 -r md5sum) > "$root/DEBIAN/md5sums"
  find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  local deb="$OUT/${pkg}_${version}_${ARCH}.deb"
  dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
  say "$deb ($(du -k "$deb" | cut -f1) KiB)"
}

STAGE="$REPO/target/debian-stage/$ARCH"
rm -rf "$STAGE"
mkdir -p "$STAGE" "$OUT"
umask 022

# --- pureboot-controller -------------------------------------------------------------------
root="$STAGE/pureboot-controller"
src="$REPO/controller/packaging"
install_file 0755 "$BIN_DIR/pureboot-controller" "$root" /usr/bin/pureboot-controller
install_file 0644 "$src/pureboot-controller.service" "$root" \
  /lib/systemd/system/pureboot-controller.service
install_file 0644 "$src/controller.toml" "$root" /etc/pureboot/controller.toml
for wf in "$REPO"/workflows/*.yaml; do
  install_file 0644 "$wf" "$root" "/usr/share/pureboot/workflows/$(basename "$wf")"
done
install -d -m 0750 "$root/var/lib/pureboot"
# Completions and the man page come from the binary's own clap definitions (an arm64 binary
# runs here through qemu-user-static's binfmt handler, which the set-up registers).
gen() { "$BIN_DIR/pureboot-controller" --config /dev/null "$@"; }
install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d" "$root/usr/share/man/man1"
gen completions bash > "$root/usr/share/bash-completion/completions/pureboot-controller"
gen completions zsh > "$root/usr/share/zsh/vendor-completions/_pureboot-controller"
gen completions fish > "$root/usr/share/fish/vendor_completions.d/pureboot-controller.fish"
gen manpage | gzip -9n > "$root/usr/share/man/man1/pureboot-controller.1.gz"
mkdir -p "$root/DEBIAN"
echo /etc/pureboot/controller.toml > "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "$src/pureboot-controller/$script" "$root/DEBIAN/$script"
done
finish_package "$root" pureboot-controller "$REPO/controller" \
  "$(elf_depends "$BIN_DIR/pureboot-controller"), e2fsprogs, init-system-helpers (>= 1.54)" \
  "Recommends: nfs-kernel-server | nfs-ganesha-vfs, squashfs-tools
Suggests: pureboot-image"

# --- pureboot-image ------------------------------------------------------------------------
root="$STAGE/pureboot-image"
install_file 0755 "$BIN_DIR/pureboot-image" "$root" /usr/bin/pureboot-image
install_file 0755 "$PI_INIT" "$root" /usr/lib/pureboot/pi-init
finish_package "$root" pureboot-image "$REPO/image" "$(elf_depends "$BIN_DIR/pureboot-image")" \
  "Suggests: pureboot-controller"
