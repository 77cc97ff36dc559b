"""Lazy imports (PEP 810, CPython 3.15): a module imported lazily is found and loaded when it is
first used ("reified"), through the import system as it is then, on whichever thread uses it.
Reified modules are served from the archive like any other; modules a lazy run never reifies
are never run; the tracer records what a run reified. Each run is compared with a plain run
under the same lazy-import setting, in a separate process."""

import json
import shutil
from pathlib import Path

import pytest

from pycds_testing import SOURCE_MODULES_PROBE, run, source_modules_and_info

APP = Path(__file__).parent / "apps" / "popular.py"

FILES = {
    "pkg/__init__.py": "",
    "pkg/alpha.py": "print('alpha runs')\ndef f():\n    return 'alpha.f'\n",
    "pkg/beta.py": "print('beta runs')\nB = 2\n",
    "pkg/never.py": "print('never runs')\n",
    "pkg/threaded.py": "print('threaded runs')\nT = 't'\n",
    "viamod.py": "__lazy_modules__ = ['pkg.beta', 'fractions']\nimport pkg.beta\nimport fractions\n"
                 "def use():\n    return pkg.beta.B, str(fractions.Fraction(1, 3))\n",
    "main.py": "import sys, threading\n"
               "lazy import pkg.alpha\n"
               "lazy from pkg import never\n"
               "lazy import pkg.threaded\n"
               "import viamod\n"
               "print('before', sorted(m for m in sys.modules if m.split('.')[0] == 'pkg'), 'fractions' in sys.modules)\n"
               "print(pkg.alpha.f())\n"
               "print(viamod.use())\n"
               "out = []\n"
               "t = threading.Thread(target=lambda: out.append(pkg.threaded.T))\n"
               "t.start(); t.join()\n"
               "print(out, sorted(m for m in sys.modules if m.split('.')[0] == 'pkg'), 'fractions' in sys.modules)\n",
}


@pytest.fixture(autouse=True)
def lazy_imports_only():
    if run(["-c", "import sys; print(hasattr(sys, 'set_lazy_imports'))"]).stdout.strip() != "True":
        pytest.skip("no lazy imports before CPython 3.15")


def listed(project):
    return {json.loads(line)["name"] for line in project.list.read_text().splitlines()
            if line.startswith("{") and "name" in json.loads(line)}


def test_lazy_modules_are_served_when_reified_on_any_thread(project):
    for path, text in FILES.items():
        project.write(path, text)
    project.build("main.py")
    # The tracer records what the run reified, not what it named lazily and never used.
    names = listed(project)
    assert {"pkg.alpha", "pkg.beta", "pkg.threaded", "fractions", "viamod"} <= names
    assert "pkg.never" not in names
    plain = project.plain("main.py").stdout
    assert plain.startswith("before [] False\n") and "never runs" not in plain
    info, shared = project.info("main.py")
    assert shared.stdout == plain
    # pkg.threaded is reified on the second thread only.
    assert {"pkg.alpha", "pkg.beta", "pkg.threaded", "fractions", "viamod"} <= set(info["served"]), info
    assert info["fallbacks"] == {}


def test_modules_archived_but_never_reified_do_not_run(project):
    """An archive traced from an eager run holds modules that a lazy run never reifies: serving
    must not import them."""
    for path, text in FILES.items():
        project.write(path, text)
    project.write("eager.py", FILES["main.py"].replace("lazy ", ""))
    project.build("eager.py")
    assert "pkg.never" in listed(project)
    for lazy in ({}, {"PYTHON_LAZY_IMPORTS": "all"}):
        plain = project.plain("main.py", **lazy).stdout
        info, shared = project.info("main.py", **lazy)
        assert shared.stdout == plain and "never runs" not in plain
        assert "pkg.never" not in info["served"] and {"pkg.alpha", "pkg.threaded"} <= set(info["served"])


def test_popular_packages_under_global_lazy_imports(project):
    """The real-packages app with every import lazy (`-X lazy_imports=all`): traced and served
    lazily, it prints what a plain lazy run prints, and the modules it reifies are served."""
    shutil.copy(APP, project.root / "popular.py")
    project.trace("-X", "lazy_imports=all", "popular.py")
    project.dump()
    plain = project.plain("-X", "lazy_imports=all", "popular.py")
    eager = project.plain("popular.py")
    assert plain.stdout == eager.stdout
    project.write("sitecustomize.py", SOURCE_MODULES_PROBE)
    shared = project.share("-X", "lazy_imports=all", "popular.py", PYTHONPATH=str(project.root))
    (project.root / "sitecustomize.py").unlink()
    assert shared.stdout == plain.stdout
    source, info = source_modules_and_info(shared.stderr)
    served = set(info["served"])
    missing = [n for n in source if n not in served]
    print(f"lazy: served {len(source) - len(missing)} of {len(source)} source modules; not served: {missing}")
    assert len(source) > 100, len(source)
    assert 1 - len(missing) / len(source) >= 0.95, missing
    assert {k: v for k, v in info["fallbacks"].items() if k != "sitecustomize"} == {}
