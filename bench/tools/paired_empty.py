"""The fixed cost of pycds for `python -c pass`, in paired rounds.

    python bench/tools/paired_empty.py [--rounds N] [--workload app]

Run after `python bench/run.py` (it reuses its work directory, bench/.work on 3.11: the venvs
and the workload's pycds archive). Each round runs `python -c pass` three times, in alternating order:

- `plain`: the plain venv;
- `idle`: the pycds venv without `PYCDSMODE` (what the `.pth` start-up hook costs by itself);
- `share`: the pycds venv in SHARE mode with the workload's archive, as the benchmark's `empty`.

It prints the median wall time of each and the medians of the per-round ratios and differences
to `plain`. Adjacent runs share the machine's state, so per-round ratios are steadier than the
ratio of two medians from separate runs.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))
from run import DEFAULT_WORK_DIR as WORK, child_env  # noqa: E402  (the benchmark's own choices)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--workload", default="app")
    args = ap.parse_args()
    archive = WORK / "archives" / f"{args.workload}.pycds.img"
    plain_py, pycds_py = WORK / "venv-plain/bin/python", WORK / "venv-pycds/bin/python"
    for p in (archive, plain_py, pycds_py):
        if not p.exists():
            sys.exit(f"{p} is missing: run `python bench/run.py` first")
    env = child_env()
    sides = {
        "plain": (plain_py, env),
        "idle": (pycds_py, env),
        "share": (pycds_py, dict(env, PYCDSMODE="SHARE", PYCDSARCHIVE=str(archive))),
    }
    res = {k: [] for k in sides}
    names = list(sides)
    for r in range(args.rounds):
        for k in names if r % 2 == 0 else names[::-1]:
            py, e = sides[k]
            t = time.perf_counter()
            pid = os.posix_spawn(str(py), [str(py), "-c", "pass"], e)
            _, status = os.waitpid(pid, 0)
            res[k].append((time.perf_counter() - t) * 1e3)
            if status != 0:
                sys.exit(f"{k}: python -c pass exited with status {status}")
    med = statistics.median
    print(f"python -c pass, {args.workload} archive, {args.rounds} rounds (ms, median): "
          + ", ".join(f"{k} {med(v):.2f}" for k, v in res.items()))
    for k in ("idle", "share"):
        ratios = [x / y for x, y in zip(res[k], res["plain"])]
        diffs = [x - y for x, y in zip(res[k], res["plain"])]
        print(f"  {k} / plain: ratio {med(ratios):.3f}, difference {med(diffs):+.2f} ms")


if __name__ == "__main__":
    main()
