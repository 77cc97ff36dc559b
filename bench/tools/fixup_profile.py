"""Where pycds's per-module fix-up time goes: traces and dumps an app, then, in fresh processes,
fixes up every archived module without executing any (`Archive.fix_up_stats`) and reports the
time of each phase: checksum (which also takes the first page faults), relocation, structural
validation, and fix-ups (filling interned-string slots, frozensets).

    python bench/tools/fixup_profile.py [APP] [--runs N]     # default: tests/apps/popular.py

Run it with the interpreter (venv) to measure; in a chroot: `bash tests/chroot.sh trixie
.venv-trixie/bin/python bench/tools/fixup_profile.py`. Medians over N processes, in ms.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from app_archive import DEFAULT_APP, plain_env, trace_and_dump

CHILD = r'''
import json, sys, time
from cds import _cds
a = _cds.Archive(sys.argv[1])
n = a.stats()["modules"]
tot = {}
t = time.perf_counter()
for i in range(n):
    for k, v in a.fix_up_stats(i).items():
        tot[k] = tot.get(k, 0) + v
tot["total_ns"] = int((time.perf_counter() - t) * 1e9)
tot["modules"] = n
print(json.dumps(tot))
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("app", nargs="?", default=str(DEFAULT_APP))
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    app = Path(args.app).resolve()
    env = plain_env()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        img = trace_and_dump(app, tmp)
        child = tmp / "child.py"
        child.write_text(CHILD)
        runs = []
        for _ in range(args.runs):
            p = subprocess.run([sys.executable, str(child), str(img)], env=env, check=True,
                               capture_output=True, text=True, cwd=tmp)
            runs.append(json.loads(p.stdout))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    ms = lambda k: med[k] / 1e6
    print(json.dumps(med))
    print(
        f"CPython {sys.version.split()[0]}: {int(med['modules'])} modules, median of {args.runs} processes: "
        f"fix-up {ms('total_ns'):.1f} ms = checksum {ms('verify_ns'):.1f} + relocation {ms('relocate_ns'):.1f} "
        f"+ validation {ms('validate_ns'):.1f} + fix-ups {ms('fixups_ns'):.1f} "
        f"({int(med['intern_fixups'])} interned-string slots, {int(med['frozenset_fixups'])} frozenset) + rest "
        f"{ms('total_ns') - ms('verify_ns') - ms('relocate_ns') - ms('validate_ns') - ms('fixups_ns'):.1f}; "
        f"{int(med['written'])} of {int(med['relocations'])} relocated slots written"
    )


if __name__ == "__main__":
    main()
