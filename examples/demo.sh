#!/usr/bin/env bash
# The README's first command: install pycds into .venv, then trace, dump and run the bundled
# example app from the archive, and time it against a plain run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
VENV=${PYCDS_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "== installing pycds (builds the Rust extension; about a minute the first time)"
"$VENV/bin/python" -m pip install -q .
P="$(cd "$VENV" && pwd)/bin/python"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd examples/demo
echo "== 1. trace: record what app.py imports"
"$P" -m cds trace -o "$WORK/mod.lst" -- app.py
echo "== 2. dump: write the archive"
"$P" -m cds dump "$WORK/mod.lst" "$WORK/mod.img"
echo "== 3. run from the archive"
"$P" -m cds run --archive "$WORK/mod.img" -v -- app.py
echo "== 4. time: 20 interleaved runs each (plain, archive)"
"$P" - "$WORK/mod.img" <<'PYEOF'
import os, statistics, subprocess, sys, time
archive = sys.argv[1]
plain_env = {k: v for k, v in os.environ.items() if not k.startswith("PYCDS")}
share_env = dict(plain_env, PYCDSMODE="SHARE", PYCDSARCHIVE=archive)
times = {"plain": [], "archive": []}
for _ in range(20):
    for side, env in (("plain", plain_env), ("archive", share_env)):
        t = time.perf_counter()
        subprocess.run([sys.executable, "app.py"], env=env, stdout=subprocess.DEVNULL, check=True)
        times[side].append(time.perf_counter() - t)
p, a = statistics.median(times["plain"]), statistics.median(times["archive"])
print(f"plain CPython: {p * 1000:.1f} ms   from the archive: {a * 1000:.1f} ms   ({p / a:.2f}x)")
PYEOF
