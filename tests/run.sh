#!/usr/bin/env bash
# Runs every test: the archive crate's cargo tests, then the Python suite (pytest, real
# subprocesses) against pycds built once and installed into a virtual environment.
#   bash tests/run.sh            # everything
#   bash tests/run.sh -k safety  # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
VENV=${PYCDS_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r tests/requirements.txt
echo "== building and installing pycds into $VENV"
"$VENV/bin/python" -m pip install -q --force-reinstall --no-deps .
echo "== lints: cargo fmt --check, clippy -D warnings"
cargo fmt --all --check
PYO3_PYTHON="$(command -v "$PY")" cargo clippy -q --workspace --all-targets -- -D warnings
echo "== cargo tests (archive format crate)"
cargo test -q -p cds-archive
echo "== pytest"
"$VENV/bin/python" -m pytest -q tests "$@"
