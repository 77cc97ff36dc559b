"""Run-once objects (a module's own code object, its class bodies and their comprehensions, with
their tables) are given back after the module ran, as a normal import frees them, where the
loader can prove nothing refers to them (3.11, whose archived objects' reference counts move).
What the module defined keeps working; a module that keeps its own frame keeps them; importing
a released module again takes the normal path. On 3.12+ nothing is released."""

import json

from pycds_testing import layout_facts

# A module whose run-once part is several pages: many classes with bodies and comprehensions.
BIG = "\n".join(
    [
        '"""Many classes."""',
        "import sys",
        "TABLE = {k: len(k) for k in ('alpha', 'beta', 'gamma')}",
        "SQUARES = [i * i for i in range(12)]",
    ]
    + [
        f"class C{i}:\n"
        f"    '''Class {i}.'''\n"
        f"    KEYS = [k * {i} for k in range(3)]\n"
        f"    NAMES = {{n: {i} for n in ('x{i}', 'y{i}')}}\n"
        f"    def method(self, a={i}):\n"
        f"        return [a + j for j in range({i % 7})]\n"
        f"    @property\n"
        f"    def label(self):\n"
        f"        return 'c{i}:' + self.__class__.__name__\n"
        for i in range(120)
    ]
    + ["def explode():\n    raise ValueError('boom')\n"]
)

# A run-once part of more than a page that the module itself keeps referenced.
CLASSES = "".join(f"class D{i}:\n    V = [v + {i} for v in range(3)]\n    W = {{w: {i} for w in 'ab'}}\n" for i in range(60))

# Keeps its own frame, and so its code object: its run-once objects stay.
KEEPER = "import sys\nFRAME = sys._getframe()\nclass K:\n    VALUES = [v for v in range(5)]\n" + CLASSES

MAIN = r"""
import inspect, json, sys, traceback
import big, keeper
out = {
    "classes": [(c.__doc__, c.KEYS, sorted(c.NAMES.items()), c().method(), c().label)
                for c in (getattr(big, f"C{i}") for i in range(120))],
    "table": sorted(big.TABLE.items()), "squares": big.SQUARES, "doc": big.__doc__,
    "source": inspect.getsource(big.C7),
    "keeper": [keeper.K.VALUES, keeper.FRAME.f_code.co_names, [getattr(c, "co_qualname", c) for c in keeper.FRAME.f_code.co_consts]],
}
try:
    big.explode()
except ValueError:
    out["traceback"] = traceback.format_exc().replace(sys.prefix, "")
del sys.modules["big"]
import big as again
out["again"] = [again.C3().method(), again.C119.__doc__]
print(json.dumps(out, default=repr))
"""

PROBE = r"""
import json, os, runpy, sys
runpy.run_path(os.path.abspath("main.py"), run_name="__main__")
import cds
mapped = [line for line in open("/proc/self/smaps")]
rss = None
for i, line in enumerate(mapped):
    if line.rstrip().endswith("mod.img"):
        rss = next(int(l.split()[1]) for l in mapped[i + 1:] if l.startswith("Rss:")) * 1024
        break
print("PROBE" + json.dumps(dict(cds.info(), rss=rss)), file=sys.stderr)
"""


def test_run_once_objects_are_released_and_what_the_module_made_still_works(project):
    project.write("big.py", BIG)
    project.write("keeper.py", KEEPER)
    project.write("main.py", MAIN)
    project.write("probe.py", PROBE)
    expected = project.plain("main.py").stdout
    project.build("main.py")
    archive_size = project.archive.stat().st_size
    proc = project.share("probe.py", PYCDSVERBOSE="2")
    assert proc.stdout == expected
    info = json.loads([ln for ln in proc.stderr.splitlines() if ln.startswith("PROBE")][0][5:])
    assert "big" in info["served"] and "keeper" in info["served"]
    facts = layout_facts()
    immortal = facts["code_version"] is not None  # 3.12+: archived objects are immortal
    if immortal:
        assert info["released"] == 0 and info["released_bytes"] == 0
        assert "big" not in info["fallbacks"]
        return
    # big's run-once part spans pages of its own; it was given back after big ran.
    assert "pycds: big: released " in proc.stderr, proc.stderr[-3000:]
    assert info["released"] >= 1 and info["released_bytes"] >= 3 * 4096
    assert info["released_bytes"] % 4096 == 0
    # The pages are really gone from the process: the mapping's resident size is below the file
    # size by at least what was released.
    assert info["rss"] is not None and info["rss"] <= archive_size - info["released_bytes"]
    # keeper's code object is still referenced (its frame): its objects were kept.
    assert "pycds: keeper: released " not in proc.stderr
    assert "pycds: keeper: run-once objects kept: object at" in proc.stderr, proc.stderr[-3000:]
    # Importing big again, after it was released, took the normal path and said why.
    assert "released" in info["fallbacks"].get("big", ""), info["fallbacks"]


def test_nothing_is_released_while_the_module_body_still_runs(project):
    """A module whose body raises keeps its frames in the traceback: nothing is released, the
    error is the normal one, and importing it again (normally) raises again."""
    project.write("bad.py", CLASSES + "raise RuntimeError('bad module')\n")
    project.write("main.py", "try:\n    import bad\nexcept RuntimeError as e:\n    print('caught', e)\n"
                             "try:\n    import bad\nexcept RuntimeError as e:\n    print('again', e)\n")
    expected = project.plain("main.py").stdout
    assert expected == "caught bad module\nagain bad module\n"
    # The trace records the module even though its import failed.
    project.build("main.py")
    proc = project.share("main.py", PYCDSVERBOSE="2")
    assert proc.stdout == expected
    assert "pycds: bad: released " not in proc.stderr


# A module body that uses up tuple constants: the keyword names of its calls, an import's
# fromlist, a list literal's items. `STORED` is the same body where each of those tuples is also
# kept in a global, so it stays alive.
def used_up_body(keep):
    lines = ["from os.path import (join, split, basename, dirname, exists)", "CALLS = []",
             "def f(**kw):\n    CALLS.append(sorted(kw))"]
    for i in range(150):
        lines.append(f"f(alpha_{i}=1, beta_{i}=2, gamma_{i}=3)")
        if keep:
            lines.append(f"KEEP_{i} = ('alpha_{i}', 'beta_{i}', 'gamma_{i}')")
    lines.append("NAMES = " + repr([f"n{i}" for i in range(200)]))
    if keep:
        lines.append("KEEP_NAMES = " + repr(tuple(f"n{i}" for i in range(200))))
        lines.append("KEEP_FROM = ('join', 'split', 'basename', 'dirname', 'exists')")
    return "\n".join(lines) + "\n"


def test_constants_the_module_body_uses_up_go_with_its_run_once_objects(project):
    """The keyword-name tuples of the body's calls, its imports' fromlists and its list
    literals' tuples are dead once the body ran: they are archived among the run-once objects
    (and released with them, on 3.11). The same tuples kept by the module stay outside."""
    from archive_tools import Archive

    project.write("used.py", used_up_body(keep=False))
    project.write("stored.py", used_up_body(keep=True))
    project.write("main.py", "import json, used, stored\n"
                             "print(json.dumps([used.CALLS[-1], used.NAMES[:3], len(used.CALLS), used.join('a', 'b'),\n"
                             "                  stored.KEEP_7, stored.CALLS == used.CALLS]))\n")
    expected = project.plain("main.py").stdout
    project.build("main.py")
    info, proc = project.info("main.py", PYCDSVERBOSE="2")
    assert proc.stdout == expected
    assert {"used", "stored"} <= set(info["served"])
    facts = layout_facts()
    a = Archive(bytearray(project.archive.read_bytes()))
    tuple_type = next(addr for kind, arg, addr in a.externals() if kind == 1 and arg == dict(facts["type_args"])["tuple"])

    def run_once_tuples(name):
        i = a.index_of(name)
        found = a.objects_of_type(i, tuple_type, facts["archived_refcnt"])
        return sum(1 for at in found if a.in_run_once(i, at))

    if facts["code_version"] is not None:
        return  # 3.12+: bytecode is not scanned (nothing is released there)
    # 150 keyword-name tuples, one fromlist and one list literal's tuple, over what `stored`
    # (whose identical tuples the module keeps) has among its run-once objects.
    assert run_once_tuples("used") - run_once_tuples("stored") >= 152
    assert "pycds: used: released " in proc.stderr, proc.stderr[-2000:]


def test_a_used_up_constant_that_something_kept_keeps_its_objects(project):
    """An `__import__` hook that keeps the fromlist it is given: the tuple the bytecode would
    have used up is still referenced, so the module's run-once objects are kept, and the tuple
    the hook kept stays intact."""
    project.write("hooked.py", "import builtins\nSEEN = []\n_orig = builtins.__import__\n"
                               "def hook(name, globals=None, locals=None, fromlist=(), level=0):\n"
                               "    SEEN.append(fromlist)\n    return _orig(name, globals, locals, fromlist, level)\n"
                               "builtins.__import__ = hook\n"
                               "from os.path import (join, split, basename, dirname)\n"
                               "builtins.__import__ = _orig\n" + CLASSES)
    project.write("main.py", "import gc, hooked\ngc.collect()\nprint(hooked.SEEN, hooked.join('x', 'y'), hooked.D59.W)\n")
    expected = project.plain("main.py").stdout
    project.build("main.py")
    proc = project.share("main.py", PYCDSVERBOSE="2")
    assert proc.stdout == expected
    facts = layout_facts()
    if facts["code_version"] is None:
        assert "pycds: hooked: released " not in proc.stderr
        assert "pycds: hooked: run-once objects kept: object at" in proc.stderr, proc.stderr[-2000:]


# Small modules, each with a few hundred bytes of run-once objects (class bodies), so that
# several share a page of the run-once region; main imports them one at a time and records, after
# each, which modules had been served and the bytes of pages given back so far.
def small_module(i):
    return f"class S{i}:\n    X = [x * {i} for x in range(3)]\nVALUE = S{i}.X\n"


SMALL_MAIN = r"""
import json, sys
log = sys.modules["cds._cds"].serve_log
steps = []
for i in range(12):
    __import__(f"small{i}")
    steps.append([list(log()["served"]), log()["released_bytes"]])
print("STEPS" + json.dumps(steps), file=sys.stderr)
"""


def test_a_page_of_run_once_objects_goes_back_when_the_last_module_on_it_has_run(project):
    """The run-once region pools small modules' run-once objects on shared pages (3.11): a page
    goes back once every module with run-once objects on it has run, and not before. The
    expected bytes after each import are worked out here from the archive's layout (which pages
    each module's run-once part covers) and the modules served so far."""
    from archive_tools import Archive

    for i in range(12):
        project.write(f"small{i}.py", small_module(i))
    project.write("main.py", SMALL_MAIN)
    project.build("main.py")
    proc = project.share("main.py", PYCDSVERBOSE="2")
    steps = json.loads([ln for ln in proc.stderr.splitlines() if ln.startswith("STEPS")][0][5:])
    if layout_facts()["code_version"] is not None:
        assert all(given == 0 for _, given in steps)  # 3.12+: nothing is released
        return
    assert "run-once objects kept" not in proc.stderr, proc.stderr[-2000:]
    a = Archive(bytearray(project.archive.read_bytes()))
    region = a.h("objects_off") + a.h("run_once_region_off")
    end = region + a.h("run_once_region_len")
    on_page = {}  # page -> names of the modules with run-once objects on it
    for i in range(a.h("module_count")):
        start, stop = a.parts(i)[2]
        if start < stop:
            assert region <= start and stop <= end, a.name(i)
            for page in range(start // 4096, (stop - 1) // 4096 + 1):
                on_page.setdefault(page, set()).add(a.name(i))
    shared = [names for names in on_page.values() if len({n for n in names if n.startswith("small")}) >= 2]
    assert shared, "no page holds the run-once objects of two of the small modules"
    for served, given in steps:
        expected = 4096 * sum(1 for names in on_page.values() if names <= set(served))
        assert given == expected, (served[-1], given, expected)
    # Not every page could go back at once: some went back only with a later module.
    assert len({given for _, given in steps}) > 1
