#!/usr/bin/env python3
"""pycds benchmark suite: plain CPython vs the seed (code-data-share 0.1.0) vs pycds.

    python bench/run.py [--quick] [--rounds N]
    bash tests/chroot.sh trixie python3.13 bench/run.py [--quick]     # CPython 3.13
    bash tests/chroot.sh sid python3.14 bench/run.py [--quick]        # CPython 3.14
    bash tests/chroot.sh sid-3.15 python3.15 bench/run.py [--quick]   # CPython 3.15 (+ lazy imports)

Run it with the CPython interpreter to be measured (3.11, 3.13, 3.14 or 3.15). It builds (or reuses)
venvs under the work directory (bench/.work/ for 3.11, bench/.work-X.Y/ for any other version),
traces and dumps every workload for the seed and for pycds, then measures whole processes
interleaved (plain, seed, pycds, plain, seed, pycds, ...) and reports medians and ratios to
plain CPython from the same run in the results directory (bench/results/ for 3.11,
bench/results/cpython-X.Y/ otherwise). The seed is installed only from a published wheel; where
there is none for the interpreter (3.13+), the seed side is reported as n/a and not
measured. See bench/README.md.
"""

import argparse
import ast
import datetime
import hashlib
import importlib.util
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
WORKLOADS = BENCH / "workloads"
TOOLS = BENCH / "tools"
SEED_PROJECT, SEED_VERSION = "code-data-share", "0.1.0"
SEED_REQUIREMENT = f"{SEED_PROJECT}=={SEED_VERSION}"
# The seed is a C extension built per interpreter: only its published wheels are used (pip is
# never allowed to build its sdist against an interpreter it was not released for).
SEED_PIP_OPTIONS = (f"--only-binary={SEED_PROJECT}",)
MATPLOTLIB_REQUIREMENT = "matplotlib==3.11.2"
# Plots are optional: never build matplotlib (or numpy, ...) from source.
TOOLS_PIP_OPTIONS = ("--only-binary=:all:",)
PY_VERSION = "%d.%d" % sys.version_info[:2]
# CPython 3.11 keeps the historical locations; any other interpreter gets its own, so results
# and venvs of different interpreters never mix or overwrite each other.
if sys.version_info[:2] == (3, 11):
    DEFAULT_WORK_DIR, DEFAULT_RESULTS_DIR = BENCH / ".work", BENCH / "results"
else:
    DEFAULT_WORK_DIR = BENCH / f".work-{PY_VERSION}"
    DEFAULT_RESULTS_DIR = BENCH / "results" / f"cpython-{PY_VERSION}"
SIDES = ("plain", "seed", "pycds")
MODE_SIDES = ("seed", "pycds")
# CPython 3.15+ (PEP 810): `app` and `stdlib` also run with every import lazy, plainly and from
# pycds's archive (the one traced from the eager run), interleaved with the other sides.
LAZY_FLAG = ("-X", "lazy_imports=all")
# AUTO (PYCDSMODE=AUTO) on `app` and `stdlib`: one cache for both, as in one environment.
AUTO_WORKLOADS = ("app", "stdlib")
LAZY_SIDES = ("plain-lazy", "pycds-lazy") if sys.version_info >= (3, 15) else ()
RUN_TIMEOUT = 300.0
# The `python -c pass` series (workloads `empty`, `empty-inactive`, `empty-scale-N`) are measured
# in adjacent pairs: each round runs them this many times.
EMPTY_REPEATS = 10


def paired_empty(workload):
    return workload.startswith("empty")


def empty_cases(workloads):
    """The `python -c pass` cases of a run: (series workload, label in results.md, short label)."""
    return [("empty", "SHARE mode with the app's archive", "SHARE"),
            ("empty-inactive", "package installed, PYCDSMODE unset", "inactive")] + [
        (f"empty-{w}", f"SHARE mode with the {w} archive", w) for w in workloads if w.startswith("scale-")]


def work_dir_option(ap):
    """Adds the tools' `--work-dir`: the work directory of the `bench/run.py` run whose venvs,
    lists and archives a tool reuses (by default this interpreter's, as `bench/run.py` picks it;
    Debian's 3.11 shares its version with 3.11.7, so its runs name their own)."""
    ap.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR,
                    help=f"the bench/run.py work directory to reuse (default: {DEFAULT_WORK_DIR})")


def require(*paths):
    """Exits with a message unless every path (of a previous `bench/run.py`) exists: for the tools."""
    for p in paths:
        if not p.exists():
            sys.exit(f"{p} is missing: run `python bench/run.py` first")

# ---------------------------------------------------------------------------------------------
# small helpers


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sha256_text(text):
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def tail(text, lines=6, width=400):
    text = (text or "").strip()
    out = "\n".join(text.splitlines()[-lines:])
    return out[-width:]


def child_env(extra=None):
    """The environment of every measured process: ours without PYTHON*/PYCDS* variables (in
    particular without PYTHONDONTWRITEBYTECODE, so the plain side reads and writes .pyc files as
    a normal installation does) and without VIRTUAL_ENV; the venv is chosen by the interpreter
    path."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "PYCDS", "BENCH_")) and k not in ("VIRTUAL_ENV",)
    }
    if extra:
        env.update(extra)
    return env


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


class Proc:
    """The result of one measured child process."""

    __slots__ = ("rc", "wall", "utime", "stime", "maxrss_kb", "stdout", "stderr", "stamps",
                 "t_spawn", "t_reaped")

    def as_dict(self):
        d = {k: getattr(self, k) for k in self.__slots__ if k not in ("stdout", "stderr")}
        d["cpu"] = self.utime + self.stime
        return d


def run_measured(argv, env, cwd, scratch, timeout=RUN_TIMEOUT, timing=True):
    """Run one child to completion and measure it as a whole: wall time from just before the
    spawn to the return of wait4 (CLOCK_MONOTONIC), CPU time and peak RSS from the child's own
    rusage. stdout/stderr go to files (no pipe for the parent to service). With ``timing`` the
    child gets BENCH_TIMING_FILE and its harness stamps are read back."""
    out_path, err_path, timing_path = scratch / "stdout", scratch / "stderr", scratch / "timing"
    for p in (out_path, err_path, timing_path):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
    env = dict(env)
    if timing:
        env["BENCH_TIMING_FILE"] = str(timing_path)
    res = Proc()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        res.t_spawn = time.monotonic()
        child = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=err, start_new_session=True)
        old = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            _, status, ru = os.wait4(child.pid, 0)
            res.t_reaped = time.monotonic()
        except _Timeout:
            os.killpg(child.pid, signal.SIGKILL)
            _, status, ru = os.wait4(child.pid, 0)
            res.t_reaped = time.monotonic()
            status = -1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    res.rc = os.waitstatus_to_exitcode(status) if status != -1 else "timeout"
    child.returncode = res.rc if isinstance(res.rc, int) else -9
    res.wall = res.t_reaped - res.t_spawn
    res.utime, res.stime, res.maxrss_kb = ru.ru_utime, ru.ru_stime, ru.ru_maxrss
    res.stdout = out_path.read_text(errors="replace")
    res.stderr = err_path.read_text(errors="replace")
    res.stamps = None
    if timing:
        try:
            res.stamps = ast.literal_eval(timing_path.read_text())
        except (OSError, ValueError, SyntaxError):
            res.stamps = None
    return res


def wait_for_auto_writer(cache, timeout=120):
    """Waits until AUTO's detached writer (if the run started one) has taken every record the
    run left (`*.new*`) and let go of its lock in `cache`."""
    import fcntl

    deadline = time.monotonic() + timeout
    while list(cache.glob("*.new*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    for lock in cache.glob("*.lock"):
        with open(lock) as f:
            fcntl.flock(f, fcntl.LOCK_EX)


def phases(proc):
    """Split a run into start-up / import phase / work / teardown (seconds) from the stamps."""
    s = proc.stamps
    if not s or "main" not in s:
        return None
    return {
        "startup": s["main"] - proc.t_spawn,
        "imports": s["imp1"] - s["imp0"],
        "work": s["work1"] - s["imp1"],
        "teardown": proc.t_reaped - s["atexit"],
    }


def quartiles(xs):
    xs = sorted(xs)
    if not xs:
        return None
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def pyc_size(origin):
    try:
        return os.stat(importlib.util.cache_from_source(origin)).st_size
    except (OSError, ValueError, NotImplementedError):
        return None


# ---------------------------------------------------------------------------------------------
# venvs


class PipError(RuntimeError):
    def __init__(self, returncode, output):
        super().__init__(f"pip failed ({returncode}):\n{tail(output, 30, 4000)}")
        self.output = output or ""


def seed_pip_failure(exc):
    """Why the seed cannot be installed, from pip's failure."""
    out = exc.output.lower()
    if (f"no matching distribution found for {SEED_PROJECT}" in out
            or f"could not find a version that satisfies the requirement {SEED_PROJECT}" in out):
        return f"{SEED_PROJECT} {SEED_VERSION} has no build for CPython {PY_VERSION}"
    return (f"{SEED_PROJECT} {SEED_VERSION} could not be installed for CPython {PY_VERSION}: "
            f"{tail(exc.output, 2, 200)}")


class Venvs:
    def __init__(self, work, pycds_src, reinstall):
        self.work = work
        self.pycds_src = pycds_src
        self.reinstall = reinstall
        self.python = {}
        self.setup_seconds = {}
        self.unavailable = {}  # side -> why it cannot be installed for this interpreter
        self.notes = []

    @staticmethod
    def _pip_env():
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "PYCDS")) and k != "VIRTUAL_ENV"}
        return env

    def _pip(self, py, *args, verb="install"):
        cmd = [str(py), "-m", "pip", verb, "--disable-pip-version-check", *args]
        log("  " + " ".join(shlex.quote(c) for c in cmd))
        r = subprocess.run(cmd, env=self._pip_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise PipError(r.returncode, r.stdout)
        return r.stdout

    def pycds_fingerprint(self):
        """Hash of the pycds sources, so an edited checkout is reinstalled."""
        src = self.pycds_src
        h = hashlib.sha256()
        roots = [src / "crates", src / "python"]
        files = [src / n for n in ("pyproject.toml", "Cargo.toml", "Cargo.lock")]
        for root in roots:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if d not in ("target", "__pycache__"))
                files.extend(Path(dirpath) / f for f in sorted(filenames)
                             if not f.endswith((".pyc", ".so")))
        for f in files:
            try:
                h.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes() + b"\0")
            except OSError:
                pass
        return h.hexdigest()

    def ensure(self, name, installs, fingerprint, pip_options=()):
        """Create (or reuse) venv-NAME with each group of ``installs`` pip-installed in turn.
        ``pip_options`` are added to every install but are not part of the stamp: they only
        restrict how the same packages may be obtained (e.g. wheels only)."""
        path = self.work / f"venv-{name}"
        py = path / "bin" / "python"
        stamp = path / ".bench-stamp"
        want = json.dumps({"python": sys.version, "installs": installs, "fp": fingerprint})
        if py.exists() and stamp.exists() and stamp.read_text() == want and not (
                self.reinstall and name == "pycds"):
            self.python[name] = py
            return py
        started = time.monotonic()
        if py.exists() and stamp.exists() and name == "pycds":
            old = json.loads(stamp.read_text())
            if old.get("python") == sys.version and old.get("installs") == installs:
                log(f"venv {name}: pycds sources changed, reinstalling pycds")
                self._pip(py, "--force-reinstall", "--no-deps", str(self.pycds_src))
                stamp.write_text(want)
                self.python[name] = py
                self.setup_seconds[name] = time.monotonic() - started
                return py
        log(f"venv {name}: creating {path}")
        if path.exists():
            shutil.rmtree(path)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, env=self._pip_env())
        for group in installs:
            self._pip(py, *pip_options, *group)
        stamp.write_text(want)
        self.python[name] = py
        self.setup_seconds[name] = time.monotonic() - started
        return py

    def _stamp_valid(self, name, installs, fingerprint):
        path = self.work / f"venv-{name}"
        stamp = path / ".bench-stamp"
        want = json.dumps({"python": sys.version, "installs": installs, "fp": fingerprint})
        return (path / "bin" / "python").exists() and stamp.exists() and stamp.read_text() == want

    def seed_unavailable(self, installs, fingerprint):
        """None if the seed can be installed for this interpreter, else why not. A seed venv
        already built for this interpreter answers at once; otherwise pip is asked (with the
        plain venv's pip, same interpreter and wheel tags) to download the seed's wheel, which
        fails in seconds where there is none, before a seed venv is built for nothing."""
        if self._stamp_valid("seed", installs, fingerprint):
            return None
        dest = self.work / "tmp" / "seed-probe"
        shutil.rmtree(dest, ignore_errors=True)
        try:
            self._pip(self.python["plain"], "--no-deps", *SEED_PIP_OPTIONS, "--dest", str(dest),
                      SEED_REQUIREMENT, verb="download")
        except PipError as exc:
            return seed_pip_failure(exc)
        finally:
            shutil.rmtree(dest, ignore_errors=True)
        return None

    def setup(self, with_tools):
        req = str(BENCH / "requirements-app.txt")
        req_text = (BENCH / "requirements-app.txt").read_text()
        base = [["-r", req]]
        fp_app = sha256_text(req_text)
        self.ensure("plain", base, fp_app)
        seed_installs = base + [[SEED_REQUIREMENT]]
        why = self.seed_unavailable(seed_installs, fp_app)
        if why is None:
            try:
                self.ensure("seed", seed_installs, fp_app, SEED_PIP_OPTIONS)
            except PipError as exc:
                why = seed_pip_failure(exc)
        if why is not None:
            self.unavailable["seed"] = why
            log(f"venv seed: {why}; the seed side is reported as n/a and not measured")
        self.ensure("pycds", base + [[str(self.pycds_src)]], fp_app + self.pycds_fingerprint())
        if with_tools:
            try:
                self.ensure("tools", [[MATPLOTLIB_REQUIREMENT]], "", TOOLS_PIP_OPTIONS)
            except Exception as exc:  # plots are optional
                note = (f"{MATPLOTLIB_REQUIREMENT} could not be installed for CPython "
                        f"{platform.python_version()} (wheels only), so there are no plots "
                        f"(as with --no-plots): {' '.join(tail(str(exc), 2, 300).split())}")
                log(f"note: {note}")
                self.notes.append(note)
        # .pyc files for everything installed (pip compiles too; this makes sure of it).
        for name in self.sides():
            py = self.python[name]
            site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  env=child_env(), capture_output=True, text=True, check=True).stdout.strip()
            subprocess.run([str(py), "-m", "compileall", "-q", "-j", "0", site], env=child_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def sides(self):
        """The sides that can be measured with this interpreter."""
        return tuple(x for x in SIDES if x not in self.unavailable)

    def versions(self, name):
        py = self.python[name]
        r = subprocess.run([str(py), "-m", "pip", "freeze", "--all"], env=self._pip_env(),
                           capture_output=True, text=True)
        return [line.strip() for line in r.stdout.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# workloads


class Workload:
    def __init__(self, name, script, cwd, label, n=None, trace_rounds=False):
        self.name = name
        self.script = Path(script)
        self.cwd = Path(cwd)
        self.label = label
        self.n = n
        self.trace_rounds = trace_rounds
        self.reference = None  # plain CPython's stdout
        self.modlist = None    # BENCH_MODLIST written by a plain run
        self.lists = {}
        self.archives = {}
        self.prep = {}         # side -> dict of what happened while preparing
        self.failed = {}       # side -> reason (then the side is not measured)


def make_workloads(work, scale_ns):
    wls = [
        Workload("app", WORKLOADS / "app.py", WORKLOADS, "app (requests, rich, click, jinja2, ...)",
                 trace_rounds=True),
        Workload("stdlib", WORKLOADS / "stdlib.py", WORKLOADS, "stdlib (~90 standard modules)",
                 trace_rounds=True),
    ]
    gen = WORKLOADS / "gen_scale.py"
    for n in scale_ns:
        outdir = work / "scale" / f"n{n}"
        stamp = outdir / ".bench-stamp"
        want = sha256_text(gen.read_text() + (WORKLOADS / "app.py").read_text()) + f":{n}"
        if not (stamp.exists() and stamp.read_text() == want):
            log(f"generating the scale package with {n} modules in {outdir}")
            if outdir.exists():
                shutil.rmtree(outdir)
            subprocess.run([sys.executable, str(gen), str(outdir), str(n)], check=True,
                           env=child_env(), stdout=subprocess.DEVNULL)
            stamp.write_text(want)
        wls.append(Workload(f"scale-{n}", outdir / "entry.py", outdir, f"scale, N={n} modules", n=n,
                            trace_rounds=n <= 1000))
    return wls


def read_modlist(path):
    mods = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            name, pkg, origin = line.rstrip("\n").split("\t", 2)
            mods.append((name, pkg == "1", origin))
    return mods


def list_names(side, path):
    """Module names (and origins where known) in a traced list: the seed's is plain names, ours
    is JSON lines."""
    out = []
    seen = set()
    try:
        text = Path(path).read_text(errors="surrogateescape")
    except OSError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        origin = None
        if line.startswith("{"):
            try:
                rec = json.loads(line)
                name, origin = rec.get("name"), rec.get("origin")
            except ValueError:
                continue
        else:
            name = line
        if name and name not in seen:
            seen.add(name)
            out.append((name, origin))
    return out


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.work_dir).resolve()
        self.results_dir = Path(args.results_dir).resolve()
        self.scratch = self.work / "tmp"
        self.lists_dir = self.work / "lists"
        self.auto_cache = self.work / "auto-cache"
        self.auto_first_cache = self.work / "auto-first-cache"
        self.archives_dir = self.work / "archives"
        for d in (self.work, self.scratch, self.lists_dir, self.archives_dir, self.results_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.venvs = Venvs(self.work, Path(args.pycds_src).resolve(), args.reinstall)
        self.series = {}  # id -> {"samples": [...], "failed": None, ...}
        self.notes = []
        self.started = time.time()

    # -- preparation ---------------------------------------------------------------------------

    def py(self, side):
        return str(self.venvs.python[side])

    def prepare(self, wl):
        log(f"preparing {wl.name}")
        env = child_env()
        # 1. Warm-up runs, bytecode writing on (PYTHONDONTWRITEBYTECODE is not passed on), so
        #    every .pyc the plain side needs exists before anything is measured. Plain output
        #    is the reference every other run must reproduce.
        for side in self.venvs.sides():
            r = run_measured([self.py(side), str(wl.script)], env, wl.cwd, self.scratch, timing=False)
            if side == "plain":
                if r.rc != 0:
                    raise RuntimeError(f"{wl.name}: plain CPython failed:\n{tail(r.stderr, 20, 3000)}")
                wl.reference = r.stdout
            elif r.rc != 0 or r.stdout != wl.reference:
                wl.failed[side] = f"fails without any mode (rc={r.rc}): {tail(r.stderr, 2, 200)}"
        # 2. The module list of a plain run (for the exec-only floor and the .pyc sizes).
        wl.modlist = self.lists_dir / f"{wl.name}.modules"
        r = run_measured([self.py("plain"), str(wl.script)], child_env({"BENCH_MODLIST": str(wl.modlist)}),
                         wl.cwd, self.scratch, timing=False)
        if r.rc != 0:
            raise RuntimeError(f"{wl.name}: module listing failed:\n{tail(r.stderr, 20, 3000)}")
        wl.prep["plain"] = {"modules_imported": len(read_modlist(wl.modlist))}
        # 3. AUTO's cache, warmed by this workload as `python -m cds warm` does in an image
        #    build (twice: the second run archives what the first one's own exit imported).
        if wl.name in AUTO_WORKLOADS and "pycds" not in self.venvs.unavailable:
            for _ in range(2):
                r = run_measured([self.py("pycds"), "-m", "cds", "warm", "--", str(wl.script)],
                                 child_env({"PYCDS_CACHE_DIR": str(self.auto_cache)}), wl.cwd, self.scratch,
                                 timing=False)
                if r.rc != 0 or r.stdout != wl.reference:
                    wl.failed["pycds-auto"] = f"warm failed (rc={r.rc}): {tail(r.stderr, 3, 300)}"
                    break
        # 4. Trace, dump and check, for each side that has a mode.
        for side in MODE_SIDES:
            if side in self.venvs.unavailable:
                wl.prep[side] = {"unavailable": self.venvs.unavailable[side]}
                continue
            if side in wl.failed:
                continue
            self.trace_dump_check(wl, side)

    def trace_dump_check(self, wl, side):
        py = self.py(side)
        lst = self.lists_dir / f"{wl.name}.{side}.lst"
        img = self.archives_dir / f"{wl.name}.{side}.img"
        wl.lists[side] = lst
        wl.archives[side] = img
        prep = wl.prep.setdefault(side, {})
        for p in (lst, img):
            if p.exists():
                p.unlink()
        # trace (PYCDSLIST is appended to by both implementations: start from nothing)
        r = run_measured([py, str(wl.script)], child_env({"PYCDSMODE": "TRACE", "PYCDSLIST": str(lst)}),
                         wl.cwd, self.scratch, timing=False)
        prep["trace_seconds"] = r.wall
        if r.rc != 0 or r.stdout != wl.reference or not lst.exists():
            wl.failed[side] = f"trace failed (rc={r.rc}): {tail(r.stderr, 3, 300)}"
            prep["trace_error"] = tail(r.stderr, 30, 4000)
            log(f"  {side}: {wl.failed[side]}")
            return
        names = list_names(side, lst)
        prep["listed"] = len(names)
        # dump: the seeds' documented form, `python -c 'import cds.dump; cds.dump.run_dump(LIST,
        # IMG)'`, which both implementations accept, run where the traced program ran (the seed's
        # dump imports, i.e. executes, every listed module, so sys.path[0] must be the workload's
        # directory as it was for the script). tools/hwm.py is `python -c` plus a VmHWM report.
        code = f"import cds.dump; cds.dump.run_dump({str(lst)!r}, {str(img)!r})"
        hwm_file = self.scratch / "dump-hwm"
        if hwm_file.exists():
            hwm_file.unlink()
        argv = [py, str(TOOLS / "hwm.py"), str(hwm_file), code]
        r = run_measured(argv, child_env(), wl.cwd, self.scratch, timing=False)
        prep["dump_command"] = f"cd {shlex.quote(str(wl.cwd))} && {py} -c {shlex.quote(code)}"
        prep["dump_seconds"] = r.wall
        prep["dump_cpu"] = r.utime + r.stime
        try:
            prep["dump_hwm_kb"] = int(hwm_file.read_text())
        except (OSError, ValueError):
            prep["dump_hwm_kb"] = None
        prep["dump_rc"] = r.rc
        prep["dump_stdout"] = tail(r.stdout, 5, 1000)
        if r.rc != 0 or not img.exists() or img.stat().st_size == 0:
            why = "timed out" if r.rc == "timeout" else f"rc={r.rc}"
            wl.failed[side] = f"dump failed ({why}): {tail(r.stderr, 3, 300)}"
            prep["dump_error"] = tail(r.stderr, 30, 4000)
            log(f"  {side}: {wl.failed[side]}")
            return
        prep["archive_bytes"] = img.stat().st_size
        # .pyc bytes of the listed modules (the seed lists names: their origins come from the
        # plain run's module list)
        origins = {name: origin for name, _, origin in read_modlist(wl.modlist)}
        pyc_total, unknown = 0, 0
        for name, origin in names:
            origin = origin or origins.get(name)
            size = pyc_size(origin) if origin else None
            if size is None:
                unknown += 1
            else:
                pyc_total += size
        prep["pyc_bytes"] = pyc_total
        prep["pyc_unknown"] = unknown
        if side == "pycds":
            r2 = subprocess.run([py, "-m", "cds", "inspect", "--json", str(img)], env=child_env(),
                                capture_output=True, text=True)
            try:
                st = json.loads(r2.stdout)["archive"]
                prep["archived"] = st.get("modules")
                prep["objects_bytes"] = st.get("objects_bytes")
                prep["metadata_bytes"] = st.get("metadata_bytes")
                prep["mapped_at_preferred"] = st.get("mapped_at") == st.get("preferred_base")
            except (ValueError, KeyError, TypeError):
                prep["inspect_error"] = tail(r2.stderr, 3, 300)
        # check run: SHARE mode must reproduce plain output; record what was served
        r = run_measured([py, str(wl.script)],
                         child_env({"PYCDSMODE": "SHARE", "PYCDSARCHIVE": str(img), "BENCH_INFO": "1"}),
                         wl.cwd, self.scratch)
        st = r.stamps or {}
        for k in ("served", "fallbacks", "archived", "unserved", "error", "fallback_reasons"):
            if k in st:
                prep["check_" + k] = st[k]
        if r.rc != 0:
            wl.failed[side] = f"SHARE run failed (rc={r.rc}): {tail(r.stderr, 3, 300)}"
            prep["share_error"] = tail(r.stderr, 30, 4000)
        elif r.stdout != wl.reference:
            wl.failed[side] = (f"SHARE run printed {tail(r.stdout, 1, 120)!r}, plain printed "
                               f"{tail(wl.reference, 1, 120)!r}")
        if side in wl.failed:
            log(f"  {side}: {wl.failed[side]}")
        else:
            log(f"  {side}: traced {prep['listed']} modules, dumped {prep['archive_bytes'] / 2**20:.1f} MiB "
                f"in {prep['dump_seconds']:.2f} s, served {prep.get('check_served', '?')}")

    # -- measurement ----------------------------------------------------------------------------

    def add_job(self, jobs, sid, argv, env, cwd, expect, meta):
        self.series.setdefault(sid, {"samples": [], "failed": None, **meta})
        jobs.append((sid, argv, env, cwd, expect))

    def skip_unavailable(self, sid, side, meta):
        """Record the series of a side that cannot be installed for this interpreter as
        unavailable (reported as n/a, never measured); True if it is."""
        why = self.venvs.unavailable.get(side)
        if why is None:
            return False
        self.series[sid] = {"samples": [], "failed": None, "unavailable": why, **meta}
        return True

    def build_jobs(self, workloads):
        jobs = []
        trace_scratch = self.scratch / "trace-round.lst"
        for wl in workloads:
            for side in SIDES:
                sid = f"{wl.name}/{side}"
                meta = {"workload": wl.name, "side": side, "kind": "run"}
                if self.skip_unavailable(sid, side, meta):
                    continue
                if side in wl.failed:
                    self.series[sid] = {"samples": [], "failed": wl.failed[side], **meta}
                    continue
                extra = {}
                if side != "plain":
                    extra = {"PYCDSMODE": "SHARE", "PYCDSARCHIVE": str(wl.archives[side])}
                self.add_job(jobs, sid, [self.py(side), str(wl.script)], child_env(extra), wl.cwd,
                             wl.reference, meta)
            # pycds serving code objects only: its compiled regular expressions turned off
            if wl.name in ("app", "stdlib") and "pycds" not in wl.failed and not self.skip_unavailable(
                    f"{wl.name}/pycds-noregex", "pycds", {"workload": wl.name, "side": "pycds-noregex", "kind": "run"}):
                self.add_job(jobs, f"{wl.name}/pycds-noregex", [self.py("pycds"), str(wl.script)],
                             child_env({"PYCDSMODE": "SHARE", "PYCDSARCHIVE": str(wl.archives["pycds"]),
                                        "PYCDSREGEX": "0"}),
                             wl.cwd, wl.reference, {"workload": wl.name, "side": "pycds-noregex", "kind": "run"})
            # every import lazy (3.15+)
            for side in LAZY_SIDES if wl.name in ("app", "stdlib") else ():
                base = side.removesuffix("-lazy")
                meta = {"workload": wl.name, "side": side, "kind": "run"}
                if self.skip_unavailable(f"{wl.name}/{side}", base, meta):
                    continue
                if base in wl.failed:
                    self.series[f"{wl.name}/{side}"] = {"samples": [], "failed": wl.failed[base], **meta}
                    continue
                extra = {} if base == "plain" else {"PYCDSMODE": "SHARE", "PYCDSARCHIVE": str(wl.archives[base])}
                self.add_job(jobs, f"{wl.name}/{side}", [self.py(base), *LAZY_FLAG, str(wl.script)],
                             child_env(extra), wl.cwd, wl.reference, meta)
            # AUTO: the steady state (the warmed cache) and the first run (an empty cache each time)
            if wl.name in AUTO_WORKLOADS:
                for side, cache in (("pycds-auto", self.auto_cache), ("pycds-auto-first", self.auto_first_cache)):
                    meta = {"workload": wl.name, "side": side, "kind": "run"}
                    if self.skip_unavailable(f"{wl.name}/{side}", "pycds", meta):
                        continue
                    if "pycds-auto" in wl.failed:
                        self.series[f"{wl.name}/{side}"] = {"samples": [], "failed": wl.failed["pycds-auto"], **meta}
                        continue
                    if side == "pycds-auto-first":
                        meta["auto_first_cache"] = str(cache)
                    self.add_job(jobs, f"{wl.name}/{side}", [self.py("pycds"), str(wl.script)],
                                 child_env({"PYCDSMODE": "AUTO", "PYCDS_CACHE_DIR": str(cache)}), wl.cwd,
                                 wl.reference, meta)
            # the exec-only floor (plain venv, code objects preloaded)
            self.add_job(jobs, f"{wl.name}/floor",
                         [self.py("plain"), str(TOOLS / "floor.py"), str(wl.modlist), str(wl.script)],
                         child_env(), wl.cwd, wl.reference,
                         {"workload": wl.name, "side": "floor", "kind": "floor"})
            if wl.trace_rounds:
                for side in MODE_SIDES:
                    if self.skip_unavailable(f"{wl.name}/trace-{side}", side,
                                             {"workload": wl.name, "side": side, "kind": "trace"}):
                        continue
                    if side in wl.failed and "trace failed" in wl.failed[side]:
                        self.series[f"{wl.name}/trace-{side}"] = {
                            "samples": [], "failed": wl.failed[side], "workload": wl.name,
                            "side": side, "kind": "trace"}
                        continue
                    self.add_job(jobs, f"{wl.name}/trace-{side}", [self.py(side), str(wl.script)],
                                 child_env({"PYCDSMODE": "TRACE", "PYCDSLIST": str(trace_scratch)}),
                                 wl.cwd, wl.reference,
                                 {"workload": wl.name, "side": side, "kind": "trace",
                                  "cleanup": str(trace_scratch)})
        # `python -c pass`: with the app's archive, installed but inactive, with each scale archive
        app = workloads[0]
        for side in SIDES:
            extra = {}
            meta = {"workload": "empty", "side": side, "kind": "empty"}
            if self.skip_unavailable(f"empty/{side}", side, meta):
                continue
            if side != "plain":
                img = app.archives.get(side)
                if img is None or not img.exists():
                    self.series[f"empty/{side}"] = {"samples": [], "failed": app.failed.get(side, "no archive"), **meta}
                    continue
                extra = {"PYCDSMODE": "SHARE", "PYCDSARCHIVE": str(img)}
            self.add_job(jobs, f"empty/{side}", [self.py(side), "-c", "pass"], child_env(extra),
                         self.scratch, "", meta)
        meta = {"workload": "empty", "side": "pycds-auto", "kind": "empty"}
        if not self.skip_unavailable("empty/pycds-auto", "pycds", meta):
            self.add_job(jobs, "empty/pycds-auto", [self.py("pycds"), "-c", "pass"],
                         child_env({"PYCDSMODE": "AUTO", "PYCDS_CACHE_DIR": str(self.auto_cache)}),
                         self.scratch, "", meta)
        for side in MODE_SIDES:
            meta = {"workload": "empty-inactive", "side": side, "kind": "empty"}
            if self.skip_unavailable(f"empty-inactive/{side}", side, meta):
                continue
            self.add_job(jobs, f"empty-inactive/{side}", [self.py(side), "-c", "pass"], child_env(),
                         self.scratch, "", meta)
        for wl in workloads:
            if wl.n is None:
                continue
            for side in MODE_SIDES:
                img = wl.archives.get(side)
                sid = f"empty-{wl.name}/{side}"
                meta = {"workload": f"empty-{wl.name}", "side": side, "kind": "empty",
                        "archive_bytes": img.stat().st_size if img and img.exists() else None}
                if self.skip_unavailable(sid, side, meta):
                    continue
                if img is None or not img.exists():
                    self.series[sid] = {"samples": [], "failed": wl.failed.get(side, "no archive"), **meta}
                    continue
                self.add_job(jobs, sid, [self.py(side), "-c", "pass"],
                             child_env({"PYCDSMODE": "SHARE", "PYCDSARCHIVE": str(img)}),
                             self.scratch, "", meta)
        return jobs

    def measure(self, jobs, rounds):
        # `python -c pass` (with each archive, and with the package inactive): a difference of a
        # few percent of 15 ms, which one sample a round cannot show on a noisy machine. So each
        # round runs those EMPTY_REPEATS times, in alternating order, and every sample of one
        # side has a neighbour of each other side taken just before or after it (paired ratios).
        paired = [j for j in jobs if paired_empty(self.series[j[0]]["workload"])]
        others = [j for j in jobs if not paired_empty(self.series[j[0]]["workload"])]
        for r in range(rounds):
            t0 = time.monotonic()
            # Forward in even rounds, backward in odd ones: no series always runs just after
            # the same neighbour (the machine's state after a job leaks into the next one).
            for job in others if r % 2 == 0 else others[::-1]:
                self.run_job(r, *job)
            for k in range(EMPTY_REPEATS):
                for job in paired if k % 2 == 0 else paired[::-1]:
                    self.run_job(r, *job)
            log(f"round {r + 1}/{rounds} done in {time.monotonic() - t0:.1f} s")

    def run_job(self, r, sid, argv, env, cwd, expect):
        s = self.series[sid]
        if s["failed"] or s.get("unavailable"):
            return
        if s.get("cleanup"):
            try:
                os.unlink(s["cleanup"])
            except FileNotFoundError:
                pass
        if s.get("auto_first_cache"):
            shutil.rmtree(s["auto_first_cache"], ignore_errors=True)
        p = run_measured(argv, env, cwd, self.scratch)
        if s.get("auto_first_cache"):
            # The detached writer is not part of the run; let it finish before anything else
            # is measured, so that it adds no noise to the other series.
            wait_for_auto_writer(Path(s["auto_first_cache"]))
        if p.rc != 0 or p.stdout != expect:
            why = f"rc={p.rc}" if p.rc != 0 else f"printed {tail(p.stdout, 1, 120)!r}"
            s["failed"] = f"failed in round {r + 1} ({why}): {tail(p.stderr, 3, 300)}"
            s["error"] = tail(p.stderr, 30, 4000)
            log(f"  {sid}: {s['failed']}")
            return
        d = p.as_dict()
        d["phases"] = phases(p)
        d["hwm_kb"] = (p.stamps or {}).get("hwm_kb")
        s["samples"].append(d)

    # -- memory: PSS of concurrent processes -----------------------------------------------------

    def pss(self, wl, nprocs, reps):
        out = {}
        for rep in range(reps):
            for side in SIDES:
                if side in self.venvs.unavailable:
                    out[side] = {"unavailable": self.venvs.unavailable[side]}
                    continue
                if side in wl.failed:
                    out.setdefault(side, {"failed": wl.failed[side]})
                    continue
                extra = {"BENCH_WAIT": "1"}
                if side != "plain":
                    extra.update({"PYCDSMODE": "SHARE", "PYCDSARCHIVE": str(wl.archives[side])})
                env = child_env(extra)
                procs = []
                try:
                    for _ in range(nprocs):
                        procs.append(subprocess.Popen([self.py(side), str(wl.script)], env=env,
                                                      cwd=wl.cwd, stdin=subprocess.PIPE,
                                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
                    for p in procs:
                        while True:
                            line = p.stdout.readline()
                            if not line or line.strip() == b"READY":
                                break
                        if not line:
                            raise RuntimeError("a process exited before it was ready")
                    totals = {}
                    for p in procs:
                        with open(f"/proc/{p.pid}/smaps_rollup") as f:
                            for row in f:
                                parts = row.split()
                                if len(parts) >= 3 and parts[-1] == "kB":
                                    key = parts[0].rstrip(":")
                                    totals[key] = totals.get(key, 0) + int(parts[1])
                    entry = out.setdefault(side, {"samples": []})
                    entry.setdefault("samples", []).append({
                        "pss_kb": totals.get("Pss", 0),
                        "rss_kb": totals.get("Rss", 0),
                        "private_kb": totals.get("Private_Clean", 0) + totals.get("Private_Dirty", 0),
                        "shared_kb": totals.get("Shared_Clean", 0) + totals.get("Shared_Dirty", 0),
                    })
                except Exception as exc:
                    out[side] = {"failed": f"{type(exc).__name__}: {exc}"}
                finally:
                    for p in procs:
                        try:
                            p.stdin.close()
                        except OSError:
                            pass
                    for p in procs:
                        try:
                            p.wait(60)
                        except subprocess.TimeoutExpired:
                            p.kill()
                            p.wait()
                        p.stdout.close()
        return out

    # -- summary --------------------------------------------------------------------------------

    def stats(self):
        out = {}
        for sid, s in self.series.items():
            samples = s["samples"]
            st = {k: v for k, v in s.items() if k != "samples"}
            st["n"] = len(samples)
            if samples:
                for key in ("wall", "cpu", "maxrss_kb", "hwm_kb"):
                    vals = [x[key] for x in samples if x.get(key) is not None]
                    if vals:
                        st[key] = quartiles(vals)
                ph = [x["phases"] for x in samples if x.get("phases")]
                if ph:
                    for key in ("startup", "imports", "work", "teardown"):
                        st[key] = quartiles([x[key] for x in ph])
            out[sid] = st
        # Paired ratios of the repeated `python -c pass` series: sample i of every side was taken
        # next to sample i of plain (same round and repetition) as long as none failed.
        base = self.series.get("empty/plain", {}).get("samples", [])
        for sid, s in self.series.items():
            if paired_empty(s.get("workload", "")) and s.get("side") != "plain" and base \
                    and len(s["samples"]) == len(base):
                pairs = list(zip(s["samples"], base))
                out[sid]["paired_ratio"] = statistics.median(x["wall"] / y["wall"] for x, y in pairs)
                out[sid]["paired_diff"] = statistics.median(x["wall"] - y["wall"] for x, y in pairs)
        return out


# ---------------------------------------------------------------------------------------------
# reporting


def elf_is_pie(path):
    """True for a position-independent executable (ELF type ET_DYN), False for ET_EXEC."""
    try:
        with open(path, "rb") as f:
            head = f.read(18)
        if head[:4] != b"\x7fELF":
            return None
        return int.from_bytes(head[16:18], "little" if head[5] == 1 else "big") == 3
    except OSError:
        return None


def machine_info(pycds_src):
    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.replace("\n", " "),
        "executable": os.path.realpath(sys.executable),
        "platform": platform.platform(),
        "nproc": os.cpu_count(),
        "shared_libpython": bool(sysconfig.get_config_var("Py_ENABLE_SHARED")),
        "pie_executable": elf_is_pie(os.path.realpath(sys.executable)),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem"] = f.readline().split(":", 1)[1].strip()
        info["loadavg_start"] = open("/proc/loadavg").read().split()[:3]
    except OSError:
        pass
    try:
        head = subprocess.run(["git", "-C", str(pycds_src), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(pycds_src), "status", "--porcelain", "--",
                                "crates", "python", "pyproject.toml"],
                               capture_output=True, text=True).stdout.strip()
        info["pycds_commit"] = head + (" (+ uncommitted changes)" if dirty else "")
    except OSError:
        # No git (the minimal Debian chroots of tests/chroot.sh): read HEAD from .git directly.
        head = git_head_without_git(pycds_src)
        if head:
            info["pycds_commit"] = head + " (uncommitted changes not checked: no git here)"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    info["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    damon = damon_schemes()
    if damon:
        info["damon"] = damon
    return info


def damon_schemes():
    """The actions of the kernel's running DAMON monitors (sysfs), e.g. `pageout`: a monitor that
    pages out memory it sees idle also evicts the page cache of files a benchmark reads only
    once per round (interpreters, `.pyc` files, archives), so some runs wait for the disk. That
    adds noise to every side; the results say when it was on. Empty when there is none."""
    root = Path("/sys/kernel/mm/damon/admin/kdamonds")
    actions = []
    try:
        for kd in sorted(root.glob("[0-9]*")):
            if (kd / "state").read_text().strip() != "on":
                continue
            for action in sorted(kd.glob("contexts/*/schemes/*/action")):
                actions.append(action.read_text().strip())
    except OSError:
        return ""
    return ", ".join(actions) if actions else ""


def git_head_without_git(src):
    """The short commit id of a checkout's HEAD, read from its .git directory (None if that is
    not a plain .git directory or the ref cannot be found)."""
    git = Path(src) / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head[:7] or None
        ref = head.split(None, 1)[1]
        try:
            return (git / ref).read_text().strip()[:7]
        except OSError:
            for line in (git / "packed-refs").read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0][:7]
    except (OSError, IndexError):
        pass
    return None


def ms(q, digits=1):
    if q is None:
        return "n/a"
    return f"{q[1] * 1e3:.{digits}f}"


def ms_iqr(q, digits=1):
    if q is None:
        return "n/a"
    return f"{q[1] * 1e3:.{digits}f} ({q[0] * 1e3:.{digits}f}-{q[2] * 1e3:.{digits}f})"


def ratio(a, b):
    if a is None or b is None or not b[1]:
        return None
    return a[1] / b[1]


def fmt_ratio(r):
    return "n/a" if r is None else f"{r:.2f}x"


def mib(kb):
    return f"{kb / 1024:.1f}"


def na(why):
    """The cell of a side that cannot be installed for the interpreter (not measured)."""
    return "n/a: " + md_escape(why)


def wall(st):
    """The wall-time quartiles of a series' stats, or `None` (for `ratio`)."""
    return st and st.get("wall")


def cell(st, key, fmt=ms_iqr):
    if st is None:
        return "n/a"
    if st.get("unavailable"):
        return na(st["unavailable"])
    v = st.get(key)
    if st.get("failed"):
        if v is None:
            return "FAILED: " + md_escape(st["failed"])
        return f"{fmt(v)} (then FAILED: {md_escape(st['failed'])[:80]})"
    return fmt(v) if v is not None else "n/a"


def md_escape(text):
    return " ".join(str(text).replace("|", "\\|").split())[:220]


def render_markdown(res):
    st = res["stats"]
    wls = res["workloads"]
    unavailable = res.get("unavailable") or {}
    L = []
    a = L.append
    a("# pycds benchmark results")
    a("")
    if res["quick"]:
        a(f"**These are results of the `--quick` mode ({res['rounds']} rounds per series):** "
          "indicative only; run without `--quick` for the full 20 rounds.")
        a("")
    a(f"Command: `{res['command']}` (from `{res['cwd']}`), {res['rounds']} interleaved rounds, "
      f"took {res['elapsed_s'] / 60:.1f} min.")
    a("")
    a("Machine and software:")
    a("")
    for k, v in res["machine"].items():
        a(f"- {k}: {v}")
    for side in SIDES:
        pkgs = [x for x in res.get("versions", {}).get(side, [])
                if x.lower().startswith(("code-data-share", "code_data_share", "pycds"))]
        if pkgs:
            a(f"- {side} venv: {', '.join(pkgs)}")
    a("- app packages (all three venvs): bench/requirements-app.txt")
    a("")
    a("Sides: **plain** = CPython with only the app requirements; **seed** = the same plus "
      "`code-data-share==0.1.0` (PyPI), SHARE mode; **pycds** = the same plus this repository "
      "(`pip install` of the checkout), SHARE mode. Times are medians of whole processes with the "
      "interquartile range in parentheses, in ms; ratios are side median / plain median from the "
      "same run (below 1.00x is faster than plain CPython). See bench/README.md for what each "
      "figure means.")
    a("")
    for side, why in unavailable.items():
        a(f"**{side}: n/a: {md_escape(why)}.** That side could not be installed for this "
          "interpreter, so it was not measured; its cells read n/a in every table. plain and the "
          "other sides were measured interleaved as usual.")
        a("")

    def row(cells):
        a("| " + " | ".join(cells) + " |")

    # 1. wall
    a("## Whole-process wall time")
    a("")
    row(["workload", "plain", "seed", "pycds", "seed / plain", "pycds / plain"])
    row(["---"] * 6)
    for w in wls + ["empty"]:
        p, s, c = (st.get(f"{w}/{x}") for x in SIDES)
        label = "empty (`python -c pass`, app archive)" if w == "empty" else w
        row([label, cell(p, "wall"), cell(s, "wall"), cell(c, "wall"),
             fmt_ratio(ratio(s and s.get("wall"), p and p.get("wall"))),
             fmt_ratio(ratio(c and c.get("wall"), p and p.get("wall")))])
    a("")
    # 2. cpu
    a("## Whole-process CPU time (user + system, from the child's rusage)")
    a("")
    row(["workload", "plain", "seed", "pycds", "seed / plain", "pycds / plain"])
    row(["---"] * 6)
    for w in wls + ["empty"]:
        p, s, c = (st.get(f"{w}/{x}") for x in SIDES)
        row([w, cell(p, "cpu"), cell(s, "cpu"), cell(c, "cpu"),
             fmt_ratio(ratio(s and s.get("cpu"), p and p.get("cpu"))),
             fmt_ratio(ratio(c and c.get("cpu"), p and p.get("cpu")))])
    a("")
    # 3. import phase and floor
    a("## Import phase (inside the workload: just before the first import to after the last)")
    a("")
    a("`floor` is the exec-only floor: plain CPython with every module's code object loaded into "
      "memory (via `SourceFileLoader.get_code`) and frozen out of the GC before the import phase "
      "starts, then served by a finder that does no path search (bench/tools/floor.py): roughly the "
      "best any code cache can do. It is approximate: a cache whose objects sit contiguous in one "
      "mapping and skip some spec bookkeeping can come out a few percent below it.")
    a("")
    row(["workload", "plain", "seed", "pycds", "floor", "seed / plain", "pycds / plain",
         "floor / plain", "pycds share of the possible gain"])
    row(["---"] * 9)
    for w in wls:
        p, s, c, f = (st.get(f"{w}/{x}") for x in SIDES + ("floor",))
        gain = "n/a"
        if p and c and f and p.get("imports") and c.get("imports") and f.get("imports"):
            possible = p["imports"][1] - f["imports"][1]
            if possible > 0:
                gain = f"{(p['imports'][1] - c['imports'][1]) / possible * 100:.0f}%"
        row([w, cell(p, "imports"), cell(s, "imports"), cell(c, "imports"), cell(f, "imports"),
             fmt_ratio(ratio(s and s.get("imports"), p and p.get("imports"))),
             fmt_ratio(ratio(c and c.get("imports"), p and p.get("imports"))),
             fmt_ratio(ratio(f and f.get("imports"), p and p.get("imports"))), gain])
    a("")
    # 3b. pycds without its regular-expression programs
    a("## pycds with code objects only (`PYCDSREGEX=0`)")
    a("")
    a("pycds also keeps the compiled programs of the regular expressions the traced run compiled, "
      "and builds those patterns from them instead of parsing and compiling them (README: "
      "*Compiled regular expressions*). That removes work the exec-only floor still does, so "
      "here the same archive is served with that turned off, interleaved with the runs above: "
      "what the code objects alone give, against the floor.")
    a("")
    row(["workload", "plain wall", "pycds wall", "pycds, PYCDSREGEX=0, wall", "pycds / plain",
         "PYCDSREGEX=0 / plain", "pycds imports", "PYCDSREGEX=0 imports", "floor imports",
         "PYCDSREGEX=0 imports / floor"])
    row(["---"] * 10)
    for w in wls:
        p, c, n, f = (st.get(f"{w}/{x}") for x in ("plain", "pycds", "pycds-noregex", "floor"))
        if not n:
            continue
        row([w, cell(p, "wall"), cell(c, "wall"), cell(n, "wall"),
             fmt_ratio(ratio(c and c.get("wall"), p and p.get("wall"))),
             fmt_ratio(ratio(n.get("wall"), p and p.get("wall"))),
             cell(c, "imports"), cell(n, "imports"), cell(f, "imports"),
             fmt_ratio(ratio(n.get("imports"), f and f.get("imports")))])
    a("")
    if any(st.get(f"{w}/pycds-auto") for w in wls):
        a("## AUTO (PYCDSMODE=AUTO)")
        a("")
        a("`pycds-auto`: the steady state, from one cache that `python -m cds warm` filled with both "
          "workloads (one archive per environment, as AUTO keeps it); `first run`: AUTO with an empty "
          "cache each time (the run records what it imports; its detached writer, not timed, finishes "
          "before the next series runs). SHARE is the explicit archive traced from this workload alone.")
        a("")
        row(["workload", "plain", "SHARE", "AUTO steady", "AUTO first run", "AUTO / SHARE",
             "AUTO / plain", "first run / plain"])
        row(["---"] * 8)
        for w in wls:
            p, c, au, fi = (st.get(f"{w}/{x}") for x in ("plain", "pycds", "pycds-auto", "pycds-auto-first"))
            if not au:
                continue
            row([w, cell(p, "wall"), cell(c, "wall"), cell(au, "wall"), cell(fi, "wall"),
                 fmt_ratio(ratio(wall(au), wall(c))), fmt_ratio(ratio(wall(au), wall(p))),
                 fmt_ratio(ratio(wall(fi), wall(p)))])
        e_share, e_auto = st.get("empty/pycds") or {}, st.get("empty/pycds-auto") or {}
        if e_share.get("paired_diff") is not None and e_auto.get("paired_diff") is not None:
            a("")
            a(f"`python -c pass` with AUTO active: {e_auto['paired_diff'] * 1e3:+.2f} ms over plain "
              f"(paired), against {e_share['paired_diff'] * 1e3:+.2f} ms for SHARE with the app's archive: "
              f"AUTO costs {(e_auto['paired_diff'] - e_share['paired_diff']) * 1e3:+.2f} ms more.")
        a("")
    if any(st.get(f"{w}/plain-lazy") for w in wls):
        a("## Lazy imports (PEP 810)")
        a("")
        a(f"The same workloads with every import lazy (`python {' '.join(LAZY_FLAG)}`), interleaved "
          "with the sides above; pycds serves from the archive traced from the eager run. Every run "
          "printed what the plain eager run printed.")
        a("")
        row(["workload", "plain", "plain lazy", "pycds", "pycds lazy", "lazy / plain",
             "pycds / plain", "pycds lazy / plain lazy", "pycds lazy / plain"])
        row(["---"] * 9)
        for w in wls:
            p, pl, c, cl = (st.get(f"{w}/{x}") for x in ("plain", "plain-lazy", "pycds", "pycds-lazy"))
            if not pl:
                continue
            row([w, cell(p, "wall"), cell(pl, "wall"), cell(c, "wall"), cell(cl, "wall"),
                 fmt_ratio(ratio(wall(pl), wall(p))), fmt_ratio(ratio(wall(c), wall(p))),
                 fmt_ratio(ratio(wall(cl), wall(pl))), fmt_ratio(ratio(wall(cl), wall(p)))])
        a("")
    # 4. phases
    a("## Where the time goes (medians, ms)")
    a("")
    a("start-up = spawn to the script's first line (interpreter init, site, .pth, archive "
      "mapping); imports = the import phase; work = the rest of the script; teardown = from the "
      "first atexit handler to the parent's wait4 returning (atexit, module and object "
      "finalisation, exit).")
    a("")
    row(["workload", "side", "start-up", "imports", "work", "teardown", "whole wall"])
    row(["---"] * 7)
    for w in wls:
        for x in SIDES:
            s = st.get(f"{w}/{x}")
            if s and s.get("unavailable"):
                row([w, x, na(s["unavailable"])] + [""] * 4)
                continue
            if not s or not s.get("wall"):
                row([w, x] + ["FAILED: " + md_escape(s["failed"]) if s and s.get("failed") else "n/a"]
                    + [""] * 4)
                continue
            row([w, x] + [ms(s.get(k)) for k in ("startup", "imports", "work", "teardown", "wall")])
    a("")
    # 5. empty
    a("## `python -c pass`")
    a("")
    a(f"Each case runs {EMPTY_REPEATS} times a round, sides alternating, so that each sample has "
      "one of plain taken just before or after it: the paired figures are the medians of those "
      "per-pair ratios and differences to plain, steadier than the ratio of two medians.")
    a("")
    row(["case", "plain", "seed", "pycds", "seed - plain", "pycds - plain", "seed / plain, paired",
         "pycds / plain, paired", "pycds - plain, paired"])
    row(["---"] * 9)
    pe = st.get("empty/plain")

    def delta(x):
        if not (x and x.get("wall") and pe and pe.get("wall")):
            return "n/a"
        return f"{(x['wall'][1] - pe['wall'][1]) * 1e3:+.1f} ms"

    def paired(x, key="paired_ratio"):
        if not (x and x.get(key) is not None):
            return "n/a"
        return f"{x[key]:.3f}x" if key == "paired_ratio" else f"{x[key] * 1e3:+.2f} ms"

    for case, label, _ in empty_cases(wls):
        s, c = st.get(f"{case}/seed"), st.get(f"{case}/pycds")
        row([label, cell(pe, "wall"), cell(s, "wall"), cell(c, "wall"), delta(s), delta(c),
             paired(s), paired(c), paired(c, "paired_diff")])
    a("")
    # 6. memory
    a("## Memory")
    a("")
    a("Peak RSS is `VmHWM` of each measured child, read by the workload's harness at exit (median, "
      "MiB; the parent's `ru_maxrss` is not used because on Linux it also counts the spawning "
      "parent's memory, which the child shares until exec). PSS is the total "
      f"proportional set size of {res['pss_procs']} concurrent processes of the app workload, "
      "each stopped after its work (sum of `Pss` from /proc/PID/smaps_rollup; median of "
      f"{res['pss_reps']} repetitions).")
    a("")
    row(["workload", "plain peak RSS", "seed peak RSS", "pycds peak RSS", "seed - plain", "pycds - plain"])
    row(["---"] * 6)
    for w in wls:
        p, s, c = (st.get(f"{w}/{x}") for x in SIDES)

        def rss(x):
            if x and x.get("unavailable"):
                return na(x["unavailable"])
            if not x or not x.get("hwm_kb"):
                return "FAILED" if x and x.get("failed") else "n/a"
            return mib(x["hwm_kb"][1])

        def drss(x):
            if not (x and x.get("hwm_kb") and p and p.get("hwm_kb")):
                return "n/a"
            return f"{(x['hwm_kb'][1] - p['hwm_kb'][1]) / 1024:+.1f}"

        row([w, rss(p), rss(s), rss(c), drss(s), drss(c)])
    a("")
    pss = res.get("pss", {})
    if pss:
        row(["side", f"total PSS of {res['pss_procs']} (MiB)", "total RSS (MiB)", "private (MiB)",
             "shared (MiB)", "vs plain PSS"])
        row(["---"] * 6)
        base = pss.get("plain", {}).get("pss_kb")
        for x in SIDES:
            e = pss.get(x, {})
            if e.get("unavailable"):
                row([x, na(e["unavailable"])] + [""] * 4)
                continue
            if "pss_kb" not in e:
                row([x, "FAILED: " + md_escape(e.get("failed", "not measured"))] + [""] * 4)
                continue
            dv = f"{(e['pss_kb'] - base) / 1024:+.1f} MiB" if base else "n/a"
            row([x, mib(e["pss_kb"]), mib(e["rss_kb"]), mib(e["private_kb"]), mib(e["shared_kb"]), dv])
        a("")
    # 7. archives
    a("## Archives and dumps")
    a("")
    a("`.pyc` bytes = the sizes of the `__pycache__` files of the modules in the side's traced list "
      "(the seed lists names only; their files come from the plain run's module list). Dump time is "
      "one whole-process run of the dumper (not repeated). `served` is what the SHARE check run "
      "took from the archive (pycds: `cds.info()`; seed: archived minus still-unused entries).")
    a("")
    row(["workload", "side", "listed", "archive (MiB)", ".pyc (MiB)", "archive / .pyc", "dump (s)",
         "dump peak RSS (MiB)", "served", "fell back", "status"])
    row(["---"] * 11)
    for w in wls:
        for x in MODE_SIDES:
            if x in unavailable:
                row([w, x, na(unavailable[x])] + [""] * 7 + ["not measured"])
                continue
            pr = res["prep"].get(w, {}).get(x, {})
            fail = res["failed"].get(w, {}).get(x)
            ab, pb = pr.get("archive_bytes"), pr.get("pyc_bytes")
            row([w, x, str(pr.get("listed", "n/a")),
                 f"{ab / 2**20:.2f}" if ab else "n/a",
                 f"{pb / 2**20:.2f}" + (f" ({pr['pyc_unknown']} unknown)" if pr.get("pyc_unknown") else "")
                 if pb else "n/a",
                 f"{ab / pb:.2f}x" if ab and pb else "n/a",
                 f"{pr['dump_seconds']:.2f}" if "dump_seconds" in pr else "n/a",
                 mib(pr["dump_hwm_kb"]) if pr.get("dump_hwm_kb") else "n/a",
                 str(pr.get("check_served", "n/a")), str(pr.get("check_fallbacks", "n/a")),
                 "FAILED: " + md_escape(fail) if fail else "ok"])
    a("")
    # 8. trace overhead
    a("## Trace overhead (whole-process wall of a TRACE run vs plain CPython, same rounds)")
    a("")
    row(["workload", "plain", "seed TRACE", "pycds TRACE", "seed / plain", "pycds / plain"])
    row(["---"] * 6)
    for w in wls:
        p, s, c = st.get(f"{w}/plain"), st.get(f"{w}/trace-seed"), st.get(f"{w}/trace-pycds")
        if s is None and c is None:
            pr = res["prep"].get(w, {})
            ts, tc = pr.get("seed", {}).get("trace_seconds"), pr.get("pycds", {}).get("trace_seconds")

            def single(x, t):
                if x in unavailable:
                    return na(unavailable[x])
                return f"{t * 1e3:.1f}" if t else "n/a"

            row([w + " (single trace run)", cell(p, "wall"), single("seed", ts), single("pycds", tc),
                 f"{ts / p['wall'][1]:.2f}x" if ts and p and p.get("wall") else "n/a",
                 f"{tc / p['wall'][1]:.2f}x" if tc and p and p.get("wall") else "n/a"])
            continue
        row([w, cell(p, "wall"), cell(s, "wall"), cell(c, "wall"),
             fmt_ratio(ratio(s and s.get("wall"), p and p.get("wall"))),
             fmt_ratio(ratio(c and c.get("wall"), p and p.get("wall")))])
    a("")
    # 9. scale
    scale = [w for w in wls if w.startswith("scale-")]
    if scale:
        a("## Scale: time against the number of modules")
        a("")
        row(["N", "plain wall", "seed wall", "pycds wall", "plain imports", "seed imports",
             "pycds imports", "floor imports", "pycds ms/module (imports)", "pycds / plain (wall)"])
        row(["---"] * 10)
        for w in scale:
            n = int(w.split("-")[1])
            p, s, c, f = (st.get(f"{w}/{x}") for x in SIDES + ("floor",))
            per = f"{c['imports'][1] * 1e3 / n:.3f}" if c and c.get("imports") else "n/a"
            row([str(n), cell(p, "wall", ms), cell(s, "wall", ms), cell(c, "wall", ms),
                 cell(p, "imports", ms), cell(s, "imports", ms), cell(c, "imports", ms),
                 cell(f, "imports", ms), per,
                 fmt_ratio(ratio(c and c.get("wall"), p and p.get("wall")))])
        a("")
    # failures
    fails = []
    for sid, s in sorted(st.items()):
        if s.get("failed"):
            fails.append((sid, s["failed"]))
    for w, d in res["failed"].items():
        for x, why in d.items():
            fails.append((f"{w}/{x} (preparation)", why))
    if fails:
        a("## Failures")
        a("")
        a("Recorded as they happened; a failed side is not measured further. Full stderr tails "
          "are in results.json.")
        a("")
        seen = set()
        for sid, why in fails:
            if (sid, why) in seen:
                continue
            seen.add((sid, why))
            a(f"- `{sid}`: {md_escape(why)}")
        a("")
    if res.get("plots"):
        a("## Plots")
        a("")
        for p in res["plots"]:
            a(f"![{p}]({p})")
        a("")
    if res.get("notes"):
        a("## Notes")
        a("")
        for n in res["notes"]:
            a(f"- {n}")
        a("")
    return "\n".join(L)


def print_summary(res):
    st = res["stats"]
    print()
    print("=" * 78)
    print(f"summary ({res['rounds']} rounds{', --quick' if res['quick'] else ''}): median wall ms "
          "[ratio to plain]")
    for w in res["workloads"] + ["empty"]:
        parts = []
        base = st.get(f"{w}/plain", {}).get("wall")
        for x in SIDES:
            s = st.get(f"{w}/{x}") or {}
            if s.get("wall"):
                r = ratio(s["wall"], base)
                parts.append(f"{x} {s['wall'][1] * 1e3:8.1f}" + (f" [{r:.2f}x]" if x != "plain" and r else ""))
            elif s.get("unavailable"):
                parts.append(f"{x} n/a")
            elif s.get("failed"):
                parts.append(f"{x} FAILED")
        print(f"  {w:<12} " + "   ".join(parts))
    for w in res["workloads"]:
        share, au, fi = ((st.get(f"{w}/{x}") or {}).get("wall") for x in ("pycds", "pycds-auto", "pycds-auto-first"))
        base = (st.get(f"{w}/plain") or {}).get("wall")
        if au and share and fi and base:
            print(f"  {w:<12} AUTO: steady {au[1] * 1e3:8.1f} [{ratio(au, share):.3f}x SHARE]   "
                  f"first run {fi[1] * 1e3:8.1f} [{ratio(fi, base):.3f}x plain]")
    for w in res["workloads"]:
        lazy = [(x, (st.get(f"{w}/{x}") or {}).get("wall")) for x in LAZY_SIDES]
        if all(v for _, v in lazy) and lazy:
            (_, pl), (_, cl) = lazy
            print(f"  {w:<12} lazy: plain-lazy {pl[1] * 1e3:8.1f}   pycds-lazy {cl[1] * 1e3:8.1f} "
                  f"[{ratio(cl, pl):.2f}x plain-lazy]")
    paired = []
    for case, _, what in empty_cases(res["workloads"]):
        for x in MODE_SIDES:
            r = (st.get(f"{case}/{x}") or {}).get("paired_ratio")
            if r is not None:
                paired.append(f"{x} {what} {r:.3f}x")
    if paired:
        print("  python -c pass, paired ratio to plain: " + ", ".join(paired))
    for w in res["workloads"]:
        parts = []
        for x in SIDES + ("floor",):
            s = st.get(f"{w}/{x}") or {}
            if s.get("imports"):
                parts.append(f"{x} {s['imports'][1] * 1e3:.1f}")
        print(f"  imports {w:<12} " + "  ".join(parts))
    pss = res.get("pss", {})
    if pss:
        print("  PSS of %d app processes (MiB): " % res["pss_procs"] + "  ".join(
            f"{x} {pss[x]['pss_kb'] / 1024:.1f}" if "pss_kb" in pss.get(x, {})
            else f"{x} n/a" if pss.get(x, {}).get("unavailable") else f"{x} FAILED"
            for x in SIDES))
    for side, why in (res.get("unavailable") or {}).items():
        print(f"  {side}: n/a: {why} (not measured)")
    print(f"results: {res['results_md']}")
    print("=" * 78)


# ---------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 rounds, 1 PSS repetition (a few minutes)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds per series (default 20, --quick 5)")
    ap.add_argument("--scale", default="100,1000,5000", help="module counts of the scale workload")
    ap.add_argument("--pss-procs", type=int, default=8, help="concurrent processes for the PSS figure")
    ap.add_argument("--pycds-src", default=str(BENCH.parent), help="pycds checkout to install")
    ap.add_argument("--reinstall", action="store_true", help="reinstall pycds into its venv")
    ap.add_argument("--no-plots", action="store_true", help="skip matplotlib and the PNGs")
    ap.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR),
                    help="venvs, lists, archives and scale packages (default: bench/.work for "
                         "CPython 3.11, bench/.work-X.Y for any other version; this one: "
                         f"{os.path.relpath(DEFAULT_WORK_DIR)})")
    ap.add_argument("--results-dir", default=str(DEFAULT_RESULTS_DIR),
                    help="where results.md, results.json and the plots go (default: bench/results "
                         "for CPython 3.11, bench/results/cpython-X.Y for any other version; this "
                         f"one: {os.path.relpath(DEFAULT_RESULTS_DIR)})")
    args = ap.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 20)
    pss_reps = 1 if args.quick else 3
    scale_ns = [int(x) for x in args.scale.split(",") if x.strip()]
    # The interpreter as it was invoked ("python" for the documented 3.11 command, "python3.13"
    # inside the trixie chroot, ...).
    interpreter = os.path.basename(sys.executable) or "python"
    command = interpreter + " " + " ".join(
        shlex.quote(a) for a in [os.path.relpath(__file__)] + sys.argv[1:])

    if sys.implementation.name != "cpython":
        print("run this with CPython", file=sys.stderr)
        return 2
    if sys.version_info[:2] not in ((3, 11), (3, 13), (3, 14), (3, 15)):
        log(f"warning: pycds is built and tested for CPython 3.11, 3.13, 3.14 and 3.15; this is "
            f"{platform.python_version()}")
    bench = Bench(args)
    info = machine_info(bench.venvs.pycds_src)
    log(f"{command}: {rounds} rounds; work dir {bench.work}")
    bench.venvs.setup(with_tools=not args.no_plots)
    workloads = make_workloads(bench.work, scale_ns)
    for wl in workloads:
        bench.prepare(wl)
    jobs = bench.build_jobs(workloads)
    log(f"measuring {len(jobs)} series x {rounds} rounds, interleaved")
    bench.measure(jobs, rounds)
    log(f"PSS of {args.pss_procs} concurrent app processes, {pss_reps} repetition(s)")
    pss_raw = bench.pss(workloads[0], args.pss_procs, pss_reps)
    pss = {}
    for side, e in pss_raw.items():
        if e.get("samples"):
            med = {}
            for key in ("pss_kb", "rss_kb", "private_kb", "shared_kb"):
                med[key] = statistics.median(x[key] for x in e["samples"])
            pss[side] = med
        elif e.get("unavailable"):
            pss[side] = {"unavailable": e["unavailable"]}
        else:
            pss[side] = {"failed": e.get("failed", "not measured")}
    try:
        info["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    except OSError:
        pass

    res = {
        "command": command,
        "cwd": os.getcwd(),
        "quick": args.quick,
        "rounds": rounds,
        "pss_procs": args.pss_procs,
        "pss_reps": pss_reps,
        "machine": info,
        "elapsed_s": time.time() - bench.started,
        "workloads": [w.name for w in workloads],
        "labels": {w.name: w.label for w in workloads},
        "scale_ns": scale_ns,
        "prep": {w.name: w.prep for w in workloads},
        "failed": {w.name: dict(w.failed) for w in workloads if w.failed},
        "stats": bench.stats(),
        "samples": {sid: s["samples"] for sid, s in bench.series.items()},
        "errors": {sid: s.get("error") for sid, s in bench.series.items() if s.get("error")},
        "pss": pss,
        "pss_samples": pss_raw,
        "versions": {side: bench.venvs.versions(side) for side in bench.venvs.sides()},
        "unavailable": dict(bench.venvs.unavailable),
        "notes": [
            "Every measured child gets our environment minus PYTHON*, PYCDS* and VIRTUAL_ENV; in "
            "particular PYTHONDONTWRITEBYTECODE is removed, and each workload ran once per side "
            "with bytecode writing on (and the venvs were compileall'ed) before any measurement, "
            "so plain CPython reads valid .pyc files as a normal installation does.",
            "Rounds interleave every series (plain, seed, pycds, floor, traces, then the "
            "`python -c pass` cases) so that machine noise hits all sides alike.",
        ] + [
            f"{side}: n/a: {why}. The runner installs {SEED_REQUIREMENT} from published wheels "
            "only (never by building its sdist for an interpreter it was not released for); "
            "where pip finds none, the side is not measured and no figure is given for it."
            for side, why in bench.venvs.unavailable.items()
        ] + bench.venvs.notes,
        "results_md": str(bench.results_dir / "results.md"),
    }
    json_path = bench.results_dir / "results.json"
    json_path.write_text(json.dumps(res, indent=1, default=str))
    plots = []
    tools_py = bench.venvs.python.get("tools")
    if tools_py and not args.no_plots:
        r = subprocess.run([str(tools_py), str(BENCH / "plot.py"), str(json_path), str(bench.results_dir)],
                           env=child_env(), capture_output=True, text=True)
        plots = [line.strip() for line in r.stdout.splitlines() if line.strip().endswith(".png")]
        if r.returncode != 0 or r.stderr.strip():
            log(f"plotting: {tail(r.stderr, 10, 2000)}")
    res["plots"] = plots
    res["elapsed_s"] = time.time() - bench.started
    json_path.write_text(json.dumps(res, indent=1, default=str))
    (bench.results_dir / "results.md").write_text(render_markdown(res))
    print_summary(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
