"""Where pycds's import phase stands against the exec-only floor, in paired rounds.

    python bench/tools/paired_imports.py [--rounds N] [--workload app|stdlib|scale-N] [--work-dir DIR]

Run after `python bench/run.py` (it reuses its work directory, bench/.work on 3.11: the venvs,
the workload's module list and its pycds archive). Each round runs, in alternating order, three processes of the workload:

- `floor`: the plain venv with every code object preloaded (bench/tools/floor.py);
- `prefixed`: the pycds venv in SHARE mode, with every archived module fixed up before the
  workload starts (untimed), so its import phase pays for serving (finder, freshness check,
  spec and loader) but not for the fix-up;
- `pycds`: the pycds venv in SHARE mode, as in the benchmark.

It prints the median import phase of each and the medians of the per-round ratios and
differences: `prefixed / floor` is the cost of serving, `pycds / prefixed` the cost of the
per-module fix-up (mapping pages, checksum, relocation, validation, interning). On a noisy
machine, per-round ratios from adjacent runs are steadier than ratios of separate medians.
"""

import argparse
import ast
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))
from run import child_env, require, work_dir_option  # noqa: E402  (the benchmark's own choices)

# Run by the pycds venv's interpreter in SHARE mode: fixes up every archived module, then runs
# the workload as __main__ (its harness stamps the import phase).
PREFIX = r'''
import gc, os, runpy, sys
finder = next(f for f in sys.meta_path if type(f).__name__ == "ArchiveFinder")
archive = finder.archive
for i in range(archive.stats()["modules"]):
    try:
        archive.load(i)
    except Exception:
        pass
gc.collect()
gc.freeze()
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(script)
runpy.run_path(script, run_name="__main__")
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    work_dir_option(ap)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--workload", default="app")
    args = ap.parse_args()
    work = args.work_dir.resolve()
    if args.workload.startswith("scale-"):  # the generated package of bench/run.py
        script = work / "scale" / f"n{args.workload[len('scale-'):]}" / "entry.py"
    else:
        script = BENCH / "workloads" / f"{args.workload}.py"
    modlist = work / "lists" / f"{args.workload}.modules"
    archive = work / "archives" / f"{args.workload}.pycds.img"
    require(script, modlist, archive)
    env = child_env()
    share = {"PYCDSMODE": "SHARE", "PYCDSARCHIVE": str(archive)}
    plain_py, pycds_py = work / "venv-plain/bin/python", work / "venv-pycds/bin/python"
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "prefixed.py"
        prefix.write_text(PREFIX)
        sides = {
            "floor": ([plain_py, BENCH / "tools" / "floor.py", modlist, script], {}),
            "prefixed": ([pycds_py, prefix, script], share),
            "pycds": ([pycds_py, script], share),
        }
        stamps = Path(tmp) / "stamps"

        def run(side):
            argv, extra = sides[side]
            subprocess.run([str(a) for a in argv], env=dict(env, BENCH_TIMING_FILE=str(stamps), **extra),
                           cwd=script.parent, stdout=subprocess.DEVNULL, check=True)
            d = ast.literal_eval(stamps.read_text())
            return (d["imp1"] - d["imp0"]) * 1e3

        names = list(sides)
        res = {k: [] for k in names}
        for r in range(args.rounds):
            for k in names if r % 2 == 0 else names[::-1]:
                res[k].append(run(k))
    med = statistics.median
    print(f"{args.workload}, {args.rounds} rounds, import phase (ms, median): "
          + ", ".join(f"{k} {med(v):.1f}" for k, v in res.items()))
    for a, b in (("prefixed", "floor"), ("pycds", "prefixed"), ("pycds", "floor")):
        ratios = [x / y for x, y in zip(res[a], res[b])]
        diffs = [x - y for x, y in zip(res[a], res[b])]
        print(f"  {a} / {b}: ratio {med(ratios):.3f}, difference {med(diffs):+.1f} ms")


if __name__ == "__main__":
    main()
