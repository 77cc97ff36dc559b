"""Behaviour that depends on what each CPython version does with code objects and strings at
run time: specialization of calls into archived code (3.12+ guards calls on code versions) and
archived strings interned at run time (3.14 releases interned immortal strings at exit), and
the refusals that go with them: code that has run is not archived, and an interpreter whose
code version counter has reached the archived range does not use the archive. The behaviour
checks run the same program plainly and from the archive, in separate processes."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pycds_testing import base_env, run

HOT = '''
import dis


def add(a, b):
    return a + b


def caller(n):
    s = 0
    for i in range(n):
        s = add(s, i)
    return s


class Point:
    def __init__(self, x):
        self.x = x

    def norm(self):
        return abs(self.x)


def methods(n):
    t = 0
    for i in range(n):
        t += Point(i).norm()
    return t


def report():
    print(caller(2000), methods(2000))
    for f in (caller, methods):
        # The adaptive (specialized) instructions after the loops above: if archived code could
        # not be specialized (say, code version 0 on 3.12+), the calls would stay generic.
        print(f.__name__, [i.opname for i in dis.get_instructions(f, adaptive=True)])
'''


def test_calls_into_archived_code_specialize_like_a_normal_import(project):
    project.write("hot.py", HOT)
    project.write("main.py", "import hot\nhot.report()\n")
    project.build("main.py")
    plain = project.plain("main.py").stdout
    shared = project.share("main.py", PYCDSVERBOSE="2")
    assert "served hot from the archive" in shared.stderr
    assert shared.stdout == plain
    ops = " ".join(plain.splitlines()[1:])
    # The loops did specialize (the comparison above is not between two generic runs).
    assert any(op in ops for op in ("CALL_PY_EXACT_ARGS", "CALL_PY_WITH_DEFAULTS")), ops


INTERNING = '''
import sys

NAME = "not an identifier, so never interned by the compiler"
OTHER = "also-not-an-identifier"


class Holder:
    pass


def use():
    s = sys.intern(NAME)
    h = Holder()
    setattr(h, OTHER, 1)          # interns the attribute name in place
    d = {OTHER: 2}
    return s is NAME, getattr(h, OTHER), d[OTHER], sys.intern("also-" + "not-an-identifier") is OTHER
'''


def test_archived_strings_interned_at_run_time_survive_exit(project):
    project.write("strs.py", INTERNING)
    project.write("main.py", "import strs\nprint(strs.use())\n")
    project.build("main.py")
    plain = project.plain("main.py")
    # Exit status 0: interpreter finalization (which on 3.14 releases interned immortal
    # strings) must not free archived memory.
    shared = project.share("main.py", PYCDSVERBOSE="2")
    assert "served strs from the archive" in shared.stderr
    assert shared.stdout == plain.stdout


def test_dumper_refuses_code_that_has_run():
    """Only never-run code objects are archived: a specialized one would carry its call-site
    caches into every process. Compiled code is accepted, the same code after a hot loop is not."""
    script = '''
from cds import _cds
src = "def f(x):\\n    return x + 1\\n"
ns = {}
exec(compile(src, "/m.py", "exec"), ns)
fresh = compile(src, "/m.py", "exec")
w = _cds.ArchiveWriter()
print("fresh", w.add("fresh", fresh, "/m.py", False, 0, 0, ["/"]) > 0)
for i in range(5000):
    ns["f"](i)
try:
    w.add("hot", ns["f"].__code__, "/m.py", False, 0, 0, ["/"])
    print("hot archived")
except _cds.ArchiveError as e:
    print("hot refused:", e)
'''
    out = run(["-c", script]).stdout
    assert "fresh True" in out
    assert "hot refused: hot: code object has run" in out, out


def test_archive_refused_when_code_versions_are_used_up(project):
    """3.12+: archived code objects take versions from 2^31 up, reserved in the interpreter's
    counter when the archive opens. With the counter already past 2^31 the archive is refused
    (and the program would run normally); below it, opening moves the counter past the range."""
    project.write("m.py", "def f():\n    return 1\n")
    project.write("main.py", "import m\nprint(m.f())\n")
    project.build("main.py")
    script = '''
import ctypes, sys
from cds import _cds
facts = _cds.layout_facts()
off = facts["interp_next_code_version"]
if off is None:
    print("no code versions, 3.12+:", sys.version_info >= (3, 12))
    sys.exit()
get = ctypes.pythonapi.PyInterpreterState_Get
get.restype = ctypes.c_void_p
counter = ctypes.c_uint32.from_address(get() + off)
if sys.argv[2] == "used-up":
    counter.value = facts["code_version_base"] + 5
try:
    _cds.Archive(sys.argv[1])
    print("opened; counter now", counter.value == facts["code_version_base"] + facts["code_version_capacity"])
except _cds.ArchiveError as e:
    print("refused:", e)
'''
    ok = run(["-c", script, str(project.archive), "fresh"]).stdout
    if ok.startswith("no code versions"):
        # Only an interpreter without code versions (3.11) has nothing to reserve.
        assert ok.strip() == "no code versions, 3.12+: False", ok
        return
    assert ok.strip() == "opened; counter now True", ok
    used = run(["-c", script, str(project.archive), "used-up"]).stdout
    assert "refused:" in used and "handed out code versions" in used, used


@pytest.mark.parametrize("version", ["3.12", "3.16"])
def test_build_refuses_an_untested_version(version, tmp_path):
    """An interpreter version CI does not test is refused when the extension is built, with a
    message that says which versions are supported (PyO3 is told the version by a config file,
    as a cross build would be)."""
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("no Rust toolchain (the installed wheel is under test)")
    config = tmp_path / "pyo3.cfg"
    config.write_text(f"implementation=CPython\nversion={version}\nshared=true\nabi3=false\n"
                      f"lib_name=python{version}\npointer_width=64\n")
    root = Path(__file__).resolve().parent.parent
    target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target")) / "refuse-untested"
    p = subprocess.run([cargo, "check", "-q", "-p", "cds-python"], cwd=root, capture_output=True, text=True,
                       timeout=600, env=dict(os.environ, PYO3_CONFIG_FILE=str(config), CARGO_TARGET_DIR=str(target)))
    assert p.returncode != 0
    assert f"pycds is not built for CPython {version}: it supports only the versions it is tested on" in p.stderr


@pytest.mark.parametrize("fact", ["code", "str", "tuple"])
def test_a_build_for_other_layouts_stays_off(project, fact):
    """The build guard: an extension whose compiled-in facts do not match the interpreter that
    loads it (here made wrong on purpose, as a wheel installed into the wrong build would be)
    does nothing: one line on stderr, `cds.info()['error']`, a normal run."""
    project.write("mod_x.py", "X = ('x', 1)\n")
    project.write("main.py", "import mod_x\nprint(mod_x.X)\n")
    project.build("main.py")
    plain = project.plain("main.py").stdout
    info, good = project.info("main.py")
    assert "mod_x" in info["served"] and good.stdout == plain
    for mode in ({"PYCDSMODE": "SHARE", "PYCDSARCHIVE": str(project.archive)}, {"PYCDSMODE": "AUTO"}):
        proc = run(["main.py"], cwd=project.root, env=base_env(
            PYCDS_TEST_WRONG_BUILD_FACT=fact, PYCDS_CACHE_DIR=str(project.root / "cache"), **mode))
        assert proc.stdout == plain and proc.returncode == 0
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("pycds: this pycds build does not match"), proc.stderr
        assert f"built for {fact} objects" in lines[0]
    info, bad = project.info("main.py", PYCDS_TEST_WRONG_BUILD_FACT=fact)
    assert bad.stdout == plain and info["served"] == [] and "does not match" in info["error"]
    assert not (project.root / "cache").exists()
