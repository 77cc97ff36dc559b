"""What pycds's run-ahead thread spends on modules a lazy run never imports.

    python bench/tools/lazy_run_ahead.py [--runs N] [--work-dir DIR] [--archives DIR]

Run after `python bench/run.py` on CPython 3.15+ (it reuses its work directory: the pycds venv
and the `app` and `stdlib` archives, traced from eager runs). Each workload runs N times under
SHARE, eagerly and with `-X lazy_imports=all`, alternating. At exit each process reports the
run-ahead thread's account (`_cds.serve_log()`): the modules an import found prepared and the
time their preparation took on that thread (work taken off the importing thread), and the
modules it prepared that the program never imported, with the time spent on them (wasted).
The medians are printed as a table. `--archives DIR` takes `app.pycds.img` and
`stdlib.pycds.img` from DIR instead (say, archives traced with lazy imports on).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))
from run import LAZY_FLAG, WORKLOADS, child_env, require, work_dir_option  # noqa: E402

# Runs the workload as __main__ and reports the serve log at exit (atexit handlers run last
# registered first, so this one runs after the workload's own).
WRAPPER = r'''
import atexit, json, os, runpy, sys
def report():
    log = sys.modules["cds._cds"].serve_log()
    keys = ("prepared_ahead", "prepared_ahead_ns", "prepared_unused", "prepared_unused_ns")
    sys.__stderr__.write("RUNAHEAD" + json.dumps({"served": len(log["served"]), **{k: log[k] for k in keys}}) + "\n")
atexit.register(report)
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(script)
runpy.run_path(script, run_name="__main__")
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    work_dir_option(ap)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--archives", type=Path, help="where the archives are (default: the work directory's)")
    args = ap.parse_args()
    if sys.version_info < (3, 15):
        sys.exit("lazy imports need CPython 3.15 or later")
    work = args.work_dir.resolve()
    py = work / "venv-pycds" / "bin" / "python"
    require(py)
    with tempfile.TemporaryDirectory() as tmp:
        wrapper = Path(tmp) / "wrapper.py"
        wrapper.write_text(WRAPPER)
        rows = {}
        for wl in ("app", "stdlib"):
            img = (args.archives or work / "archives") / f"{wl}.pycds.img"
            require(img)
            env = child_env({"PYCDSMODE": "SHARE", "PYCDSARCHIVE": str(img)})
            for _ in range(args.runs):
                for mode, flag in (("eager", ()), ("lazy", LAZY_FLAG)):
                    p = subprocess.run([str(py), *flag, str(wrapper), str(WORKLOADS / f"{wl}.py")], env=env,
                                       cwd=WORKLOADS, capture_output=True, text=True, check=True)
                    line = [x for x in p.stderr.splitlines() if x.startswith("RUNAHEAD")][-1]
                    rows.setdefault((wl, mode), []).append(json.loads(line[len("RUNAHEAD"):]))
    where = args.archives or "the eager traces of bench/run.py"
    print(f"medians of {args.runs} runs each (CPython {sys.version.split()[0]}, archives from {where})")
    print()
    print("| workload | imports | served | found prepared | their preparation (ms) "
          "| prepared, never imported | time spent on them (ms) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (wl, mode), recs in rows.items():
        med = {k: statistics.median(r[k] for r in recs) for k in recs[0]}
        print(f"| {wl} | {mode} | {med['served']:.0f} | {med['prepared_ahead']:.0f} | "
              f"{med['prepared_ahead_ns'] / 1e6:.1f} | {med['prepared_unused']:.0f} | "
              f"{med['prepared_unused_ns'] / 1e6:.1f} |")


if __name__ == "__main__":
    main()
