"""Generate the scale workload: a package of N realistic modules and an entry script that
imports every one of them.

    python bench/workloads/gen_scale.py OUTDIR N

writes ``OUTDIR/scalepkg/__init__.py``, ``OUTDIR/scalepkg/m00000.py`` ... and
``OUTDIR/entry.py``. Module ``i`` is the same text for every N (it is generated from a random
generator seeded with ``i``), so the package for N=100 is a prefix of the one for N=1000.

Each module looks like ordinary library code: a docstring, a few standard imports, imports of
one or two earlier sibling modules, constants of the kinds the compiler emits (ints, floats,
strings, tuples, frozensets, bytes, nested tuples), three to seven functions with docstrings,
defaults, loops, comprehensions, f-strings and closures, and one to three classes with
properties, class methods and dunder methods. About one module in four also compiles a
regular expression or builds a named tuple at import time, as real modules do.
"""

import os
import random
import sys

GENERATOR_VERSION = 1  # bump when the generated text changes (the runner regenerates)

WORDS = (
    "account adapter buffer cache channel client config context cursor digest document event "
    "filter frame handler header index item journal key layout ledger limit loader manifest "
    "marker message metric node option packet parser payload policy profile queue record "
    "registry report request resource result router sample schema session signal snapshot "
    "source stream table task token tracker transform value vector window worker"
).split()

HEAD = '''"""{title}.

{para}

This module was generated for the pycds scale benchmark (module {index} of the scalepkg
package). Its text depends only on its index.
"""

import functools
import os
import re
{extra_imports}
{dep_imports}
__all__ = [{all_names}]

WEIGHT = {weight}
VERSION = ({v0}, {v1}, {v2})
NAME = "{modname}"
DEFAULT_TIMEOUT = {timeout}
SCALE_FACTOR = {factor!r}
_BIG = {big}
_MAGIC = {magic!r}
_LIMITS = {{"low": {low}, "high": {high}, "step": {step}}}
_LEVELS = ({levels})
_TABLE = (
{table})
KNOWN = frozenset({{{known}}})
{import_time}
'''

FUNC_TEMPLATES = [
    '''
def {name}(items, *, limit={limit}, strict=False):
    """Collect the {w0} entries of ``items`` whose {w1} passes the limit.

    Each entry is checked against the module limits; with ``strict`` a bad entry raises
    ``ValueError`` instead of being skipped.
    """
    out = []
    for position, item in enumerate(items):
        if position >= limit:
            break
        if item is None:
            if strict:
                raise ValueError(f"{name}: empty entry at {{position}}")
            continue
        if isinstance(item, str) and item in {{"{w0}", "{w1}", "{w2}"}}:
            out.append(item.upper())
        elif isinstance(item, int) and _LIMITS["low"] <= item <= _LIMITS["high"]:
            out.append(item * {mult})
        else:
            out.append(repr(item))
    return out
''',
    '''
def {name}(mapping, default={default!r}):
    """Return the {w0} keys of ``mapping`` sorted by their {w1} value."""
    ranked = sorted(
        ((key, value) for key, value in mapping.items() if value is not None),
        key=lambda kv: (str(kv[1]), kv[0]),
    )
    if not ranked:
        return [default]
    return [key for key, _ in ranked if key not in KNOWN] or [default]
''',
    '''
@functools.lru_cache(maxsize={cache})
def {name}(text):
    """Normalise a {w0} name: strip it, lower-case it and squeeze the separators."""
    text = text.strip().lower()
    parts = [p for p in text.replace("-", "_").split("_") if p]
    if len(parts) > {limit}:
        parts = parts[:{limit}]
    return "_".join(parts) or "{w2}"
''',
    '''
def {name}(values, weights=None):
    """Weighted {w0} average of ``values`` (plain average without ``weights``)."""
    if not values:
        return 0.0
    if weights is None:
        weights = [1.0] * len(values)
    total = sum(v * w for v, w in zip(values, weights))
    norm = sum(weights) or 1.0
    return round(total / norm * SCALE_FACTOR, {digits})
''',
    '''
def {name}(prefix="{w1}"):
    """Build a {w0} formatter bound to ``prefix``."""
    counter = 0

    def fmt(value, width={width}):
        nonlocal counter
        counter += 1
        return f"{{prefix}}[{{counter:03d}}] {{value!s:>{{width}}}}"

    return fmt
''',
    '''
def {name}(path, *, suffix=".{w2}"):
    """Split ``path`` into the {w0} directory, base name and suffix parts."""
    head, tail = os.path.split(path)
    base, ext = os.path.splitext(tail)
    if not ext:
        ext = suffix
    return {{"dir": head, "base": base, "ext": ext, "depth": head.count(os.sep)}}
''',
]

CLASS_TEMPLATES = [
    '''
class {name}:
    """A {w0} {w1} with a bounded history.

    Instances keep the last few values they were given; ``summary`` reports them.
    """

    kind = "{w0}"
    max_history = {limit}
    __slots__ = ("label", "_history", "_total")

    def __init__(self, label="{w1}", values=()):
        self.label = label
        self._history = list(values)[-self.max_history:]
        self._total = sum(v for v in self._history if isinstance(v, (int, float)))

    def push(self, value):
        """Record ``value``, dropping the oldest entry when full."""
        self._history.append(value)
        if len(self._history) > self.max_history:
            self._history.pop(0)
        if isinstance(value, (int, float)):
            self._total += value
        return self

    @property
    def total(self):
        return self._total

    @property
    def last(self):
        return self._history[-1] if self._history else None

    def summary(self):
        return f"{{self.kind}}:{{self.label}} n={{len(self._history)}} total={{self._total}}"

    def __len__(self):
        return len(self._history)

    def __repr__(self):
        return f"{name}(label={{self.label!r}}, values={{self._history!r}})"
''',
    '''
class {name}(dict):
    """A {w0} registry mapping names to {w1} factories."""

    default_key = "{w2}"

    @classmethod
    def from_pairs(cls, pairs):
        """Build a registry from ``(name, factory)`` pairs, later names winning."""
        reg = cls()
        for key, factory in pairs:
            reg[str(key)] = factory
        return reg

    def register(self, key=None):
        def decorator(func):
            self[key or func.__name__] = func
            return func

        return decorator

    def create(self, key=None, *args, **kwargs):
        factory = self.get(key or self.default_key)
        if factory is None:
            raise KeyError(f"no {w0} factory named {{key!r}}")
        return factory(*args, **kwargs)

    def __repr__(self):
        return f"<{name} {{sorted(self)}}>"
''',
    '''
class {name}(Exception):
    """Raised when a {w0} {w1} cannot be processed."""

    code = {code}

    def __init__(self, message, *, detail=None):
        super().__init__(message)
        self.detail = detail

    def __str__(self):
        base = super().__str__()
        return f"[{{self.code}}] {{base}}" + (f" ({{self.detail}})" if self.detail else "")
''',
]

IMPORT_TIME = [
    "",
    '_PATTERN = re.compile(r"^(?P<{w0}>[a-z_]+)-(?P<num>\\d{{1,{n}}})(?:\\.(?P<{w1}>\\w+))?$")\n',
    "{w0}_pair = _namedtuple_{i}(\"{cname}Pair\", [\"{w0}\", \"{w1}\"])\n",
    "",
]


def camel(*words):
    return "".join(w.capitalize() for w in words)


def module_text(i):
    rng = random.Random(1_000_003 * (i + 1))
    w = lambda: rng.choice(WORDS)  # noqa: E731
    names = []
    funcs = []
    for k in range(rng.randint(3, 7)):
        t = rng.randrange(len(FUNC_TEMPLATES))
        name = f"{w()}_{w()}_{k}"
        names.append(name)
        funcs.append(FUNC_TEMPLATES[t].format(
            name=name, w0=w(), w1=w(), w2=w(), limit=rng.randint(4, 64), mult=rng.randint(2, 9),
            default=w(), cache=rng.choice([32, 128, 256]), digits=rng.randint(2, 6),
            width=rng.randint(6, 20),
        ))
    classes = []
    for k in range(rng.randint(1, 3)):
        t = rng.randrange(len(CLASS_TEMPLATES))
        name = camel(w(), w()) + (str(k) if k else "")
        names.append(name)
        classes.append(CLASS_TEMPLATES[t].format(
            name=name, w0=w(), w1=w(), w2=w(), limit=rng.randint(4, 32), code=rng.randint(100, 999),
        ))
    deps = sorted(set(rng.randrange(i) for _ in range(rng.randint(0, 2)))) if i else []
    dep_imports = "".join(f"from scalepkg import m{d:05d} as _dep{k}\n" for k, d in enumerate(deps))
    kind = rng.randrange(len(IMPORT_TIME))
    extra_imports = "from collections import namedtuple as _namedtuple_%d\n" % i if kind == 2 else ""
    f0, f1 = rng.sample(WORDS, 2)  # distinct: group names and field names must differ
    import_time = IMPORT_TIME[kind].format(w0=f0, w1=f1, n=rng.randint(2, 6), i=i,
                                           cname=camel(w()))
    if deps:
        import_time += f"_DEP_WEIGHTS = ({', '.join(f'_dep{k}.WEIGHT' for k in range(len(deps)))},)\n"
    table = "".join(
        f"    ({rng.randint(0, 999)}, {w()!r}, {rng.random():.4f}, {bool(rng.getrandbits(1))}),\n"
        for _ in range(rng.randint(3, 8))
    )
    head = HEAD.format(
        title=f"{camel(w(), w())} helpers: {w()} and {w()} handling",
        para=" ".join(rng.choice(WORDS) for _ in range(40)).capitalize() + ".",
        index=i, extra_imports=extra_imports, dep_imports=dep_imports,
        all_names=", ".join(repr(n) for n in names),
        weight=rng.randint(1, 100), v0=rng.randint(0, 3), v1=rng.randint(0, 20),
        v2=rng.randint(0, 50), modname=f"scalepkg.m{i:05d}", timeout=rng.randint(1, 120) / 4,
        factor=round(rng.uniform(0.5, 2.0), 3), big=rng.getrandbits(100),
        magic=bytes(rng.getrandbits(8) for _ in range(8)), low=rng.randint(0, 10),
        high=rng.randint(50, 500), step=rng.randint(1, 5),
        levels=", ".join(repr(w()) for _ in range(rng.randint(2, 6))), table=table,
        known=", ".join(repr(w()) for _ in range(rng.randint(2, 6))), import_time=import_time,
    )
    return head + "".join(funcs) + "".join(classes)


ENTRY_HEAD = '''"""Scale workload entry script: imports all {n} modules of scalepkg (generated by
bench/workloads/gen_scale.py) and prints one line. The "bench harness" lines are those of
bench/workloads/app.py."""

'''

ENTRY_WORK = '''
_t_imp1 = time.monotonic()

import scalepkg

total = sum(getattr(scalepkg, f"m{{i:05d}}").WEIGHT for i in range({n}))
print(f"scale {n} ok {{total}}")

'''


def harness_blocks():
    """The two harness blocks of app.py (time stamps at start; the report at exit)."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "app.py"), encoding="utf-8") as f:
        app = f.read()
    marker_start, marker_end = "# --- bench harness: start", "# --- bench harness: end"
    a = app.index(marker_start)
    b = app.index("\n", app.index(marker_end, a)) + 1
    c = app.index(marker_start, b)
    return app[a:b], app[c:]


def write_if_changed(path, text):
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    except OSError:
        pass
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def generate(outdir, n):
    pkg = os.path.join(outdir, "scalepkg")
    os.makedirs(pkg, exist_ok=True)
    write_if_changed(os.path.join(pkg, "__init__.py"),
                     '"""Generated package for the pycds scale benchmark."""\n')
    for i in range(n):
        write_if_changed(os.path.join(pkg, f"m{i:05d}.py"), module_text(i))
    head, tail = harness_blocks()
    imports = "".join(f"import scalepkg.m{i:05d}\n" for i in range(n))
    entry = (ENTRY_HEAD.format(n=n) + head + "\n_t_imp0 = time.monotonic()\n" + imports
             + ENTRY_WORK.format(n=n) + tail)
    write_if_changed(os.path.join(outdir, "entry.py"), entry)
    return os.path.join(outdir, "entry.py")


def main(argv):
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: gen_scale.py OUTDIR N", file=sys.stderr)
        return 2
    entry = generate(argv[0], int(argv[1]))
    print(entry)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
