"""Two builds of pycds side by side: the one a `bench/run.py` run installed, and a git revision.

    python3 bench/tools/paired_builds.py REV [--rounds 20] [--pairs 300] [--workloads app,stdlib]
                                             [--work-dir DIR]

Run after `python bench/run.py` (it reuses its work directory). The first time for a revision,
it makes `venv-rev-REV` in the work directory: a copy of the pycds venv (same interpreter, same
app requirements) with pycds installed from REV (a temporary `git worktree`), and has that
build trace and dump its own archive of each workload (`lists/W.rev-REV.lst`,
`archives/W.rev-REV.img`), as the benchmark does for the installed build. Then, in alternating
adjacent runs, both builds in SHARE mode:

- each workload, `--rounds` times: the import phase and the peak RSS (`VmHWM`) its harness
  stamps;
- `python -c pass` with each build's `app` archive, `--pairs` times.

It prints each side's medians and the medians of the per-round ratios and differences
(installed / REV): what a change between the two costs or saves, with the machine's noise
shared by both sides. The installed build is what `venv-pycds` holds: rerun `bench/run.py
--reinstall` after changing the code.
"""

import argparse
import ast
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))
from run import WORKLOADS, child_env, require, work_dir_option  # noqa: E402  (the benchmark's own choices)


def build_side(work, rev, workloads):
    """The venv and archives of revision `rev`, made on first use."""
    venv = work / f"venv-rev-{rev}"
    if not (venv / "bin" / "python").exists():
        with tempfile.TemporaryDirectory() as tmp:
            tree = Path(tmp) / "src"
            subprocess.run(["git", "-C", str(BENCH.parent), "worktree", "add", "--detach", str(tree), rev], check=True)
            try:
                shutil.copytree(work / "venv-pycds", venv, symlinks=True)
                subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--force-reinstall",
                                "--no-deps", str(tree)], check=True)
            except BaseException:
                shutil.rmtree(venv, ignore_errors=True)
                raise
            finally:
                subprocess.run(["git", "-C", str(BENCH.parent), "worktree", "remove", "--force", str(tree)], check=False)
    archives = {}
    for w in workloads:
        lst, img = work / "lists" / f"{w}.rev-{rev}.lst", work / "archives" / f"{w}.rev-{rev}.img"
        if not img.exists():
            lst.unlink(missing_ok=True)
            script = WORKLOADS / f"{w}.py"
            subprocess.run([str(venv / "bin" / "python"), str(script)], cwd=script.parent, check=True,
                           stdout=subprocess.DEVNULL, env=child_env({"PYCDSMODE": "TRACE", "PYCDSLIST": str(lst)}))
            subprocess.run([str(venv / "bin" / "python"), "-m", "cds.dump", str(lst), str(img)], check=True,
                           env=child_env())
        archives[w] = img
    return venv / "bin" / "python", archives


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    work_dir_option(ap)
    ap.add_argument("rev", help="the git revision to compare the installed build with")
    ap.add_argument("--rounds", type=int, default=20, help="runs of each workload per side")
    ap.add_argument("--pairs", type=int, default=300, help="python -c pass runs per side")
    ap.add_argument("--workloads", default="app,stdlib")
    args = ap.parse_args()
    work = args.work_dir.resolve()
    workloads = args.workloads.split(",")
    rev = subprocess.run(["git", "-C", str(BENCH.parent), "rev-parse", "--short=12", args.rev],
                         check=True, capture_output=True, text=True).stdout.strip()
    installed = {w: work / "archives" / f"{w}.pycds.img" for w in set(workloads) | {"app"}}
    require(work / "venv-pycds" / "bin" / "python", *installed.values())
    old_py, old_archives = build_side(work, rev, sorted(set(workloads) | {"app"}))
    sides = {"installed": (work / "venv-pycds" / "bin" / "python", installed), rev: (old_py, old_archives)}
    med = statistics.median

    def report(what, res, unit):
        a, b = res["installed"], res[rev]
        ratios = [x / y for x, y in zip(a, b)]
        diffs = [x - y for x, y in zip(a, b)]
        print(f"{what}: installed {med(a):.2f} {unit}, {rev} {med(b):.2f} {unit}; per round installed / {rev} "
              f"{med(ratios):.4f}, difference {med(diffs):+.3f} {unit}")

    with tempfile.TemporaryDirectory() as tmp:
        stamps = Path(tmp) / "stamps"
        for w in workloads:
            script = WORKLOADS / f"{w}.py"
            phase, hwm = {s: [] for s in sides}, {s: [] for s in sides}
            for r in range(args.rounds):
                for side in list(sides) if r % 2 == 0 else list(sides)[::-1]:
                    py, archives = sides[side]
                    env = child_env({"PYCDSMODE": "SHARE", "PYCDSARCHIVE": str(archives[w]),
                                     "BENCH_TIMING_FILE": str(stamps)})
                    subprocess.run([str(py), str(script)], cwd=script.parent, env=env, check=True,
                                   stdout=subprocess.DEVNULL)
                    d = ast.literal_eval(stamps.read_text())
                    phase[side].append((d["imp1"] - d["imp0"]) * 1e3)
                    hwm[side].append(d["hwm_kb"] / 1024)
            report(f"{w} import phase, {args.rounds} rounds", phase, "ms")
            report(f"{w} peak RSS", hwm, "MiB")
        wall = {s: [] for s in sides}
        for r in range(args.pairs):
            for side in list(sides) if r % 2 == 0 else list(sides)[::-1]:
                py, archives = sides[side]
                env = child_env({"PYCDSMODE": "SHARE", "PYCDSARCHIVE": str(archives["app"])})
                t0 = time.perf_counter()
                subprocess.run([str(py), "-c", "pass"], env=env, check=True)
                wall[side].append((time.perf_counter() - t0) * 1e3)
        report(f"python -c pass with the app archive, {args.pairs} pairs", wall, "ms")


if __name__ == "__main__":
    main()
