"""End to end on real PyPI packages (tests/requirements.txt): a program importing more than 300
modules runs under SHARE with at least 95% of its imported source modules served from the
archive, and prints exactly what a plain run prints."""

import shutil
from pathlib import Path

from pycds_testing import SOURCE_MODULES_PROBE, run, source_modules_and_info

APP = Path(__file__).parent / "apps" / "popular.py"


def test_popular_packages_are_served(project):
    app = project.root / "popular.py"
    shutil.copy(APP, app)
    project.trace("popular.py")
    project.dump()
    plain = project.plain("popular.py")
    project.write("sitecustomize.py", SOURCE_MODULES_PROBE)
    shared = project.share("popular.py", PYTHONPATH=str(project.root))
    (project.root / "sitecustomize.py").unlink()
    assert shared.stdout == plain.stdout
    assert plain.stdout.strip().endswith("True")
    source, info = source_modules_and_info(shared.stderr)
    served = set(info["served"])
    assert len(source) > 300, len(source)
    missing = [n for n in source if n not in served]
    ratio = 1 - len(missing) / len(source)
    print(f"served {len(source) - len(missing)} of {len(source)} source modules ({ratio:.1%}); not served: {missing}")
    assert ratio >= 0.95, missing
    # The probe itself is a sitecustomize.py on PYTHONPATH: where the interpreter has its own
    # sitecustomize (Debian's does), pycds rightly imports the probe normally instead of the
    # archived system one. Nothing else may fall back.
    fallbacks = {k: v for k, v in info["fallbacks"].items() if k != "sitecustomize"}
    assert fallbacks == {}
