"""The interpreter as people run it: command-line flags, multiprocessing, runpy, reload, modules
that replace themselves, sourceless modules, bytecode-writing settings."""

import os
import sys

import pytest

from pycds_testing import PYTHON, base_env, run

MAIN = "import helper\nprint(helper.X)\n"


def make(project):
    project.write("main.py", MAIN)
    project.write("helper.py", "X = 'helper'\n")
    project.build("main.py")


@pytest.mark.parametrize("flag", ["-E", "-I"])
def test_environment_ignoring_flags_disable_pycds(project, flag):
    make(project)
    proc = run([flag, "-c", "import sys, cds; sys.path.insert(0, '.'); import helper; print(cds.info()['mode'], helper.X)"],
               cwd=project.root, env=project.env("SHARE", PYCDSVERBOSE="2"))
    assert proc.stdout == "None helper\n" and proc.stderr == ""


def test_no_site_means_no_pycds(project):
    make(project)
    proc = run(["-S", "main.py"], cwd=project.root, env=project.env("SHARE", PYCDSVERBOSE="2"))
    assert proc.stdout == "helper\n" and proc.stderr == ""


@pytest.mark.parametrize("args", [["-X", "importtime"], ["-X", "frozen_modules=off"], ["-B"], ["-O"], ["-W", "error"]])
def test_flags_run_unchanged(project, args):
    make(project)
    proc = run([*args, "main.py"], cwd=project.root, env=project.env("SHARE", PYTHONDONTWRITEBYTECODE="1"))
    assert proc.stdout == "helper\n"
    if args == ["-O"]:
        return  # an archive from a non -O interpreter is foreign to -O (checked below)
    info, _ = project.info("main.py")
    assert "helper" in info["served"]


def test_optimize_level_is_part_of_the_fingerprint(project):
    make(project)
    proc = run(["-O", "main.py"], cwd=project.root, env=project.env("SHARE", PYCDSVERBOSE="1"))
    assert proc.stdout == "helper\n" and "optimize=1" in proc.stderr and "another interpreter" in proc.stderr


def test_frozen_modules_off_serves_the_stdlib_it_traced(project):
    project.write("main.py", "import os, json\nprint(json.dumps(os.sep))\n")
    env = {}
    run(["-X", "frozen_modules=off", "main.py"], cwd=project.root, env=project.env("TRACE"))
    project.dump()
    probe = "import atexit, sys\natexit.register(lambda: sys.stderr.write(repr(__import__('cds').info()['served'])))\n"
    project.write("sitecustomize.py", probe)
    proc = run(["-X", "frozen_modules=off", "main.py"], cwd=project.root,
               env=project.env("SHARE", PYTHONPATH=str(project.root), **env))
    assert proc.stdout == '"/"\n'
    assert "'json'" in proc.stderr


@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_multiprocessing_children_inherit_the_mode(project, method):
    project.write("work.py", "def job(_):\n    import helper, cds\n    return helper.X, 'helper' in cds.info()['served'] or method_is_fork()\n"
                             "def method_is_fork():\n    import multiprocessing\n    return multiprocessing.get_start_method() == 'fork'\n")
    project.write("helper.py", "X = 'helper'\n")
    project.write("main.py", f"""
import multiprocessing, sys
import work
if __name__ == '__main__':
    multiprocessing.set_start_method({method!r})
    with multiprocessing.Pool(2) as pool:
        print(pool.map(work.job, range(2)))
""")
    project.trace("main.py")
    project.dump()
    proc = project.share("main.py")
    assert proc.stdout == "[('helper', True), ('helper', True)]\n", proc.stderr


def test_module_replacing_itself_in_sys_modules(project):
    project.write("selfrep.py", "import sys, types\nclass Mod(types.ModuleType):\n    VALUE = 'replaced'\n"
                                "sys.modules[__name__] = Mod(__name__)\n")
    project.write("main.py", "import selfrep\nprint(type(selfrep).__name__, selfrep.VALUE)\n")
    project.build("main.py")
    info, proc = project.info("main.py")
    assert proc.stdout == project.plain("main.py").stdout == "Mod replaced\n"
    assert "selfrep" in info["served"]


def test_sourceless_module_keeps_its_loader(project):
    import py_compile
    src = project.write("compiled_only.py", "X = 'from pyc'\n")
    py_compile.compile(str(src), cfile=str(project.root / "compiled_only.pyc"))
    src.unlink()
    project.write("main.py", "import compiled_only\nprint(compiled_only.X, type(compiled_only.__loader__).__name__)\n")
    project.build("main.py")
    info, proc = project.info("main.py")
    assert proc.stdout == "from pyc SourcelessFileLoader\n"
    assert "compiled_only" not in info["served"]


def test_sys_path_edited_at_run_time(project):
    project.write("a/mod.py", "WHO = 'a'\n")
    project.write("b/mod.py", "WHO = 'b'\n")
    project.write("main.py", "import sys\nsys.path.insert(0, sys.argv[1])\nimport mod\nprint(mod.WHO)\n")
    project.trace("main.py", "a")
    project.dump()
    for which in ("a", "b"):
        info, proc = project.info("main.py", which)
        assert proc.stdout == f"{which}\n"
        assert ("mod" in info["served"]) == (which == "a")


def test_read_only_archive_directory(project):
    make(project)
    ro = project.root / "ro"
    ro.mkdir()
    os.replace(project.archive, ro / "mod.img")
    ro.chmod(0o555)
    try:
        proc = run(["main.py"], cwd=project.root,
                   env=base_env(PYCDSMODE="SHARE", PYCDSARCHIVE=str(ro / "mod.img"), PYCDSVERBOSE="2"))
        assert proc.stdout == "helper\n" and "served helper" in proc.stderr
    finally:
        ro.chmod(0o755)


def test_venv_created_from_the_test_interpreter_sees_pycds(project, tmp_path):
    """A venv with --system-site-packages on top of the test environment uses pycds too."""
    make(project)
    venv = tmp_path / "v"
    run(["-m", "venv", "--system-site-packages", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    import subprocess
    proc = subprocess.run([str(py), "main.py"], cwd=project.root, env=project.env("SHARE", PYCDSVERBOSE="2"),
                          capture_output=True, text=True, timeout=120)
    if "No module named" in proc.stderr or sys.prefix == sys.base_prefix:
        pytest.skip("the test interpreter is not itself in a venv")
    assert proc.stdout == "helper\n"
    assert PYTHON


def test_type_patching_only_where_the_interpreter_moves(project):
    """With a non-PIE interpreter that links libpython statically (Debian's python3.11), type
    objects sit at the same address in every process: fixing modules up writes no pointer at
    all. With a position-independent libpython (a shared-library build), type pointers are
    patched."""
    make(project)
    probe = project.write("probe.py", """
import sys
from cds import _cds
a = _cds.Archive(sys.argv[1])
written = sum(a.fix_up_stats(i)["written"] for i in range(a.stats()["modules"]))
with open(sys.executable, "rb") as f:
    elf_type = int.from_bytes(f.read(18)[16:18], "little")
shared_libpython = any("libpython" in line for line in open("/proc/self/maps"))
at_base = a.stats()["mapped_at"] == a.stats()["preferred_base"]
print(written, elf_type == 2 and not shared_libpython and at_base)
""")
    out = run([str(probe), str(project.archive)], cwd=project.root).stdout.split()
    written, fixed_types = int(out[0]), out[1] == "True"
    if fixed_types:
        assert written == 0
    else:
        assert written > 0
