#!/usr/bin/env bash
# Runs a command (by default the whole test suite, tests/run.sh) with another Debian release's
# CPython, inside a debootstrap chroot of that release built from the mirror apt already uses.
#
#   bash tests/chroot.sh trixie                 # CPython 3.13: build the chroot if needed, run all tests
#   bash tests/chroot.sh sid                    # CPython 3.14
#   bash tests/chroot.sh sid-3.15               # CPython 3.15 (the same sid chroot)
#   bash tests/chroot.sh trixie bash -l         # any other command, run in the checkout inside the chroot
#
# The chroot is cached in $PYCDS_CHROOTS (default /var/cache/pycds/chroots/<release>) and reused
# while its package list is unchanged. The extension is built inside the chroot, against the
# chroot's own headers, with the host's Rust toolchain bound in (rustup and cargo directories);
# gcc and the Python headers come from the release itself. The checkout is bound at /pycds, and
# the venv (.venv-<target>) and cargo target directory (target/chroot-<target>) are per target, so
# builds for different interpreters never mix. Needs root (debootstrap, mount, chroot); mounts
# live in a private mount namespace and vanish when the command ends.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

target=${1:?usage: tests/chroot.sh trixie|sid|sid-3.15 [command ...]}
shift
# A target is a Debian release and one of its interpreters; the sid chroot holds both of sid's.
case "$target" in
    trixie) suite=trixie py=python3.13 pythons="python3.13" ;;
    sid) suite=sid py=python3.14 pythons="python3.14 python3.15" ;;
    sid-3.15) suite=sid py=python3.15 pythons="python3.14 python3.15" ;;
    *) echo "tests/chroot.sh: unknown target '$target' (trixie, sid or sid-3.15)" >&2; exit 2 ;;
esac

root=${PYCDS_CHROOTS:-/var/cache/pycds/chroots}/$suite
packages=$(for p in $pythons; do printf "%s,%s-dev,%s-venv," "$p" "$p" "$p"; done)gcc,libc6-dev,ca-certificates,procps
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/*$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
mirror=${mirror:-http://deb.debian.org/debian}

if [ "$(cat "$root/.pycds-packages" 2>/dev/null)" != "$packages" ]; then
    command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
    echo "== building the $suite chroot in $root from $mirror ($packages)"
    rm -rf "$root" "$root.tmp"
    mkdir -p "$(dirname "$root")"
    debootstrap --variant=minbase --include="$packages" "$suite" "$root.tmp" "$mirror" >"$root.log" 2>&1 \
        || { tail -n 30 "$root.log" >&2; echo "tests/chroot.sh: debootstrap failed (log: $root.log)" >&2; exit 1; }
    mv "$root.tmp" "$root"
    echo "$packages" >"$root/.pycds-packages"
fi

# Network for pip inside the chroot: the host's resolver and trusted certificates (a sandbox
# egress proxy may add its own authority to the host bundle).
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$root/pycds" "$root/root/.rustup" "$root/root/.cargo"

if [ $# -eq 0 ]; then
    set -- bash tests/run.sh
fi
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_home=${CARGO_HOME:-$HOME/.cargo}

exec unshare --mount --propagation private -- bash -c '
    set -e
    root=$1 repo=$2 rustup_home=$3 cargo_home=$4; shift 4
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --bind "$repo" "$root/pycds"
    mount --bind "$rustup_home" "$root/root/.rustup"
    mount --bind "$cargo_home" "$root/root/.cargo"
    mount -t tmpfs tmpfs "$root/tmp"
    exec chroot "$root" "$@"
' bash "$root" "$repo" "$rustup_home" "$cargo_home" \
    env -i HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
        PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        RUSTUP_HOME=/root/.rustup CARGO_HOME=/root/.cargo RUSTUP_AUTO_INSTALL=0 \
        CARGO_TARGET_DIR="/pycds/target/chroot-$target" \
        PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
        PIP_DEFAULT_TIMEOUT=180 PYTHONDONTWRITEBYTECODE="${PYTHONDONTWRITEBYTECODE:-}" \
        PYTHON="/usr/bin/$py" PYCDS_VENV=".venv-$target" \
        bash -c 'cd /pycds && exec "$@"' bash "$@"
