"""End to end on real PyPI packages (tests/requirements.txt): a program importing more than 300
modules runs under SHARE with at least 95% of its imported source modules served from the
archive, and prints exactly what a plain run prints."""

import json
import shutil
from pathlib import Path

from pycds_testing import run

APP = Path(__file__).parent / "apps" / "popular.py"

COUNT = r'''
import atexit, json, sys
from importlib.machinery import SourceFileLoader
def report():
    import cds
    # One entry per module object, by its own name: packages such as requests alias modules
    # under second names in sys.modules (requests.packages.urllib3 is urllib3).
    unique = {id(m): m for n, m in list(sys.modules.items()) if n != "__main__"}
    source = sorted(m.__spec__.name for m in unique.values()
                    if isinstance(getattr(getattr(m, "__spec__", None), "loader", None), SourceFileLoader))
    sys.__stderr__.write("COUNT" + json.dumps({"source": source, "info": cds.info()}) + "\n")
atexit.register(report)
'''


def test_popular_packages_are_served(project):
    app = project.root / "popular.py"
    shutil.copy(APP, app)
    project.trace("popular.py")
    project.dump()
    plain = project.plain("popular.py")
    project.write("sitecustomize.py", COUNT)
    shared = project.share("popular.py", PYTHONPATH=str(project.root))
    (project.root / "sitecustomize.py").unlink()
    assert shared.stdout == plain.stdout
    assert plain.stdout.strip().endswith("True")
    line = [ln for ln in shared.stderr.splitlines() if ln.startswith("COUNT")][-1]
    data = json.loads(line[5:])
    source = [n for n in data["source"] if not n.startswith("cds") and n != "sitecustomize"]
    served = set(data["info"]["served"])
    assert len(source) > 300, len(source)
    missing = [n for n in source if n not in served]
    ratio = 1 - len(missing) / len(source)
    print(f"served {len(source) - len(missing)} of {len(source)} source modules ({ratio:.1%}); not served: {missing}")
    assert ratio >= 0.95, missing
    # The probe itself is a sitecustomize.py on PYTHONPATH: where the interpreter has its own
    # sitecustomize (Debian's does), pycds rightly imports the probe normally instead of the
    # archived system one. Nothing else may fall back.
    fallbacks = {k: v for k, v in data["info"]["fallbacks"].items() if k != "sitecustomize"}
    assert fallbacks == {}
