"""Every constant type the compiler emits round-trips through the archive with its own type and
value, and code objects are field-for-field what a normal import produces."""

import pytest

from pycds_testing import run

CONSTS_MOD = '''
"""Module docstring with é and 中."""
import math

FROZEN = frozenset({"x", "y", 1, 2.5, (1, 2), b"k"})
EMPTY_FROZEN_USE = lambda v: v in frozenset()
INTS = (2**100, -2**100, -1, -5, -6, 256, 257, 0, 10**50, 1 << 62, -(1 << 63), 12345678901234567890)
FLOATS = (1.5, -0.0, 0.0, 1e999, -1e999, 5e-324, 2.2250738585072014e-308, 1e-310, 3.141592653589793)
COMPLEX = (1 + 2j, -0j, 1e999j, 2.5j)
BYTES = (b"", b"a", b"\\x00\\xff" * 10, b"bytes with space")
STRS = ("", "a", "\\xe9", "\\xff", "\\u0100", "\\u4e2d\\u6587", "\\U0001f600", "a\\x00b", "\\x00",
        "Latin-1 \\xe9t\\xe9 string", "ascii_identifier_like", "ucs2 \\u20ac and more",
        "ucs4 \\U0001f600 mixed \\xe9 \\u20ac", "x" * 5000)
NESTED = (((1,), ()), ((),), (None, True, False, ...), ("a", ("b", ("c", (1.5, -0.0)))))
BOOLS = (True, False, None, Ellipsis)


def gen(n):
    for i in range(n):
        yield i * 2


async def coro(x):
    return x + 1


async def agen():
    yield 1


def make_closure(v):
    w = [v]

    def inner(k=3, *args, key=("d", 1), **kw):
        nonlocal w
        return (v, w, k, args, key, kw)

    return inner


class Klass:
    """Class docstring."""
    attr = {"k": [1, 2]}
    __slots__ = ("a", "b")

    def method(self, n):
        return [i * i for i in range(n) if i % 2] + list({j for j in range(n)}) + [len({k: k for k in "ab"})]

    @property
    def prop(self):
        return 42

    @staticmethod
    def stat(*, a=1.5, b=-0.0):
        return math.copysign(1, b), a


lam = lambda a, b=2, *, c=(1, 2), d=frozenset({3}): (a, b, c, d)


def slices(s):
    # Constant subscripts: CPython 3.14 folds these into slice constants.
    return s[1:3], s[::2], s[-2:], s[1:-1:2], s["a":"b"] if isinstance(s, dict) else None


def membership(x):
    return x in {"alpha", "beta", "gamma"}, x in {1, 2, 3}, x not in {b"a", b"b"}


def fstring(x):
    return f"{x!r:>10} {x:{len(str(x))}}"


def with_try(x):
    try:
        return 1 / x
    except ZeroDivisionError as exc:
        return type(exc).__name__
    finally:
        pass


def match_stmt(v):
    match v:
        case {"k": [a, *rest]}:
            return ("dict", a, rest)
        case (1, 2) | [3]:
            return "seq"
        case Klass(a=1):
            return "cls"
        case str() if v:
            return "str"
        case _:
            return None
'''

DESCRIBE = r'''
import math, sys, types, consts_mod as m

def describe(obj, depth=0):
    t = type(obj).__name__
    if isinstance(obj, types.CodeType):
        fields = {}
        for attr in sorted(dir(obj)):
            if attr.startswith("co_") and attr not in ("co_lnotab",):
                v = getattr(obj, attr)
                if callable(v):
                    continue
                fields[attr] = describe(v, depth + 1)
        fields["positions"] = list(obj.co_positions())
        fields["lines"] = list(obj.co_lines())
        return ("code", fields)
    if isinstance(obj, tuple):
        return (t, [describe(x, depth + 1) for x in obj])
    if isinstance(obj, frozenset):
        return (t, sorted(repr(describe(x, depth + 1)) for x in obj))
    if isinstance(obj, float):
        return (t, repr(obj), math.copysign(1.0, obj))
    if isinstance(obj, complex):
        return (t, repr(obj), math.copysign(1.0, obj.real), math.copysign(1.0, obj.imag))
    if isinstance(obj, str):
        return (t, repr(obj), obj is sys.intern(obj) if obj.isidentifier() else None)
    return (t, repr(obj))

code = m.__loader__.get_code("consts_mod") if False else None
print(describe(m.gen.__code__))
for name in sorted(vars(m)):
    v = getattr(m, name)
    if isinstance(v, (tuple, frozenset)):
        print(name, describe(v))
    elif isinstance(v, types.FunctionType):
        print(name, describe(v.__code__), v.__defaults__, v.__kwdefaults__)
for name in ("method", "stat"):
    print(name, describe(getattr(m.Klass, name).__code__ if name == "method" else m.Klass.stat.__code__))
print(m.slices("abcdefg"), [type(c).__name__ for c in m.slices.__code__.co_consts])
print(list(m.gen(3)), m.make_closure(5)(), m.lam(1), m.membership("beta"), m.membership(2))
print(m.fstring(3.5), m.with_try(0), m.with_try(4), m.Klass().method(5), m.Klass.stat())
print([m.match_stmt(v) for v in ({"k": [1, 2, 3]}, (1, 2), [3], "s", "", 7)])
import asyncio
print(asyncio.run(m.coro(1)), m.EMPTY_FROZEN_USE(1), m.__doc__, m.Klass.__doc__)
print(type(m.FROZEN) is frozenset, type(m.membership.__code__.co_consts[1]).__name__)
print(m.STRS[-1] == "x" * 5000, [len(s) for s in m.STRS])
'''


def test_constants_and_code_objects_match_a_normal_import(project):
    project.write("consts_mod.py", CONSTS_MOD)
    project.write("describe.py", DESCRIBE)
    project.build("describe.py")
    plain = project.plain("describe.py")
    info, shared = project.info("describe.py")
    assert "consts_mod" in info["served"], info
    assert shared.stdout == plain.stdout
    # The oracle really covers the constants: spot-check the plain output itself.
    assert "'frozenset'" in plain.stdout and "-1.0" in plain.stdout and "inf" in plain.stdout
    assert "complex" in plain.stdout and "\U0001f600" in plain.stdout


def test_frozenset_constant_stays_frozenset(project):
    project.write("fs_mod.py", "S = frozenset({'a', 'b', 3})\ndef f(x):\n    return x in {'p', 'q'}\n")
    project.write(
        "main.py",
        "import fs_mod\n"
        "print(type(fs_mod.S).__name__, sorted(map(str, fs_mod.S)))\n"
        "print([type(c).__name__ for c in fs_mod.f.__code__.co_consts])\n",
    )
    project.build("main.py")
    info, shared = project.info("main.py")
    assert "fs_mod" in info["served"]
    assert shared.stdout == project.plain("main.py").stdout
    assert "frozenset ['3', 'a', 'b']" in shared.stdout
    assert "'frozenset'" in shared.stdout.splitlines()[1]


def test_interned_names_are_the_interpreters_interned_strings(project):
    project.write("names_mod.py", "def fn(some_local_name):\n    return some_local_name.upper()\nCONST = 'some_identifier'\n")
    project.write(
        "main.py",
        "import sys, names_mod\n"
        "co = names_mod.fn.__code__\n"
        "print(co.co_varnames[0] is sys.intern('some_local_name'), co.co_names[0] is sys.intern('upper'))\n"
        "print(names_mod.CONST is sys.intern('some_identifier'))\n",
    )
    project.build("main.py")
    info, shared = project.info("main.py")
    assert "names_mod" in info["served"]
    assert shared.stdout == project.plain("main.py").stdout == "True True\nTrue\n"


def test_non_bmp_string_constants_convert_to_wchar(project):
    """On 3.11 with a 4-byte wchar_t a UCS-4 string's data doubles as its wchar_t string;
    conversions through wchar_t (ctypes, locale) must see the same characters as normally."""
    project.write("wide.py", "S = 'UCS:\\xe9\\u20ac\\U0010ffff'\nT = 'plain \\U0001f600 emoji'\n")
    project.write("main.py", "import ctypes, locale, wide\n"
                             "print(repr(ctypes.create_unicode_buffer(wide.S).value), repr(ctypes.c_wchar_p(wide.T).value))\n"
                             "print(locale.strcoll(wide.S, wide.S), locale.strxfrm(wide.T) == locale.strxfrm(wide.T))\n")
    project.build("main.py")
    info, shared = project.info("main.py")
    assert "wide" in info["served"]
    assert shared.stdout == project.plain("main.py").stdout
    assert "\\U0010ffff" in shared.stdout


FROZENDICT_PYC = r'''
import importlib._bootstrap_external as be, importlib.util, os, sys
src = "fd_mod.py"
code = compile(open(src).read(), src, "exec")
D = frozendict({"z": 1, "a": (2, "x"), 3: frozenset({1.5}), "in": frozendict(k=b"v", j=None)})
E = frozendict()

def swap_const(k):
    if k == "__FD__":
        return D
    if k == "__FD_EMPTY__":
        return E
    if type(k) is tuple:
        return tuple(map(swap_const, k))
    if hasattr(k, "co_consts"):
        return k.replace(co_consts=tuple(map(swap_const, k.co_consts)))
    return k

st = os.stat(src)
data = be._code_to_timestamp_pyc(swap_const(code), st.st_mtime, st.st_size)
cached = importlib.util.cache_from_source(os.path.abspath(src))
os.makedirs(os.path.dirname(cached), exist_ok=True)
with open(cached, "wb") as f:
    f.write(data)
'''


def test_frozendict_constant_stays_frozendict(project):
    """3.15 (PEP 814): marshal stores frozendict constants, so a .pyc (say, from a code
    generator) may hold them; the compiler itself emits none. Served, each is a frozendict
    equal to the .pyc's, with its items in the same order."""
    import sys as _sys
    probe = run(["-c", "print('frozendict' in dir(__builtins__))"])
    if probe.stdout.strip() != "True":
        pytest.skip(f"no frozendict on {_sys.version_info[:2]}")
    project.write("fd_mod.py", "D = '__FD__'\ndef f():\n    return '__FD__', '__FD_EMPTY__'\n")
    project.write("make_pyc.py", FROZENDICT_PYC)
    run(["make_pyc.py"], cwd=project.root)
    project.write(
        "main.py",
        "import fd_mod\n"
        "for v in (fd_mod.D, *fd_mod.f()):\n"
        "    print(type(v).__name__, repr(v), list(v), hash(v) == hash(frozendict(dict(v))))\n"
        "print(fd_mod.D['in'], type(fd_mod.D['in']).__name__, fd_mod.f()[0] is fd_mod.f()[0])\n",
    )
    project.build("main.py")
    plain = project.plain("main.py").stdout
    info, shared = project.info("main.py")
    assert "fd_mod" in info["served"], info
    assert shared.stdout == plain
    assert plain.startswith("frozendict frozendict({'z': 1, 'a': (2, 'x'), 3: frozenset({1.5}), 'in': frozendict(")
    assert "frozendict frozendict() [] True" in plain
