#!/usr/bin/env bash
# Builds one wheel per supported interpreter into dist/, tagged manylinux_2_28 (glibc 2.28:
# RHEL 8+, Debian 11+, Ubuntu 20.04+, Amazon Linux 2023), and checks each: auditwheel must
# place it at that tag, and no symbol in its extension may need a newer glibc (checked on the
# symbol versions themselves, which auditwheel alone does not fully cover).
#
#   bash packaging/build-wheels.sh                      # cp311 (this machine), cp313, cp314, cp315 (chroots)
#   bash packaging/build-wheels.sh /usr/bin/python3.11  # only for these interpreters (paths)
#
# Each wheel is built by maturin with zig as the linker (`--zig`), which links against glibc
# 2.28's symbol set whatever glibc the build machine has. The layout probe still compiles
# against, and runs with, the target interpreter's own headers, so a wheel is built where its
# interpreter is: here for 3.11, in the Debian chroots of tests/chroot.sh for 3.13, 3.14 and
# 3.15. This script is the one way wheels are made: a publishing workflow calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=manylinux_2_28
GLIBC_MAX=2.28
MATURIN=maturin==1.16.0
ZIG=ziglang==0.17.1
AUDITWHEEL=auditwheel==6.8.2
mkdir -p dist

# Builds the wheel of the interpreter $1 (a path valid where this runs) into dist/.
build_here() {
    local py=$1 venv=target/wheel-build-$(basename "$1")
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$MATURIN" "$ZIG" "$AUDITWHEEL"
    local log
    log=$(mktemp)
    # maturin finds zig as `python3 -m ziglang`: the build venv's python first on PATH.
    if ! PATH="$(cd "$venv" && pwd)/bin:$PATH" CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}/wheel-$(basename "$py") \
        "$venv/bin/maturin" build --release --zig --compatibility "$TAG" --interpreter "$py" --out dist >"$log" 2>&1; then
        grep -E "^(error|warning: |  |thread)" "$log" | grep -v "^  Caused by: Cargo build finished" | tail -n 30 >&2
        echo "build-wheels: maturin failed for $py" >&2
        exit 1
    fi
    grep -E "Built wheel" "$log" || true
    rm -f "$log"
}

# Checks the newest wheel in dist/ for ABI $1 (cp311, ...), with the interpreter $2.
check() {
    local abi=$1 py=$2 wheel
    wheel=$(ls -t dist/pycds-*-"$abi"-"$abi"-*.whl 2>/dev/null | head -n1 || true)
    [ -n "$wheel" ] || { echo "build-wheels: no $abi wheel in dist/" >&2; return 1; }
    local venv=target/wheel-build-$(basename "$py")
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$AUDITWHEEL"
    local shown
    shown=$("$venv/bin/auditwheel" show "$wheel")
    echo "$shown" | tr '\n' ' ' | grep -q "\"${TAG}_x86_64\"" \
        || { echo "build-wheels: auditwheel does not place $wheel at $TAG:"; echo "$shown"; return 1; } >&2
    local tmp
    tmp=$(mktemp -d)
    "$py" -m zipfile -e "$wheel" "$tmp"
    local so highest
    so=$(find "$tmp" -name '_cds*.so' | head -n1)
    # Every GLIBC_x.y version any dynamic symbol needs; the highest must not pass the tag's.
    highest=$(objdump -T "$so" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)
    if [ "$(printf '%s\n%s\n' "$highest" "$GLIBC_MAX" | sort -V | tail -n1)" != "$GLIBC_MAX" ]; then
        echo "build-wheels: $wheel needs GLIBC_$highest, newer than $TAG allows" >&2
        objdump -T "$so" | grep "GLIBC_$highest" >&2
        return 1
    fi
    # An undefined symbol with no version at all would bind to whatever the system has.
    local unversioned
    # (The interpreter's own symbols, Py* and _Py*, are unversioned by design.)
    unversioned=$(objdump -T "$so" | awk '$3 == "*UND*" && $0 !~ /\(/ {print $NF}' | grep -Ev '^_?Py' || true)
    if [ -n "$unversioned" ]; then
        echo "build-wheels: $wheel has undefined symbols without a version: $unversioned" >&2
        return 1
    fi
    printf '%s  %s bytes  auditwheel: %s  highest glibc symbol: GLIBC_%s\n' \
        "$(basename "$wheel")" "$(stat -c %s "$wheel")" "$TAG" "$highest"
    rm -rf "$tmp"
}

abi_of() { "$1" -c 'import sys; print("cp%d%d" % sys.version_info[:2])'; }

if [ $# -gt 0 ]; then
    for py in "$@"; do
        build_here "$py"
        check "$(abi_of "$py")" "$py"
    done
    exit 0
fi

py311=$(command -v python3.11)
build_here "$py311"
check cp311 "$py311"
for target in trixie sid sid-3.15; do
    case $target in trixie) py=python3.13 ;; sid) py=python3.14 ;; sid-3.15) py=python3.15 ;; esac
    # Inside the chroot the checkout is /pycds and the interpreter is the release's own.
    bash tests/chroot.sh "$target" bash packaging/build-wheels.sh "/usr/bin/$py"
done
