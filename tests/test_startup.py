"""What having an archive costs a process at start-up, as behaviour: SHARE starts in the
extension (``pycds.pth`` loads it directly and calls ``_cds.boot()``), serves natively and
imports no Python module of pycds (until the program calls ``cds.info()``), and answers every
other import "not archived" natively. Timings are in the benchmark suite, not here."""

import json
import os
import struct

from archive_tools import Archive
from pycds_testing import run

PROBE = (
    "import sys, json\n"
    "before = sorted(m for m in sys.modules if m == 'cds' or m.startswith('cds.'))\n"
    "finders = [f.__name__ if isinstance(f, type) else type(f).__name__ for f in sys.meta_path]\n"
    "import {module}\n"
    "after = sorted(m for m in sys.modules if m == 'cds' or m.startswith('cds.'))\n"
    "import cds\n"
    "info = cds.info()\n"
    "print(json.dumps([before, finders, after, info['mode'], info['archive'], info['served']]))\n"
)


def make(project):
    """An archive of the project's own module only: what else a start-up imports is archived
    when traced (setuptools' `_distutils_hack`, Debian's `sitecustomize`) and is kept out here,
    so that the archive holds nothing a bare start-up imports."""
    project.write("main.py", "import helper\nprint(helper.X)\n")
    project.write("helper.py", "X = 'helper'\n")
    project.write("other.py", "Y = 1\n")
    project.trace("main.py")
    lines = [ln for ln in project.list.read_text().splitlines(True) if json.loads(ln)["name"] == "helper"]
    assert len(lines) == 1
    project.list.write_text("".join(lines))
    project.dump()


def probe(project, module, **extra):
    proc = project.share("-c", PROBE.format(module=module), **extra)
    return json.loads(proc.stdout), proc


def test_share_boots_and_serves_natively_without_pycds_python(project):
    make(project)
    (before, finders, after, mode, archive, served), proc = probe(project, "other")
    assert before == ["cds._cds"], before
    # One finder, although site may process the .pth twice (a venv's lib64 link).
    assert finders.count("ArchiveFinder") == 1, finders
    assert finders.index("ArchiveFinder") == finders.index("PathFinder") - 1
    # `other` is not archived: still no Python module of pycds until `import cds` itself.
    assert after == ["cds._cds"], after
    assert (mode, archive, served) == ("SHARE", str(project.archive), [])
    assert proc.stderr == ""

    (before, _, after, mode, archive, served), proc = probe(project, "helper")
    assert before == ["cds._cds"]
    # Served without the runtime, or even the `cds` package.
    assert after == ["cds._cds"] and served == ["helper"], (after, served)
    assert (mode, archive) == ("SHARE", str(project.archive))
    assert proc.stderr == ""


def test_served_module_has_the_archive_loader_and_info_reports_it(project):
    """The served module's loader is the archive's (a `SourceFileLoader` subclass, equal to the
    loader a normal import makes); `cds.info()`, which imports the runtime normally, reports
    what the native side served and released."""
    make(project)
    code = ("import sys, helper\n"
            "from importlib.machinery import SourceFileLoader\n"
            "l = helper.__spec__.loader\n"
            "print(type(l).__name__, type(l) is sys.modules['cds._cds'].ArchiveLoader, isinstance(l, SourceFileLoader), l == SourceFileLoader('helper', helper.__file__),\n"
            "      hash(l) == hash(SourceFileLoader('helper', helper.__file__)), l.get_source('helper') == open(helper.__file__).read())\n"
            "import cds; i = cds.info()\n"
            "print(i['served'], i['fallbacks'], i['error'], type(sys.modules['cds._runtime'].__loader__).__name__)\n"
            "f = next(f for f in sys.meta_path if type(f).__name__ == 'ArchiveFinder')\n"
            "print(f.archive is l._cds_archive, f.archive.path == f.path)\n")
    proc = project.share("-c", code)
    assert proc.stdout == ("ArchiveLoader True True True True True\n['helper'] {} None SourceFileLoader\n"
                           "True True\n"), proc.stdout
    assert proc.stderr == ""


def test_verbose_share_goes_through_the_runtime_with_the_same_finder(project):
    make(project)
    (before, finders, _, mode, _, served), proc = probe(project, "helper", PYCDSVERBOSE="2")
    assert "cds._runtime" in before and finders.count("ArchiveFinder") == 1
    assert (mode, served) == ("SHARE", ["helper"])
    assert "serving from" in proc.stderr and "served helper from the archive" in proc.stderr


def test_unusable_archive_reported_once_and_program_runs(project):
    make(project)
    project.archive.write_bytes(b"not an archive at all" * 10)
    proc = project.share("main.py", PYCDSVERBOSE="1")
    assert proc.stdout == "helper\n"
    assert proc.stderr.count("archive not used, running normally") == 1, proc.stderr
    # Without diagnostics: silent, and cds.info() says why.
    proc = project.share("-c", "import sys, helper, cds; print(cds.info()['error'])\n"
                               "print([f.archive for f in sys.meta_path if type(f).__name__ == 'ArchiveFinder'])")
    assert "not an archive" in proc.stdout or "magic" in proc.stdout.lower() or "truncated" in proc.stdout, proc.stdout
    assert proc.stdout.endswith("\n[None]\n") and proc.stderr == "", proc.stdout


def test_trace_and_dump_modes_still_start_from_the_runtime(project):
    project.write("main.py", "import helper\nprint(helper.X)\n")
    project.write("helper.py", "X = 'helper'\n")
    proc = project.trace("main.py")
    assert proc.stdout == "helper\n"
    assert '"name": "helper"' in project.list.read_text()
    proc = run(["-c", "print('not run')"], cwd=project.root,
               env=project.env(None, PYCDSMODE="DUMP", PYCDSLIST=str(project.list), PYCDSARCHIVE=str(project.archive)))
    assert proc.stdout == "" and project.archive.exists()


# Prints the files the process has mapped.
MAPPED = (
    "import json\n"
    "lines = open('/proc/self/maps').read().splitlines()\n"
    "print(json.dumps(sorted({ln.split()[-1] for ln in lines if ln.split()[-1].startswith('/')})))\n"
)


def test_the_extension_loads_no_shared_library_plain_cpython_does_not(project):
    """Every start-up that serves an archive loads `cds._cds`; a shared library it drags in
    costs each process its loading and its pages. Rust's std would load `libgcc_s` (for its
    unwinder, which only a panic uses); build.rs links the C compiler's static unwinder
    instead. (tests/test_run_ahead.py shows that panics still unwind.)"""
    plain = {p.rsplit("/", 1)[-1] for p in json.loads(run(["-c", MAPPED]).stdout)}
    mapped = json.loads(project.share("-c", "from cds import _cds\n" + MAPPED).stdout)
    extra = sorted(p for p in mapped if p.rsplit("/", 1)[-1] not in plain and "/cds/_cds." not in p)
    # A wheel for glibc 2.28 (manylinux_2_28) must name libpthread and libdl, where 2.28 keeps
    # its threads and dlopen; since glibc 2.34 they are empty stubs, which it then maps.
    glibc = tuple(int(x) for x in os.confstr("CS_GNU_LIBC_VERSION").split()[1].split(".")[:2])
    stubs = {"libpthread.so.0", "libdl.so.2"} if glibc >= (2, 34) else set()
    # Only the archive may be added (when one is mapped); never a library.
    libraries = [p for p in extra if ".so" in p.rsplit("/", 1)[-1] and p.rsplit("/", 1)[-1] not in stubs]
    assert libraries == [], extra


def test_serving_does_not_need_importlib_in_sys_modules(project):
    """CPython's own tests import a fresh `importlib` with `_frozen_importlib_external` blocked
    (`None`) in `sys.modules`; modules imported meanwhile are still served, as a normal import
    still finds them."""
    make(project)
    code = ("import sys\n"
            "saved = sys.modules['_frozen_importlib_external']\n"
            "sys.modules['_frozen_importlib_external'] = None\n"
            "try:\n"
            "    import helper\n"
            "finally:\n"
            "    sys.modules['_frozen_importlib_external'] = saved\n"
            "import cds\n"
            "print(helper.X, type(helper.__spec__.loader).__name__, cds.info()['served'])\n")
    proc = project.share("-c", code)
    assert proc.stdout == "helper ArchiveLoader ['helper']\n", proc.stdout + proc.stderr
    assert proc.stderr == ""


def test_an_error_while_serving_falls_back_to_the_normal_import(project):
    """Whatever goes wrong while serving a module (here the package's `__path__` fails the
    first time it is iterated, which is the finder's check), the import goes on to the normal
    search, and `cds.info()` says why."""
    project.write("pkg/__init__.py", "")
    project.write("pkg/sub.py", "X = 'sub'\n")
    project.write("main.py", "import pkg.sub\n")
    project.trace("main.py")
    project.dump()
    code = ("import pkg\n"
            "class Flaky(list):\n"
            "    raised = False\n"
            "    def __iter__(self):\n"
            "        if not Flaky.raised:\n"
            "            Flaky.raised = True\n"
            "            raise RuntimeError('boom')\n"
            "        return super().__iter__()\n"
            "pkg.__path__ = Flaky(pkg.__path__)\n"
            "import pkg.sub, cds\n"
            "i = cds.info()\n"
            "print(pkg.sub.X, type(pkg.sub.__spec__.loader).__name__, 'pkg' in i['served'],\n"
            "      'pkg.sub' in i['served'], i['fallbacks'])\n")
    proc = project.share("-c", code)
    assert proc.stdout == "sub SourceFileLoader True False {'pkg.sub': 'not served: boom'}\n", proc.stdout + proc.stderr
    assert proc.stderr == ""
