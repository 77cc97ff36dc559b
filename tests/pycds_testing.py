"""Shared helpers (imported by conftest.py and the tests): every test runs real interpreters in subprocesses, with real environment
variables, the installed ``pycds.pth``, and real archives on disk. A normal run of the same
program in a separate process is the oracle."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PYTHON = sys.executable


def base_env(**extra):
    """The test process's environment without any PYCDS* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYCDS")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(args, *, cwd=None, env=None, timeout=180, check=True):
    """Run ``python *args``; returns the CompletedProcess (text mode)."""
    proc = subprocess.run(
        [PYTHON, *args],
        cwd=cwd,
        env=env if env is not None else base_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"python {' '.join(map(str, args))} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def layout_facts(env=None):
    """``_cds.layout_facts()`` of the installed extension, read in a subprocess."""
    import json

    code = "import json; from cds import _cds; print(json.dumps(_cds.layout_facts()))"
    return json.loads(run(["-c", code], env=env).stdout)


class Project:
    """A directory of source files plus the trace/dump/share steps on it."""

    def __init__(self, root: Path):
        self.root = root
        self.list = root / "mod.lst"
        self.archive = root / "mod.img"

    def write(self, relpath, text):
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def env(self, mode=None, **extra):
        e = base_env(**extra)
        if mode == "TRACE":
            e.update(PYCDSMODE="TRACE", PYCDSLIST=str(self.list))
        elif mode == "SHARE":
            e.update(PYCDSMODE="SHARE", PYCDSARCHIVE=str(self.archive))
        elif mode == "AUTO":
            e.update(PYCDSMODE="AUTO")
        return e

    def plain(self, *args, **extra):
        return run(args, cwd=self.root, env=self.env(None, **extra))

    def trace(self, *args, **extra):
        return run(args, cwd=self.root, env=self.env("TRACE", **extra))

    def dump(self):
        return run(["-m", "cds.dump", str(self.list), str(self.archive)], cwd=self.root)

    def share(self, *args, check=True, **extra):
        return run(args, cwd=self.root, env=self.env("SHARE", **extra), check=check)

    def build(self, *args, **extra):
        """Trace ``args`` then dump the list into the archive."""
        self.trace(*args, **extra)
        self.dump()

    def info(self, *args, mode="SHARE", **extra):
        """Run ``args`` (a script path) in ``mode`` and return ``cds.info()`` at exit."""
        probe = self.root / "_info_probe.py"
        probe.write_text(
            "import atexit, json, sys, runpy\n"
            "def _dump():\n"
            "    import cds\n"
            "    sys.__stderr__.write('CDSINFO' + json.dumps(cds.info()) + '\\n')\n"
            "atexit.register(_dump)\n"
            "import os\n"
            "sys.argv = sys.argv[1:]\n"
            "script = os.path.abspath(sys.argv[0])\n"
            "sys.path[0] = os.path.dirname(script)  # as if the script had been run directly\n"
            "runpy.run_path(script, run_name='__main__')\n"
        )
        proc = run([str(probe), *args], cwd=self.root, env=self.env(mode, **extra))
        import json

        line = [ln for ln in proc.stderr.splitlines() if ln.startswith("CDSINFO")][-1]
        return json.loads(line[len("CDSINFO"):]), proc


# A sitecustomize.py that reports, at exit, the source modules the process holds (one entry per
# module object: packages such as requests alias modules under second names in sys.modules)
# and cds.info(); read back by `source_modules_and_info`.
SOURCE_MODULES_PROBE = r'''
import atexit, json, sys
from importlib.machinery import SourceFileLoader
def report():
    import cds
    unique = {id(m): m for n, m in list(sys.modules.items()) if n != "__main__"}
    source = sorted(m.__spec__.name for m in unique.values()
                    if isinstance(getattr(getattr(m, "__spec__", None), "loader", None), SourceFileLoader))
    sys.__stderr__.write("COUNT" + json.dumps({"source": source, "info": cds.info()}) + "\n")
atexit.register(report)
'''


def source_modules_and_info(stderr):
    """What `SOURCE_MODULES_PROBE` reported: the source modules' names (without pycds's own and
    the probe) and `cds.info()`."""
    import json

    data = json.loads([ln for ln in stderr.splitlines() if ln.startswith("COUNT")][-1][len("COUNT"):])
    source = [n for n in data["source"] if not n.startswith("cds") and n != "sitecustomize"]
    return source, data["info"]


def rewrite_header(archive: Path, mutate):
    """Apply ``mutate(bytearray)`` to an archive and recompute its header checksum, the way a
    different but well-formed producer would (see docs/format.md)."""
    from archive_tools import Archive

    a = Archive(bytearray(archive.read_bytes()))
    mutate(a.b)
    a.fix_header_crc()
    b = a.b
    archive.write_bytes(bytes(b))
