#!/usr/bin/env bash
# Runs the test suite against an installed wheel, as a user without a toolchain would have it:
# a fresh venv, the wheel installed by pip (nothing built), and a PATH that holds neither Rust
# nor a C compiler (only the few tools the tests call).
#
#   bash tests/run-wheel.sh dist/pycds-...-cp311-...whl [PYTHON]    # PYTHON: default python3.11
set -euo pipefail
cd "$(dirname "$0")/.."
wheel=${1:?usage: tests/run-wheel.sh WHEEL [PYTHON]}
PY=${2:-${PYTHON:-python3.11}}
VENV=target/wheel-venv-$(basename "$PY")
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: "$wheel"
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
for t in sh bash env cat ls rm mkdir chmod mount umount df find head tail sort grep sed; do
    p=$(command -v "$t" || true)
    [ -n "$p" ] && ln -s "$p" "$tools/$t"
done
for t in cargo rustc gcc cc; do
    if PATH="$(cd "$VENV" && pwd)/bin:$tools" command -v "$t" >/dev/null 2>&1; then
        echo "tests/run-wheel.sh: $t is still on PATH" >&2
        exit 1
    fi
done
echo "== pytest against $(basename "$wheel") in $VENV (no Rust, no C compiler on PATH)"
# From a copy of tests/ outside the checkout: the installed wheel, not the sources, is imported.
suite=$(mktemp -d)
cp -r tests "$suite/"
trap 'rm -rf "$tools" "$suite"' EXIT
PATH="$(cd "$VENV" && pwd)/bin:$tools" "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$suite/tests"
