"""Where the fixed cost of pycds for `python -c pass` goes, step by step, in paired rounds.

    python3 bench/tools/startup_budget.py [--rounds N] [--workload app] [--callgrind] [--work-dir DIR]

Run after `python bench/run.py` (it reuses its work directory: the venvs and the workload's
pycds archive). Each round runs `python -c pass` once per side below, in alternating order,
and the tool prints each side's median wall time, minor page faults, and the medians of the
per-round differences to `plain` and to the side before it. Each side adds one step to the one
before it, so the increments add up to the `empty` figure of the benchmark (`share`):

- `plain`: the plain venv;
- `pth-file`: a copy of the pycds venv whose `00-pycds.pth` holds only a comment: what any
  `.pth` file costs (3.11's `site` reads a venv's `.pth` files twice);
- `idle`: the pycds venv without `PYCDSMODE`: the hook's line compiled and run, nothing loaded;
- `load`: a copy of the pycds venv whose hook loads the extension but does not call
  `boot()`, with `PYCDSMODE=SHARE`: `dlopen` of `cds._cds`, its module init, and the compile
  of the line that loads it;
- `boot`: the pycds venv in SHARE mode with an archive path that does not exist: `boot()`, the
  finder, and the failed open at the first import that reaches it;
- `share`: the pycds venv in SHARE mode with the workload's archive, as the benchmark's
  `empty`: opening and mapping the archive, resolving its externals, and serving the one
  archived module a bare start-up imports (setuptools' `_distutils_hack`, which its `.pth`
  imports) instead of importing it normally.

With `--callgrind`, each side also runs once under `valgrind --tool=callgrind`
(`PYTHONHASHSEED=0`) and its instruction count is printed: unlike wall time, it repeats
exactly, but it does not see page faults, system calls or cache misses.

The copies of the venv are made in a temporary directory under the work directory and removed
at exit.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))
from run import child_env, require, work_dir_option  # noqa: E402  (the benchmark's own choices)

HOOK = "00-pycds.pth"


def site_packages(venv):
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        sys.exit(f"{venv}: expected one site-packages directory, found {found}")
    return found[0]


def venv_copy(src, dest, hook_text):
    """A copy of the venv `src` at `dest` whose start-up hook reads `hook_text`."""
    shutil.copytree(src, dest, symlinks=True)
    (site_packages(dest) / HOOK).write_text(hook_text)
    return dest / "bin" / "python"


def callgrind_instructions(py, env, scratch):
    out = scratch / "callgrind.out"
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(py), "-c", "pass"],
        env=dict(env, PYTHONHASHSEED="0"), capture_output=True, text=True,
    )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    out.unlink(missing_ok=True)
    return int(found.group(1)) if found else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    work_dir_option(ap)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--workload", default="app")
    ap.add_argument("--callgrind", action="store_true", help="also count each side's instructions")
    args = ap.parse_args()
    work = args.work_dir.resolve()
    archive = work / "archives" / f"{args.workload}.pycds.img"
    plain_py, pycds_py = work / "venv-plain/bin/python", work / "venv-pycds/bin/python"
    require(archive, plain_py, pycds_py)
    hook = (site_packages(work / "venv-pycds") / HOOK).read_text()
    if hook.count(".boot()") != 1:
        sys.exit(f"{HOOK} does not call .boot() exactly once: this tool no longer matches the hook")
    env = child_env()
    share = dict(env, PYCDSMODE="SHARE")
    with tempfile.TemporaryDirectory(dir=work, prefix="startup-budget-") as tmp:
        tmp = Path(tmp)
        sides = {
            "plain": (plain_py, env),
            "pth-file": (venv_copy(work / "venv-pycds", tmp / "venv-pth-file", "# nothing\n"), env),
            "idle": (pycds_py, env),
            "load": (venv_copy(work / "venv-pycds", tmp / "venv-load", hook.replace(".boot()", "")), share),
            "boot": (pycds_py, dict(share, PYCDSARCHIVE=str(tmp / "no-such-archive.img"))),
            "share": (pycds_py, dict(share, PYCDSARCHIVE=str(archive))),
        }
        names = list(sides)
        wall = {k: [] for k in names}
        faults = {k: [] for k in names}
        for r in range(args.rounds):
            for k in names if r % 2 == 0 else names[::-1]:
                py, e = sides[k]
                t = time.perf_counter()
                pid = os.posix_spawn(str(py), [str(py), "-c", "pass"], e)
                _, status, usage = os.wait4(pid, 0)
                wall[k].append((time.perf_counter() - t) * 1e3)
                faults[k].append(usage.ru_minflt)
                if status != 0:
                    sys.exit(f"{k}: python -c pass exited with status {status}")
        instructions = {}
        if args.callgrind:
            if shutil.which("valgrind") is None:
                sys.exit("--callgrind needs valgrind")
            instructions = {k: callgrind_instructions(py, e, tmp) for k, (py, e) in sides.items()}
    med = statistics.median
    print(f"python -c pass, {args.workload} archive, {args.rounds} paired rounds "
          "(medians; differences are medians of the per-round differences)")
    head = f"{'side':9} {'wall ms':>8} {'vs plain':>9} {'ratio':>6} {'step':>9} {'faults':>7}"
    if instructions:
        head += f" {'instructions':>13} {'step':>11}"
    print(head)
    for i, k in enumerate(names):
        vs_plain = med([x - y for x, y in zip(wall[k], wall["plain"])])
        ratio = med([x / y for x, y in zip(wall[k], wall["plain"])])
        prev = names[i - 1] if i else None
        step = med([x - y for x, y in zip(wall[k], wall[prev])]) if prev else 0.0
        line = (f"{k:9} {med(wall[k]):8.2f} {vs_plain:+9.3f} {ratio:6.3f} {step:+9.3f} "
                f"{med(faults[k]):7.0f}")
        if instructions:
            n = instructions[k]
            step_n = n - instructions[prev] if prev and n is not None and instructions[prev] is not None else 0
            line += f" {n if n is not None else 'n/a':>13} {step_n:+11d}"
        print(line)


if __name__ == "__main__":
    main()
