"""The typed stubs (`cds/_cds.pyi`) name exactly what the extension provides: every public
top-level name of the module is in the stub and every name in the stub exists, and the stubs'
classes list the public methods and properties the classes have."""

import ast
import json
from pathlib import Path

from pycds_testing import run

import cds  # noqa: E402  (the installed package: its stub is what users' type checkers read)

STUB = Path(cds.__file__).resolve().parent / "_cds.pyi"


def stub_names():
    tree = ast.parse(STUB.read_text())
    names, classes = set(), {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        if isinstance(node, ast.ClassDef):
            classes[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)} - {"__init__"}
    return names, classes


def test_stub_matches_the_extension():
    names, classes = stub_names()
    probe = (
        "import json\nfrom cds import _cds\n"
        "mod = sorted(n for n in dir(_cds) if not n.startswith('_'))\n"
        "cls = {n: sorted(a for a in vars(getattr(_cds, n)) if not a.startswith('_') or a in ('__len__', '__contains__', '__call__', '__get__', '__wrapped__'))\n"
        "       for n in mod if isinstance(getattr(_cds, n), type) and not issubclass(getattr(_cds, n), Exception)}\n"
        "print(json.dumps([mod, cls]))\n"
    )
    mod, cls = json.loads(run(["-c", probe]).stdout)
    assert set(mod) == names, (set(mod) ^ names)
    for name, members in cls.items():
        assert set(members) == classes[name], (name, set(members) ^ classes[name])
