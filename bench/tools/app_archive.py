"""Shared by the diagnostic tools in this directory: the default app, and a fresh archive of an
app made by tracing it once and dumping its list, with the running interpreter."""

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
