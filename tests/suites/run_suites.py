#!/usr/bin/env python3
"""Real test suites, run plain and with their imports served by pycds.

    .venv/bin/python tests/suites/run_suites.py            # the full set (tens of minutes)
    .venv/bin/python tests/suites/run_suites.py --quick    # a few minutes
    .venv/bin/python tests/suites/run_suites.py --only test_json attrs   # chosen suites

For each suite (a CPython regression-test module run by ``python -m test``, or a third-party
package's pytest suite):

1. run it plainly;
2. run it again under ``PYCDSMODE=TRACE`` and dump the traced list into an archive;
3. run it a third time under ``PYCDSMODE=SHARE`` with that archive;

then compare the outcome of every single test case (from JUnit XML) between the plain and the
SHARE run (and the TRACE run). A suite whose outcomes differ is run plain and under SHARE once
more, to tell a flaky test from a difference that follows the archive.

Everything runs in virtual environments made here, under ``tests/suites/.work/`` (git-ignored),
from a pycds wheel built from this checkout: ``venv-stdlib`` (pycds only) and ``venv-3p``
(pycds, pytest and the third-party packages with their test requirements). Each venv gets one
extra file, ``zz-pycds-suites-probe.pth``: when ``PYCDS_SUITES_INFO`` names a directory, every
Python process started from the venv writes ``cds.info()`` there at exit (one file per pid), which
is how the number of modules served is counted. pycds itself is not modified. The same
variable is set in all three runs, so the runs differ only by ``PYCDSMODE``. Every run gets the
caller's environment less its ``PYTHON*`` and ``PYCDS*`` variables.

The table goes to ``tests/suites/RESULTS.md`` (``--quick`` and ``--only`` write
``tests/suites/.work/RESULTS-partial.md`` unless ``--output`` is given), the raw data to
``tests/suites/.work/results.json``. The hand-written analysis in ``tests/suites/analysis.md`` is
included in RESULTS.md as is.
"""

from __future__ import annotations

import argparse
import ast
import collections
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = HERE / ".work"

# CPython regression tests: every module the issue names, then a broad sample of the standard
# library (import machinery, code objects, text, data structures, I/O, processes).
STDLIB_TESTS = [
    # named by the issue
    "test_importlib", "test_import", "test_json", "test_email", "test_inspect",
    "test_traceback", "test_pkgutil", "test_runpy", "test_zipimport",
    # import, code objects and the compiler
    "test_compile", "test_code", "test_marshal", "test_sys", "test_ast", "test_dis",
    "test_modulefinder", "test_compileall", "test_py_compile", "test_zipapp", "test_linecache",
    "test_cmd_line_script", "test_frame", "test_sys_settrace", "test_exceptions", "test_types",
    "test_builtin", "test_doctest", "test_pydoc", "test_site", "test_atexit", "test_tokenize",
    "test_warnings", "test_trace", "test_pdb",
    # libraries
    "test_codecs", "test_collections", "test_dataclasses", "test_functools", "test_re",
    "test_typing", "test_enum", "test_argparse", "test_logging", "test_unittest",
    "test_pathlib", "test_pickle", "test_copy", "test_contextlib", "test_abc", "test_string",
    "test_textwrap", "test_datetime", "test_decimal", "test_fractions", "test_statistics",
    "test_difflib", "test_pprint", "test_configparser", "test_csv", "test_urlparse",
    "test_ipaddress", "test_uuid", "test_xml_etree", "test_sqlite3", "test_zipfile",
    "test_tarfile", "test_shutil", "test_tempfile", "test_os", "test_subprocess",
    "test_threading", "test_weakref", "test_tomllib", "test_gettext", "test_calendar",
    "test_operator", "test_itertools", "test_random", "test_struct", "test_asyncio",
    "test_contextlib_async", "test_hashlib", "test_base64", "test_binascii", "test_heapq",
    "test_bisect", "test_queue", "test_sched", "test_selectors", "test_http_cookies",
    "test_html", "test_htmlparser", "test_mailbox", "test_mimetypes", "test_plistlib",
    "test_locale", "test_time", "test_signal", "test_glob", "test_fnmatch", "test_filecmp",
    "test_fileinput", "test_getopt", "test_optparse", "test_shlex", "test_hmac", "test_stat",
    "test_posixpath", "test_genericpath", "test_io", "test_memoryio", "test_bytes",
    "test_unicode", "test_math", "test_bdb", "test_profile", "test_cprofile", "test_timeit",
    "test_lib2to3", "test_sysconfig", "test_cmd_line", "test_grammar", "test_syntax",
    "test_symtable", "test_keyword", "test_float", "test_int", "test_long", "test_set",
    "test_dict", "test_list", "test_deque", "test_ordered_dict", "test_iter",
    "test_generators", "test_coroutines", "test_asyncgen", "test_descr", "test_class",
    "test_scope", "test_funcattrs",
]
STDLIB_QUICK = [
    "test_json", "test_pkgutil", "test_runpy", "test_zipimport", "test_traceback",
    "test_import",
]
# regrtest resources: everything that needs no network, display, sound or huge disk, and is not
# merely the slow variant of a test already run.
RESOURCES = "all,-network,-urlfetch,-gui,-audio,-curses,-largefile,-cpu,-decimal,-tzdata"


@dataclass
class Package:
    name: str           # the distribution name on PyPI
    version: str
    test_deps: list     # its test requirements (pinned), installed into venv-3p
    pytest_args: list = field(default_factory=list)
    quick: bool = True  # part of --quick


PACKAGES = [
    Package("attrs", "26.1.0",
            ["hypothesis==6.170.15", "cloudpickle==3.1.2", "pympler==1.1"]),
    Package("packaging", "26.3",
            ["hypothesis==6.170.15", "pretend==1.0.9", "tomli-w==1.2.0"], quick=False),
    Package("click", "8.5.1", []),
]
PYTEST = "pytest==9.2.0"
PROBE_PTH = "zz-pycds-suites-probe.pth"
# The dumper's note on sysconfig's data module, which nearly every suite imports: reported once.
SYSCONFIGDATA = "'_sysconfigdata_"

# The probe, run by site.py (after 00-pycds.pth) when PYCDS_SUITES_INFO is set: register an
# atexit hook that writes repr(cds.info()) to $PYCDS_SUITES_INFO/info-<pid>.txt. It imports
# only atexit (built in) at start-up, and at exit takes cds.info() before anything else. Like
# pycds, it stays off under -E and -I: tests start such interpreters to get a pristine one
# (some count the warnings a child prints, say under -X warn_default_encoding), and pycds is
# off in them anyway.
_PROBE_CODE = '''\
import atexit, sys
def _pycds_suites_probe(d=os.environ["PYCDS_SUITES_INFO"], os=os, sys=sys):
    try:
        import cds
        info = cds.info()
    except BaseException as exc:
        info = {"error": "probe: " + repr(exc)}
    info["pid"] = os.getpid()
    info["argv"] = list(sys.argv)
    try:
        with open(os.path.join(d, "info-%d.txt" % os.getpid()), "w", encoding="utf-8") as f:
            f.write(repr(info))
    except OSError:
        pass
sys.flags.ignore_environment or atexit.register(_pycds_suites_probe)
'''
PROBE_LINE = 'import os; os.environ.get("PYCDS_SUITES_INFO") and exec(%r)\n' % _PROBE_CODE


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(cmd, **kw):
    """Run a set-up command, failing loudly."""
    kw.setdefault("check", True)
    return subprocess.run([str(c) for c in cmd], **kw)


def clean_env(**extra):
    """The caller's environment without PYCDS* and PYTHON* variables (a PYTHONDONTWRITEBYTECODE
    or PYTHONUNBUFFERED of the caller's would fail tests that check their defaults) and without
    VIRTUAL_ENV, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYCDS", "PYTHON")) and k != "VIRTUAL_ENV"}
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# set-up: the pycds wheel, the two venvs, the third-party sources


def build_wheel():
    out = WORK / "wheels"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    log("building the pycds wheel from this checkout")
    sh([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, ROOT])
    (wheel,) = out.glob("pycds-*.whl")
    return wheel


def make_venv(path: Path, wheel: Path, requirements, with_pip=True):
    """A venv from the base interpreter with the wheel and ``requirements``. Without pip, the
    venv holds nothing but pycds and the probe (no setuptools, whose ``distutils-precedence.pth``
    would import ``_distutils_hack`` into every process), and this interpreter's pip installs
    into it."""
    log(f"creating {path.relative_to(ROOT)}")
    shutil.rmtree(path, ignore_errors=True)
    sh([sys.executable, "-m", "venv", *([] if with_pip else ["--without-pip"]), path])
    py = path / "bin" / "python"
    pip = [py, "-m", "pip"] if with_pip else [sys.executable, "-m", "pip", "--python", py]
    sh([*pip, "install", "-q", "--disable-pip-version-check", wheel, *requirements])
    purelib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, PROBE_PTH).write_text(PROBE_LINE)
    return py


def fetch_sdist(pkg: Package) -> Path:
    """The package's sdist from PyPI, unpacked under .work/src; returns the source tree."""
    sdists = WORK / "sdist"
    sdists.mkdir(parents=True, exist_ok=True)
    src = WORK / "src" / f"{pkg.name}-{pkg.version}"
    if src.is_dir():
        return src
    found = list(sdists.glob(f"{pkg.name}-{pkg.version}.tar.gz"))
    if not found:
        log(f"downloading the {pkg.name} {pkg.version} sdist")
        sh([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
            "--no-binary", ":all:", "--no-deps", f"{pkg.name}=={pkg.version}", "-d", sdists])
        found = list(sdists.glob(f"{pkg.name}-{pkg.version}.tar.gz"))
    with tarfile.open(found[0]) as tf:
        tf.extractall(WORK / "src", filter="data")
    return src


# ---------------------------------------------------------------------------------------------
# one run of one suite


@dataclass
class Run:
    phase: str                  # plain, trace, share (plain2, share2 for re-runs)
    returncode: int | None
    seconds: float
    cases: dict                 # test id -> outcome (ids made unique with #n)
    counts: dict
    result_line: str            # regrtest's "Result: ..." or pytest's last line
    procs: list                 # cds.info() of every process, main process first
    log: str

    @property
    def main_info(self):
        return self.procs[0] if self.procs and self.procs[0].get("main") else None


def _outcome(tc):
    tags = {c.tag for c in tc}
    if "error" in tags:
        return "error"
    if "failure" in tags:
        return "failure"
    if "skipped" in tags:
        skipped = tc.find("skipped")
        if skipped is not None and skipped.get("type") == "pytest.xfail":
            return "xfail"
        return "skipped"
    if "output" in tags:     # regrtest: expected failure
        return "xfail"
    if "outcome" in tags:    # regrtest: unexpected success
        return "xpass"
    return "passed"


def parse_junit(path: Path):
    cases = {}
    messages = {}
    if not path.exists():
        return cases, messages
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return cases, messages
    previous = "the start"
    for tc in root.iter("testcase"):
        name = tc.get("name")
        if name is None:
            # regrtest leaves a test case whose subtests failed without a name (and without
            # its traceback): it is the test run right after the previous one
            name, outcome = f"{UNNAMED}, run after {previous}>", "failure"
        else:
            previous = name
            if tc.get("classname"):
                name = f"{tc.get('classname')}::{name}"
            outcome = _outcome(tc)
        key, n = name, 1
        while key in cases:
            n += 1
            key = f"{name} #{n}"
        cases[key] = outcome
        if outcome in ("error", "failure"):
            el = tc.find("failure") if tc.find("failure") is not None else tc.find("error")
            text = ""
            if el is not None:
                text = el.get("message") or el.text or ""
            messages[key] = text.strip()[-1500:]
    return cases, messages


def count(cases):
    c = collections.Counter(cases.values())
    return {
        "run": len(cases),
        "passed": c["passed"],
        "failed": c["failure"] + c["error"] + c["xpass"],
        "skipped": c["skipped"] + c["xfail"],
        "detail": dict(c),
    }


def read_infos(info_dir: Path, main_pid: int):
    procs = []
    for f in sorted(info_dir.glob("info-*.txt")):
        try:
            info = ast.literal_eval(f.read_text())
        except (ValueError, SyntaxError):
            continue
        info["main"] = info.get("pid") == main_pid
        procs.append(info)
    procs.sort(key=lambda i: (not i["main"], i.get("pid", 0)))
    return procs


def run_phase(suite, phase, cmd, cwd, env_extra, timeout):
    d = suite.dir / phase
    shutil.rmtree(d, ignore_errors=True)
    info_dir = d / "info"
    info_dir.mkdir(parents=True)
    xml = d / "junit.xml"
    cmd = [str(c).replace("{xml}", str(xml)) for c in cmd]
    env = clean_env(PYCDS_SUITES_INFO=str(info_dir), **env_extra)
    t0 = time.monotonic()
    out_path = d / "output.txt"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            rc = None
    seconds = time.monotonic() - t0
    text = out_path.read_text(errors="replace")
    cases, messages = parse_junit(xml)
    result_line = ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("Result:") or (
            re.match(r"^=* ?(\d+ (passed|failed|error|errors|skipped|deselected)\b.*) in ", s)
        ):
            result_line = s.strip("= ")
    if rc is None:
        result_line = f"TIMEOUT after {timeout}s; " + result_line
    procs = read_infos(info_dir, proc.pid)
    run = Run(phase, rc, seconds, cases, count(cases), result_line, procs, str(out_path))
    run.messages, run.main_pid = messages, proc.pid
    return run


# ---------------------------------------------------------------------------------------------
# suites


class Suite:
    kind = ""

    def __init__(self, name):
        self.name = name
        self.dir = WORK / "runs" / name
        self.runs: dict[str, Run] = {}
        self.dump_summary = ""
        self.dump_notes: list[str] = []
        self.verdict = ""
        self.diffs: dict[str, list] = {}

    # subclasses: python, cwd, command, before_run()
    def before_run(self):
        pass

    def phase(self, phase, timeout):
        self.before_run()
        extra = {}
        if phase.startswith("trace"):
            extra = {"PYCDSMODE": "TRACE", "PYCDSLIST": str(self.dir / "mod.lst")}
        elif phase.startswith("share"):
            extra = {"PYCDSMODE": "SHARE", "PYCDSARCHIVE": str(self.dir / "mod.img")}
        run = run_phase(self, phase, self.command(), self.cwd(), extra, timeout)
        self.runs[phase] = run
        log(f"  {self.name} {phase:6s} {run.counts['run']:6d} run {run.counts['passed']:6d} passed "
            f"{run.counts['failed']:4d} failed {run.counts['skipped']:5d} skipped "
            f"rc={run.returncode} {run.seconds:6.1f}s  {run.result_line}")
        return run

    def dump(self):
        lst, img = self.dir / "mod.lst", self.dir / "mod.img"
        proc = subprocess.run([str(self.python), "-m", "cds.dump", "-v", str(lst), str(img)],
                              capture_output=True, text=True, env=clean_env())
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        self.dump_summary = next((ln for ln in lines if "archived" in ln), "")
        self.dump_notes = [ln for ln in lines if "archived" not in ln]
        if proc.returncode != 0:
            self.dump_summary = f"dump failed (exit {proc.returncode})"
        log(f"  {self.name} dump   {self.dump_summary}")

    def run_all(self, timeout, reruns):
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.phase("plain", timeout)
        self.phase("trace", timeout)
        self.dump()
        self.phase("share", timeout)
        self.compare()
        if self.verdict == "same" or reruns < 1:
            return
        log(f"  {self.name}: outcomes differ; running plain and SHARE once more")
        self.phase("plain2", timeout)
        self.phase("share2", timeout)
        self.compare()

    def compare(self):
        """Name the test cases regrtest left unnamed, then set ``diffs`` and ``verdict``."""
        r = self.runs
        for phase, run in r.items():
            name_unnamed(run, r["share"] if phase == "plain" else r["plain"])
        self.diffs = {"trace": diff(r["plain"], r["trace"]), "share": diff(r["plain"], r["share"])}
        if not self.diffs["share"]:
            self.verdict = "same"
            return
        if "share2" not in r:
            self.verdict = "DIFFERENT (not re-run)"
            return
        self.diffs["plain2"] = diff(r["plain"], r["plain2"])
        self.diffs["share2"] = diff(r["share"], r["share2"])
        self.diffs["second"] = diff(r["plain2"], r["share2"])
        first = {d[0] for d in self.diffs["share"]}
        second = {d[0] for d in self.diffs["second"]}
        if not second:
            self.verdict = "flaky: the difference did not recur"
        elif first & second and all(
            r["share"].cases.get(t) == r["share2"].cases.get(t)
            and r["plain"].cases.get(t) == r["plain2"].cases.get(t)
            for t in first & second
        ):
            self.verdict = "DIFFERENT: recurs under SHARE"
        else:
            self.verdict = "unstable: differs in both rounds, not the same way"


UNNAMED = "<test with failed subtests"


def name_unnamed(run: Run, ref: Run):
    """regrtest's JUnit XML leaves a test whose subtests failed without a name. Tests run in the
    same order every time (no ``-r``), so when ``ref`` (another run of the same suite) has as
    many test cases, the one at the same position is that test."""
    if not any(k.startswith(UNNAMED) for k in run.cases) or len(run.cases) != len(ref.cases):
        return
    named = {}
    messages = getattr(run, "messages", {})
    for (key, outcome), ref_key in zip(run.cases.items(), ref.cases):
        if key.startswith(UNNAMED) and not ref_key.startswith(UNNAMED):
            new = ref_key if ref_key not in run.cases else ref_key + " (subtests)"
            if key in messages:
                messages[new] = messages.pop(key)
            key = new
        named[key] = outcome
    run.cases = named


def diff(a: Run, b: Run):
    """[(test id, outcome in a, outcome in b)] for every test whose outcome differs, plus a
    pseudo-entry when the process exit status differs."""
    out = []
    for t in sorted(set(a.cases) | set(b.cases)):
        oa, ob = a.cases.get(t, "absent"), b.cases.get(t, "absent")
        if oa != ob:
            out.append((t, oa, ob))
    if a.returncode != b.returncode:
        out.append(("<exit status>", str(a.returncode), str(b.returncode)))
    return out


class StdlibSuite(Suite):
    kind = "CPython"

    def __init__(self, name, python, per_test_timeout):
        super().__init__(name)
        self.python = python
        self.per_test_timeout = per_test_timeout

    def cwd(self):
        return self.dir

    def command(self):
        return [self.python, "-m", "test", "--junit-xml", "{xml}", "-u", RESOURCES,
                "--timeout", str(self.per_test_timeout), self.name]


class PytestSuite(Suite):
    kind = "third-party"

    def __init__(self, pkg: Package, python, src: Path):
        super().__init__(f"{pkg.name} {pkg.version}")
        self.dir = WORK / "runs" / pkg.name
        self.pkg = pkg
        self.python = python
        self.src = src

    def cwd(self):
        return self.src

    def before_run(self):
        # Hypothesis keeps failing examples between runs: every run starts from none.
        shutil.rmtree(self.src / ".hypothesis", ignore_errors=True)

    def command(self):
        args = [self.python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "--junit-xml", "{xml}", *self.pkg.pytest_args]
        if any(d.startswith("hypothesis") for d in self.pkg.test_deps):
            args.append("--hypothesis-seed=0")
        return args


# ---------------------------------------------------------------------------------------------
# the report


def served_stats(run: Run | None):
    if run is None:
        return None
    main = run.main_info
    share_procs = [p for p in run.procs if p.get("mode") == "SHARE"]
    distinct = set()
    fallbacks = {}
    for p in share_procs:
        distinct.update(p.get("served", []))
        fallbacks.update(p.get("fallbacks", {}))
    return {
        "main_served": len(set(main["served"])) if main and main.get("mode") == "SHARE" else None,
        "main_served_imports": len(main["served"]) if main else 0,
        "main_fallbacks": dict(main.get("fallbacks", {})) if main else {},
        "main_error": main.get("error") if main else "no cds.info() from the main process",
        "procs": len(run.procs),
        "share_procs": len(share_procs),
        "distinct_served": len(distinct),
        "fallbacks": fallbacks,
    }


def fmt_counts(run: Run):
    c = run.counts
    return c["run"], c["passed"], c["failed"], c["skipped"]


def checkout_state():
    """The commit the pycds wheel is built from, and whether python/ or crates/ have local
    changes on top of it."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "python",
                            "crates"], capture_output=True, text=True).stdout.strip()
    return commit, bool(dirty)


def write_report(suites, args, out_path: Path, started, elapsed, commit, dirty):
    analysis = HERE / "analysis.md"
    cmd = "/work/main/.venv/bin/python tests/suites/run_suites.py " + " ".join(args.argv)
    L = []
    L.append("# Real test suites under SHARE\n")
    L.append("CPython's own regression tests and three third-party packages' test suites, each run "
             "plainly, then traced and dumped into an archive, then with their imports served "
             "from that archive (`PYCDSMODE=SHARE`). The outcome of every test case (from JUnit "
             "XML) is compared between the plain and the SHARE run. Written by "
             "[`run_suites.py`](run_suites.py); see its docstring for how it works.\n")
    L.append(f"- command: `{cmd.strip()}` (from the repository root)")
    L.append(f"- date: {started:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.0f} min in all")
    L.append(f"- pycds: commit {commit}{' with local changes' if dirty else ''}; "
             f"Python {platform.python_version()} ({sys.base_prefix}), "
             f"{platform.machine()}, {os.cpu_count()} CPUs")
    L.append(f"- regrtest: `python -m test --junit-xml F -u {RESOURCES} --timeout "
             f"{args.timeout} NAME`, one test module per process, no `-j`")
    L.append("- environment: the caller's, less every `PYTHON*`, `PYCDS*` and `VIRTUAL_ENV` "
             "variable; each run differs only by `PYCDSMODE` (and `PYCDSLIST`/`PYCDSARCHIVE`)")
    L.append("- third party: sdists from PyPI, installed (not editable) into a venv with their "
             "pinned test requirements; `python -m pytest -q -p no:cacheprovider` "
             "(`--hypothesis-seed=0` where Hypothesis is used) in the unpacked sdist\n")
    L.append("Columns: *tests*, *passed*, *failed* (failures, errors and unexpected successes) "
             "and *skipped* (skips and expected failures) are those of the SHARE run; "
             "*plain = SHARE* says whether every test case had the same outcome in the plain "
             "and the SHARE run (and *plain = TRACE* the same for the tracing run); *served* is "
             "the number of distinct modules the main process imported from the archive "
             "(`cds.info()['served']`; in brackets the number of imports when a test imported "
             "some module afresh), *archived* the number of modules in the suite's "
             "archive; the times are the plain and the SHARE run's wall-clock time.\n")
    L.append("| suite | tests | passed | failed | skipped | plain = SHARE | plain = TRACE "
             "| served | archived | plain s | SHARE s |")
    L.append("|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|")
    tot = collections.Counter()
    for s in suites:
        if "share" not in s.runs:
            L.append(f"| {s.name} | not run: {s.verdict} | | | | | | | | | |")
            continue
        share, plain = s.runs["share"], s.runs["plain"]
        run, passed, failed, skipped = fmt_counts(share)
        st = served_stats(share)
        archived = s.dump_summary.split("archived ")[-1].split(" modules")[0] \
            if "archived" in s.dump_summary else "?"
        same = "yes" if s.verdict == "same" else f"**{s.verdict}**"
        tsame = "yes" if not s.diffs.get("trace") else f"**no ({len(s.diffs['trace'])})**"
        served = st["main_served"] if st["main_served"] is not None else "n/a"
        if st["main_served_imports"] != st["main_served"] and st["main_served"] is not None:
            served = f"{served} ({st['main_served_imports']})"
        L.append(f"| {s.name} | {run} | {passed} | {failed} | {skipped} | {same} | {tsame} | "
                 f"{served} | {archived} | {plain.seconds:.1f} | {share.seconds:.1f} |")
        tot.update(run=run, passed=passed, failed=failed, skipped=skipped, suites=1,
                   same=s.verdict == "same", plain_s=plain.seconds, share_s=share.seconds)
        if st["main_served"]:
            tot.update(served=st["main_served"])
    L.append(f"| **all {tot['suites']} suites** | {tot['run']} | {tot['passed']} | "
             f"{tot['failed']} | {tot['skipped']} | {tot['same']} of {tot['suites']} | | "
             f"{tot['served']} | | {tot['plain_s']:.0f} | {tot['share_s']:.0f} |")
    L.append("")

    noted = [s.name for s in suites if any(SYSCONFIGDATA in n for n in s.dump_notes)]
    if noted:
        L.append(f"The dumper noted `'_sysconfigdata__linux_x86_64-linux-gnu' is not a module "
                 f"name` for {len(noted)} of the {len(suites)} suites (see *Other "
                 f"observations* below); that note is left out of the sections that follow.\n")
    L.append("## Failures and differences, suite by suite\n")
    L.append("Tests that fail (or errors) in a run, and every test whose outcome is not the same "
             "in two runs. A failure present in the plain run too is the test's own (this "
             "machine, this build), not pycds'.\n")
    any_detail = False
    for s in suites:
        if "share" not in s.runs:
            continue
        lines = []
        plain, share = s.runs["plain"], s.runs["share"]
        both_failed = sorted(t for t, o in share.cases.items()
                             if o in ("failure", "error", "xpass") and plain.cases.get(t) == o)
        if both_failed:
            lines.append(f"- fails in the plain run and under SHARE alike ({len(both_failed)}): "
                         + ", ".join(f"`{t}`" for t in both_failed[:12])
                         + (" ..." if len(both_failed) > 12 else ""))
        if plain.returncode != 0 or share.returncode != 0:
            lines.append(f"- exit status plain {plain.returncode}, SHARE {share.returncode}; "
                         f"plain: `{plain.result_line}`; SHARE: `{share.result_line}`")
        for key, title in (("share", "plain vs SHARE"), ("trace", "plain vs TRACE"),
                           ("plain2", "plain vs plain re-run"),
                           ("share2", "SHARE vs SHARE re-run"),
                           ("second", "plain re-run vs SHARE re-run")):
            d = s.diffs.get(key)
            if d:
                lines.append(f"- {title}: {len(d)} differ: "
                             + "; ".join(f"`{t}` {a} → {b}" for t, a, b in d[:10])
                             + (" ..." if len(d) > 10 else ""))
                if key in ("share", "second"):
                    run = s.runs["share" if key == "share" else "share2"]
                    for t, a, b in d[:3]:
                        msg = getattr(run, "messages", {}).get(t)
                        if msg:
                            tail = "\n".join(msg.splitlines()[-6:])
                            lines.append(f"  - `{t}` under SHARE:\n\n    ```\n"
                                         + "\n".join("    " + x for x in tail.splitlines())
                                         + "\n    ```")
        if s.verdict != "same":
            lines.append(f"- verdict: **{s.verdict}**")
        st = served_stats(share)
        if st["main_error"]:
            lines.append(f"- pycds error in the main process: `{st['main_error']}`")
        if st["main_fallbacks"]:
            fb = st["main_fallbacks"]
            reasons = collections.Counter(_reason_kind(r) for r in fb.values())
            lines.append(f"- imported normally instead of from the archive in the main process "
                         f"({len(fb)}): " + ", ".join(f"{n} × {r}" for r, n in reasons.items())
                         + "; e.g. " + ", ".join(f"`{k}`" for k in list(fb)[:5]))
        if s.dump_notes:
            notes = [n.strip() for n in s.dump_notes if n.strip()]
            gone = [n for n in notes if "not found on its search path" in n]
            other = [n for n in notes if n not in gone and SYSCONFIGDATA not in n]
            if gone:
                lines.append(f"- not archived, gone by dump time ({len(gone)}; modules the "
                             f"tests wrote to temporary directories and deleted): "
                             + ", ".join(f"`{n.split('skipped ')[-1].split(':')[0]}`"
                                         for n in gone[:6]) + (" ..." if len(gone) > 6 else ""))
            if other:
                lines.append(f"- dumper notes ({len(other)}): "
                             + "; ".join(f"`{n.replace(str(WORK), '.work')}`" for n in other[:4])
                             + (" ..." if len(other) > 4 else ""))
        if st["share_procs"] > 1:
            lines.append(f"- {st['share_procs']} processes ran under SHARE (the test starts "
                         f"interpreters without `-E`/`-I`), serving {st['distinct_served']} "
                         f"distinct modules between them")
        if lines:
            any_detail = True
            L.append(f"### {s.name}\n")
            L.extend(lines)
            L.append("")
    if not any_detail:
        L.append("None.\n")

    if analysis.exists():
        L.append(analysis.read_text().rstrip() + "\n")
    out_path.write_text("\n".join(L))
    log(f"wrote {out_path}")


def _reason_kind(reason: str) -> str:
    if "changed since the dump" in reason:
        return "source changed"
    if "search path now finds" in reason:
        return "search path differs"
    if "unusable" in reason:
        return "archive entry unusable"
    return reason.split(":")[0][:40]


def save_json(suites, path: Path, meta: dict):
    data = []
    for s in suites:
        data.append({
            "suite": s.name, "kind": s.kind, "dir": str(s.dir), "verdict": s.verdict,
            "dump": s.dump_summary, "dump_notes": s.dump_notes, "diffs": s.diffs,
            "runs": {p: {"returncode": r.returncode, "seconds": r.seconds, "counts": r.counts,
                         "result": r.result_line, "log": r.log, "main_pid": r.main_pid,
                         "served": served_stats(r) if p.startswith("share") else None}
                     for p, r in s.runs.items()},
        })
    path.write_text(json.dumps({**meta, "suites": data}, indent=1, default=str))


def load_suites(path: Path):
    """The suites of an earlier run, from results.json and the JUnit XML and cds.info() files
    its runs left under .work/runs (for --report-only)."""
    data = json.loads(path.read_text())
    if isinstance(data, list):  # written before the metadata was saved
        data = {"suites": data, "argv": [], "timeout": 900,
                "started": (WORK / "wheels").stat().st_mtime,
                "elapsed": path.stat().st_mtime - (WORK / "wheels").stat().st_mtime}
    suites = []
    for d in data["suites"]:
        s = Suite(d["suite"])
        s.kind = d["kind"]
        s.dir = Path(d["dir"]) if "dir" in d else WORK / "runs" / d["suite"].split()[0]
        s.dump_summary, s.dump_notes, s.verdict = d["dump"], d["dump_notes"], d["verdict"]
        for phase, r in d["runs"].items():
            pdir = s.dir / phase
            cases, messages = parse_junit(pdir / "junit.xml")
            pids = [int(f.stem.split("-")[1]) for f in (pdir / "info").glob("info-*.txt")]
            # the main process started first: without its pid on record, the lowest one
            main_pid = r.get("main_pid") or min(pids, default=0)
            run = Run(phase, r["returncode"], r["seconds"], cases, count(cases), r["result"],
                      read_infos(pdir / "info", main_pid), r["log"])
            run.messages, run.main_pid = messages, main_pid
            s.runs[phase] = run
        if "plain" in s.runs and "share" in s.runs and "trace" in s.runs:
            s.compare()
        suites.append(s)
    return suites, data


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few suites only (minutes)")
    ap.add_argument("--only", nargs="+", metavar="SUITE",
                    help="run only these suites (CPython test module or package names)")
    ap.add_argument("--no-stdlib", action="store_true", help="skip CPython's tests")
    ap.add_argument("--no-third-party", action="store_true", help="skip third-party suites")
    ap.add_argument("--timeout", type=int, default=900,
                    help="per test module (regrtest --timeout) and per pytest run, seconds")
    ap.add_argument("--reruns", type=int, default=1,
                    help="re-run plain and SHARE once more when they differ (0: never)")
    ap.add_argument("--reuse-venvs", action="store_true",
                    help="keep the venvs of an earlier run instead of rebuilding pycds")
    ap.add_argument("--output", type=Path, help="where to write the report")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: write the report again from the last run's results "
                         "(.work/results.json and .work/runs), say after editing analysis.md")
    args = ap.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    partial = args.quick or args.only or args.no_stdlib or args.no_third_party
    out_path = args.output or (WORK / "RESULTS-partial.md" if partial else HERE / "RESULTS.md")

    if args.report_only:
        suites, meta = load_suites(WORK / "results.json")
        args.argv, args.timeout = meta["argv"], meta["timeout"]
        partial = any(a in ("--quick", "--only", "--no-stdlib", "--no-third-party")
                      for a in args.argv)
        out_path = args.output or (WORK / "RESULTS-partial.md" if partial else HERE / "RESULTS.md")
        started = datetime.datetime.fromtimestamp(meta["started"], datetime.timezone.utc)
        write_report(suites, args, out_path, started, meta["elapsed"], meta["commit"],
                     meta["dirty"])
        return 0

    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    commit, dirty = checkout_state()
    WORK.mkdir(exist_ok=True)

    stdlib = [] if args.no_stdlib else (STDLIB_QUICK if args.quick else STDLIB_TESTS)
    packages = [] if args.no_third_party else [p for p in PACKAGES if p.quick or not args.quick]
    if args.only:
        stdlib = [t for t in STDLIB_TESTS if t in args.only]
        packages = [p for p in PACKAGES if p.name in args.only]
        unknown = set(args.only) - set(stdlib) - {p.name for p in packages}
        for name in sorted(unknown):
            if name.startswith("test_"):
                stdlib.append(name)   # any other regrtest module
            else:
                ap.error(f"unknown suite {name!r}")

    venv_std, venv_3p = WORK / "venv-stdlib", WORK / "venv-3p"
    if args.reuse_venvs and (venv_std / "bin/python").exists() and \
            (not packages or (venv_3p / "bin/python").exists()):
        py_std, py_3p = venv_std / "bin/python", venv_3p / "bin/python"
        srcs = {p.name: fetch_sdist(p) for p in packages}
    else:
        wheel = build_wheel()
        py_std = make_venv(venv_std, wheel, [], with_pip=False) if stdlib else None
        py_3p = None
        srcs = {p.name: fetch_sdist(p) for p in packages}
        if packages:
            deps = sorted({d for p in packages for d in p.test_deps})
            py_3p = make_venv(venv_3p, wheel, [PYTEST, *deps])
            for p in packages:
                log(f"installing {p.name} {p.version} from its sdist into venv-3p")
                sh([py_3p, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "--no-deps", srcs[p.name]])
        if py_3p:
            frozen = subprocess.run([py_3p, "-m", "pip", "freeze"], capture_output=True,
                                    text=True).stdout
            (WORK / "venv-3p-freeze.txt").write_text(frozen)

    suites: list[Suite] = [StdlibSuite(t, py_std, args.timeout) for t in stdlib]
    suites += [PytestSuite(p, py_3p, srcs[p.name]) for p in packages]
    for i, s in enumerate(suites, 1):
        log(f"[{i}/{len(suites)}] {s.name}")
        try:
            s.run_all(args.timeout * 2, args.reruns)
        except Exception as exc:  # keep going: one broken suite must not hide the others
            s.verdict = f"runner error: {type(exc).__name__}: {exc}"
            log(f"  {s.name}: {s.verdict}")
        log(f"  {s.name}: {s.verdict}")
        save_json(suites[:i], WORK / "results.json",
                  {"argv": args.argv, "timeout": args.timeout, "started": started.timestamp(),
                   "elapsed": time.monotonic() - t0, "commit": commit, "dirty": dirty})

    write_report(suites, args, out_path, started, time.monotonic() - t0, commit, dirty)
    bad = [s for s in suites if s.verdict != "same"]
    print()
    print(out_path.read_text().split("\n## ")[0])
    if bad:
        print("suites whose outcomes differ: " + ", ".join(f"{s.name} ({s.verdict})"
                                                           for s in bad))
    return 1 if any(s.verdict.startswith(("DIFFERENT", "runner")) for s in bad) else 0


if __name__ == "__main__":
    sys.exit(main())
