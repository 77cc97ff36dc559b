"""Shared by the diagnostic tools in this directory: the default app, a fresh archive of an app
made by tracing it once and dumping its list, with the running interpreter, and a run of the app
that reports on the process at its exit."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_APP = ROOT / "tests" / "apps" / "popular.py"


def plain_env():
    """This environment without PYCDS* variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYCDS")}


def trace_and_dump(app, workdir):
    """Traces `app` into workdir/mod.lst and dumps it to workdir/mod.img; returns the archive."""
    env = plain_env()
    lst, img = Path(workdir) / "mod.lst", Path(workdir) / "mod.img"
    subprocess.run([sys.executable, str(app)], env=dict(env, PYCDSMODE="TRACE", PYCDSLIST=str(lst)),
                   check=True, capture_output=True, cwd=workdir)
    subprocess.run([sys.executable, "-m", "cds.dump", str(lst), str(img)], env=env, check=True,
                   capture_output=True, cwd=workdir)
    return img


# Runs the app as if it had been run directly (`sys.argv`, `sys.path[0]`), with `_report()`
# registered to run at exit.
_RUN_APP = r"""
atexit.register(_report)
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_and_report(report, tag, app, workdir, env):
    """Runs `app` in a fresh interpreter with `env`, in `workdir`, under a probe made of `report`
    (source that imports what it needs and defines `_report()`, which writes `tag` and a JSON
    document as one line to `sys.__stderr__`); returns that document. Exits with the app's error
    output if it fails."""
    probe = Path(workdir) / f"probe_{tag.lower()}.py"
    probe.write_text("import atexit, os, runpy, sys\n" + report + _RUN_APP)
    p = subprocess.run([sys.executable, str(probe), str(app)], env=env, capture_output=True, text=True,
                       cwd=workdir)
    if p.returncode != 0:
        mode = env.get("PYCDSMODE", "without pycds")
        sys.exit(f"the run of {app} ({mode}) failed ({p.returncode}):\n{p.stderr[-2000:]}")
    line = [x for x in p.stderr.splitlines() if x.startswith(tag)][-1]
    return json.loads(line[len(tag):])
