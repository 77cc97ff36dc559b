"""Modules served from the archive look and behave as if imported normally: attributes, spec,
loader protocol, inspect, tracebacks, resources, pkgutil, reload, module __getattr__; other
loaders (extension, builtin, frozen, zip, namespace) are untouched."""

import zipfile

PKG_INIT = '''
"""A package."""
VALUE = "init"

def __getattr__(name):
    if name == "dynamic":
        return "from __getattr__"
    raise AttributeError(name)
'''

PKG_SUB = '''
def func(x):
    """Docstring of func."""
    return x * 2

VALUE = "sub-v1"
'''

PKG_BOOM = '''
def explode():
    a = 1
    raise ValueError("boom at a known line")
'''

REPORT = r'''
import importlib, importlib.resources, importlib.util, inspect, pkgutil, sys, traceback
from importlib.machinery import SourceFileLoader, ExtensionFileLoader, BuiltinImporter, FrozenImporter
sys.path.append("zipped.zip")
import pkg, pkg.sub, pkg.boom, ns.plain, zipmod, _decimal, os

def show(mod):
    spec = mod.__spec__
    # 3.15 no longer sets __cached__ (spec.cached stays): compare whether it is set, and to what.
    print(mod.__name__, mod.__file__, vars(mod).get("__cached__", "<unset>"), mod.__package__,
          getattr(mod, "__path__", None))
    print("  spec", spec.name, spec.origin, spec.cached, spec.has_location,
          spec.submodule_search_locations, spec.parent)
    loader = mod.__loader__
    print("  loader", isinstance(loader, SourceFileLoader), loader is spec.loader,
          loader.get_filename(mod.__name__), loader.is_package(mod.__name__),
          loader.get_source(mod.__name__) == open(mod.__file__).read(),
          loader.get_data(mod.__file__) == open(mod.__file__, "rb").read(),
          loader.name, loader.path)

for m in (pkg, pkg.sub, pkg.boom, ns.plain):
    show(m)
print("getsource", inspect.getsource(pkg.sub.func))
print("getfile", inspect.getfile(pkg.sub.func), inspect.getsourcefile(pkg.sub))
try:
    pkg.boom.explode()
except ValueError:
    print("traceback", traceback.format_exc())
print("resources", importlib.resources.files("pkg").joinpath("data.txt").read_text())
print("resources-files", sorted(p.name for p in importlib.resources.files("pkg").iterdir() if p.name != "__pycache__"))
print("iter_modules", sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)))
print("getattr", pkg.dynamic, hasattr(pkg, "missing"))
print("ns", type(ns.__spec__.loader).__name__, list(ns.__path__), ns.__spec__.origin)
print("zip", type(zipmod.__loader__).__name__, zipmod.__file__, zipmod.X)
print("ext", type(_decimal.__loader__).__name__, "builtin", sys.modules["sys"].__loader__ is BuiltinImporter)
print("frozen", os.__loader__ is FrozenImporter or os.__spec__.origin)
reloaded = importlib.reload(pkg.sub)
print("reload", reloaded is pkg.sub, pkg.sub.VALUE)
with open(pkg.sub.__file__, "a") as f:
    f.write("\nVALUE = 'sub-v2-edited'\n")
importlib.reload(pkg.sub)
print("reload-edited", pkg.sub.VALUE, pkg.sub.func(2))
print("find_spec", importlib.util.find_spec("pkg.sub").origin)
'''


def make(project):
    project.write("pkg/__init__.py", PKG_INIT)
    project.write("pkg/sub.py", PKG_SUB)
    project.write("pkg/boom.py", PKG_BOOM)
    project.write("pkg/data.txt", "resource text")
    project.write("ns/plain.py", "VALUE = 'plain module in a namespace package'\n")
    project.write("report.py", REPORT)
    with zipfile.ZipFile(project.root / "zipped.zip", "w") as z:
        z.writestr("zipmod.py", "X = 'from zip'\n")


def test_module_attributes_and_protocols_match_normal_import(project):
    make(project)
    project.build("report.py")
    # report.py edits pkg/sub.py; restore it so the archived copy is fresh again.
    project.write("pkg/sub.py", PKG_SUB)
    project.dump()
    info, shared = project.info("report.py")
    project.write("pkg/sub.py", PKG_SUB)
    plain = project.plain("report.py")
    served = info["served"]
    for name in ("pkg", "pkg.sub", "pkg.boom", "ns.plain"):
        assert name in served, (name, info)
    for name in ("zipmod", "ns", "_decimal", "os"):
        assert name not in served
    assert shared.stdout == plain.stdout
    # The oracle output itself shows the behaviours under test.
    out = plain.stdout
    assert 'raise ValueError("boom at a known line")' in out
    assert "resources resource text" in out
    assert "getattr from __getattr__ False" in out
    assert "zip zipimporter" in out and "ext ExtensionFileLoader" in out
    assert "reload-edited sub-v2-edited 4" in out
    assert "ns NamespaceLoader" in out
    # The edited module was re-imported from source, not from the archive.
    assert "changed since the dump" in info["fallbacks"].get("pkg.sub", "")


def test_python_dash_m_runs_archived_module(project):
    project.write("pkg/__init__.py", "")
    project.write("pkg/tool.py", "import sys\nprint('tool', __name__, __spec__.name, __file__.endswith('tool.py'))\n")
    project.build("-m", "pkg.tool")
    plain = project.plain("-m", "pkg.tool")
    shared = project.share("-m", "pkg.tool", PYCDSVERBOSE="2")
    assert shared.stdout == plain.stdout == "tool __main__ pkg.tool True\n"
    assert "served pkg.tool" in shared.stderr


def test_specs_and_loaders_compare_equal_to_a_normal_imports(project):
    project.write("mod.py", "X = 1\n")
    project.write("main.py", "import importlib.util, mod\n"
                             "spec = importlib.util.spec_from_file_location('mod', mod.__file__)\n"
                             "print(mod.__spec__ == spec, spec == mod.__spec__, mod.__loader__ == spec.loader,\n"
                             "      spec.loader == mod.__loader__, hash(mod.__loader__) == hash(spec.loader))\n")
    project.build("main.py")
    info, shared = project.info("main.py")
    assert "mod" in info["served"]
    assert shared.stdout == project.plain("main.py").stdout == "True True True True True\n"


def test_a_deprecated_module_warns_its_importer(project):
    """A module that warns at import with ``stacklevel=2`` names the importer's file and line
    (no frame of pycds lies between them), whether served or traced."""
    import json

    project.write("old.py", "import warnings\nwarnings.warn('old is deprecated', DeprecationWarning, stacklevel=2)\n")
    project.write("main.py", """\
        import json, sys, warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import old
        print(json.dumps([(str(w.message), w.filename == __file__, w.lineno) for w in caught]))
    """)
    normal = json.loads(project.plain("main.py").stdout)
    assert normal == [["old is deprecated", True, 4]]
    project.build("main.py")
    assert json.loads(project.trace("main.py").stdout) == normal
    info, proc = project.info("main.py")
    assert "old" in info["served"]
    assert json.loads(proc.stdout) == normal
