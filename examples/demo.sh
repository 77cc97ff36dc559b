#!/usr/bin/env bash
# The README's first command: install pycds into .venv, run the bundled example app in AUTO
# mode (the first run records its imports and writes the archive, later runs are served), and
# time it against plain runs. The archive goes to a temporary cache, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
VENV=${PYCDS_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "== installing pycds (builds the Rust extension; about a minute the first time)"
"$VENV/bin/python" -m pip install -q .
P="$(cd "$VENV" && pwd)/bin/python"
export PYCDS_CACHE_DIR
PYCDS_CACHE_DIR=$(mktemp -d)/cache
trap 'rm -rf "$(dirname "$PYCDS_CACHE_DIR")"' EXIT
cd examples/demo
echo "== 1. first run in AUTO mode, returning once the archive is written (python -m cds warm)"
"$P" -m cds warm -- app.py
echo "== 2. the next run is served from the archive (python -m cds run -v)"
"$P" -m cds run -v -- app.py
"$P" -m cds cache list
echo "== 3. time: 20 interleaved runs each (plain, AUTO)"
"$P" - <<'PYEOF'
import os, statistics, subprocess, sys, time
plain_env = {k: v for k, v in os.environ.items() if not k.startswith("PYCDS")}
auto_env = dict(plain_env, PYCDSMODE="AUTO", PYCDS_CACHE_DIR=os.environ["PYCDS_CACHE_DIR"])
times = {"plain": [], "auto": []}
for _ in range(20):
    for side, env in (("plain", plain_env), ("auto", auto_env)):
        t = time.perf_counter()
        subprocess.run([sys.executable, "app.py"], env=env, stdout=subprocess.DEVNULL, check=True)
        times[side].append(time.perf_counter() - t)
p, a = statistics.median(times["plain"]), statistics.median(times["auto"])
print(f"plain CPython: {p * 1000:.1f} ms   AUTO: {a * 1000:.1f} ms   ({p / a:.2f}x)")
PYEOF
