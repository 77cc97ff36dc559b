"""The run-ahead thread: while a program imports, a thread of pycds checks, relocates and
validates the next archived modules in dump order, so that an import finds most of its module's
fix-up done. What it prepares must behave exactly like what the importing thread fixes up
itself; a module it finds damaged must fall back as before; and a `fork()` must never catch it
half-way (the child must get whole modules, no stuck lock, and CPython 3.12+ must not see a
second thread at the fork)."""

import json

from archive_tools import Archive

MODULES = 40


def module_source(i):
    return f"""
import functools, time
TABLE_{i} = {{f"k{{j}}": (j, j * {i}, "v_{i}_" + str(j)) for j in range(50)}}
FROZEN_{i} = frozenset({{"a_{i}", "b_{i}", {i}}})

class Thing{i}:
    '''Thing number {i}.'''
    scale = {i}

    def __init__(self, x):
        self.x = x

    @functools.lru_cache(maxsize=None)
    def value(self, y=({i}, "dflt_{i}")):
        return (self.x * self.scale, y, sorted(FROZEN_{i}, key=str))

def helper_{i}(*args, key_{i}=None, **kw):
    return (args, key_{i}, sorted(kw.items()), TABLE_{i}["k7"])

# Gives up the CPU for a moment, as an import that reads a file or a socket would, so that the
# run-ahead thread gets to run even when other processes keep every core busy.
time.sleep(0.004)
"""


def result_of(i):
    return f"(m{i}.Thing{i}(3).value(), m{i}.helper_{i}(1, 2, key_{i}='k', z=1), m{i}.Thing{i}.__doc__)"


MAIN = f"""
import importlib, json, sys
mods = {{}}
for i in range({MODULES}):
    mods[i] = importlib.import_module(f"m{{i}}")
    globals()[f"m{{i}}"] = mods[i]
print(json.dumps([{", ".join(result_of(i) for i in range(MODULES))}], default=repr))
"""

PROBE = """
import json, os, runpy, sys
runpy.run_path(os.path.abspath("main.py"), run_name="__main__")
import cds
print("PROBE" + json.dumps(cds.info()), file=sys.stderr)
"""

# Imports part of the modules, forks while the run-ahead thread is running, and imports the rest
# in both processes; each writes its results to a file of its own. Counts this process's threads (/proc/self/task)
# just before and just after the fork.
FORK = f"""
import importlib, json, os, sys
def threads():
    return len(os.listdir("/proc/self/task"))
def names():
    # Name and state (R, S, Z, ...) of each thread the kernel lists.
    out = []
    for t in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{{t}}/stat") as f:
                st = f.read()
            out.append(st[st.index("(") + 1:st.rindex(")")] + " " + st[st.rindex(")") + 2])
        except OSError as e:
            out.append(repr(e))
    return out
first = [importlib.import_module(f"m{{i}}") for i in range(10)]
before = threads()
pid = os.fork()
after = threads()
after_names = names()
for i in range({MODULES}):
    globals()[f"m{{i}}"] = importlib.import_module(f"m{{i}}")
out = json.dumps([{", ".join(result_of(i) for i in range(MODULES))}], default=repr)
import cds
info = cds.info()
who = "child" if pid == 0 else "parent"
with open(who + ".json", "w") as f:
    json.dump({{"out": out, "before": before, "after": after, "after_names": after_names, "info": info}}, f)
if pid == 0:
    os._exit(0)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def probe_after(module):
    """PROBE, after importing `module` first, before anything else the program imports."""
    return f"import {module}\n" + PROBE


def write_project(project):
    for i in range(MODULES):
        project.write(f"m{i}.py", module_source(i))
    project.write("main.py", MAIN)
    project.write("probe.py", PROBE)
    project.write("fork.py", FORK)


def probe(proc):
    return json.loads([ln for ln in proc.stderr.splitlines() if ln.startswith("PROBE")][0][5:])


def test_modules_prepared_ahead_behave_like_normal_imports(project):
    write_project(project)
    expected = project.plain("main.py").stdout
    project.build("main.py")
    proc = project.share("probe.py")
    assert proc.stdout == expected
    info = probe(proc)
    assert [f"m{i}" for i in range(MODULES)] == [n for n in info["served"] if n.startswith("m")]
    assert info["fallbacks"] == {}
    # Most imports found their module prepared by the thread: it starts at the third import, and
    # each module's body sleeps for 4 ms, far longer than the thread takes to prepare the next
    # one. (Without the sleep, CI runs with every core busy saw as few as 14 of 40.)
    assert info["prepared_ahead"] >= MODULES // 2, info["prepared_ahead"]


def test_a_module_imported_out_of_order_does_not_make_the_thread_skip_the_rest(project):
    """The traced run imported m0..m39 in order; this run asks for m30 first (as a program's
    start-up may differ from the traced one's), then for all of them in order. The thread must
    go back to m0 with the imports, not stay past m30 and leave m0..m29 to the importing thread."""
    write_project(project)
    expected = project.plain("main.py").stdout
    project.build("main.py")
    project.write("early.py", probe_after("m30"))
    proc = project.share("early.py")
    assert proc.stdout == expected
    info = probe(proc)
    assert info["fallbacks"] == {}
    served = [n for n in info["served"] if n.startswith("m")]
    assert served[0] == "m30" and sorted(served) == sorted(f"m{i}" for i in range(MODULES)), served
    # When the thread stayed past m30, 20 of the 60 modules served (the standard library's
    # included) were prepared ahead; now nearly all are.
    assert info["prepared_ahead"] >= len(info["served"]) * 2 // 3, (info["prepared_ahead"], len(info["served"]))


def test_a_damaged_module_prepared_ahead_falls_back_with_the_reason(project):
    write_project(project)
    expected = project.plain("main.py").stdout
    project.build("main.py")
    a = Archive(bytearray(project.archive.read_bytes()))
    i = a.index_of("m25")
    a.b[a.middle(i)] ^= 0x40
    project.archive.write_bytes(bytes(a.b))
    proc = project.share("probe.py", PYCDSVERBOSE="1")
    assert proc.stdout == expected
    info = probe(proc)
    assert list(info["fallbacks"]) == ["m25"], info["fallbacks"]
    assert "checksum" in info["fallbacks"]["m25"], info["fallbacks"]
    assert "m25" in proc.stderr
    assert info["prepared_ahead"] >= MODULES // 2 - 1


def test_fork_while_running_ahead(project):
    write_project(project)
    expected = project.plain("main.py").stdout.strip()
    project.build("main.py")
    # -W error: CPython 3.12+ warns (DeprecationWarning) when a process with more than one
    # thread forks; the thread must be gone by then.
    project.share("-W", "error", "fork.py")
    child = json.loads((project.root / "child.json").read_text())
    parent = json.loads((project.root / "parent.json").read_text())
    # The thread was running when the program forked (else this test proves nothing) ...
    assert parent["before"] == 2, parent
    # ... and was joined before the fork, and gone from the kernel's list: one thread on each
    # side right after it. (A join returns a moment before the kernel drops the thread; the
    # parent saw it listed, without a readable stat, in 2 of 55 runs before pycds waited.)
    assert parent["after"] == 1 and child["after"] == 1, (parent["after_names"], child["after_names"])
    for side in (parent, child):
        assert json.loads(side["out"]) == json.loads(expected)
        assert side["info"]["fallbacks"] == {}
        assert [f"m{i}" for i in range(MODULES)] == [n for n in side["info"]["served"] if n.startswith("m")]
    # The thread started again after the fork, in the parent and in the child.
    assert parent["info"]["prepared_ahead"] >= 10 and child["info"]["prepared_ahead"] >= 10, (parent, child)


def test_the_thread_exits_once_the_imports_are_done(project):
    write_project(project)
    project.build("main.py")
    project.write("idle.py", """
import os, runpy, time
runpy.run_path(os.path.abspath("main.py"), run_name="__main__")
busy = len(os.listdir("/proc/self/task"))
time.sleep(0.5)
print("THREADS", busy, len(os.listdir("/proc/self/task")))
""")
    proc = project.share("idle.py")
    busy, idle = map(int, proc.stdout.split("THREADS")[1].split())
    assert idle == 1, (busy, idle)


def test_the_thread_blocks_every_signal(project):
    """Signals sent to the process must reach the interpreter's threads (a Ctrl-C must interrupt
    the main thread's blocking calls), never the run-ahead thread."""
    write_project(project)
    project.build("main.py")
    project.write("signals.py", """
import importlib, os
mods = [importlib.import_module(f"m{i}") for i in range(10)]
for tid in os.listdir("/proc/self/task"):
    try:
        comm = open(f"/proc/self/task/{tid}/comm").read().strip()
        status = open(f"/proc/self/task/{tid}/status").read()
    except OSError:
        continue
    if comm == "pycds-prepare":
        blocked = int(next(ln for ln in status.splitlines() if ln.startswith("SigBlk:")).split()[1], 16)
        print("BLOCKED", blocked)
""")
    proc = project.share("signals.py")
    assert "BLOCKED" in proc.stdout, proc.stdout
    blocked = int(proc.stdout.split("BLOCKED")[1].split()[0])
    import signal
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD, signal.SIGALRM, signal.SIGPIPE):
        assert blocked >> (sig - 1) & 1, (sig, hex(blocked))


# The reason a module falls back with when its fix-up panicked (loader.rs, `PANICKED`).
PANICKED = "archive data unusable: fixing it up failed unexpectedly (a bug in pycds; please report it)"


def test_a_panic_on_the_importing_thread_falls_back(project):
    """A panic while fixing a module up (a bug in pycds; injected here with
    PYCDS_TEST_PANIC_IN_PREPARE) is caught: the module is imported normally and the program runs
    on. m7 is imported first, before the run-ahead thread starts (a few imports later), so the
    importing thread fixes it up itself."""
    write_project(project)
    expected = project.plain("main.py").stdout
    project.build("main.py")
    project.write("first.py", probe_after("m7"))
    proc = project.share("first.py", PYCDS_TEST_PANIC_IN_PREPARE="m7")
    assert proc.stdout == expected
    info = probe(proc)
    assert info["fallbacks"] == {"m7": PANICKED}, info["fallbacks"]
    served = [n for n in info["served"] if n.startswith("m")]
    assert sorted(served) == sorted(f"m{i}" for i in range(MODULES) if i != 7), served
    # Rust's panic message, from the importing thread, not the run-ahead thread.
    assert "panicked" in proc.stderr and "PYCDS_TEST_PANIC_IN_PREPARE=m7" in proc.stderr, proc.stderr
    assert "pycds-prepare" not in proc.stderr, proc.stderr


def test_a_panic_while_preparing_ahead_falls_back_and_the_backtrace_prints(project):
    """The same for a module the run-ahead thread usually prepares (m25), with RUST_BACKTRACE=1:
    the panic's backtrace is printed (the extension links its own unwinder, see build.rs, and
    the backtrace printer lies apart from the serving code), and the program runs on."""
    write_project(project)
    expected = project.plain("main.py").stdout
    project.build("main.py")
    proc = project.share("probe.py", PYCDS_TEST_PANIC_IN_PREPARE="m25", RUST_BACKTRACE="1")
    assert proc.stdout == expected
    info = probe(proc)
    assert info["fallbacks"] == {"m25": PANICKED}, info["fallbacks"]
    assert [f"m{i}" for i in range(MODULES) if i != 25] == [n for n in info["served"] if n.startswith("m")]
    assert "PYCDS_TEST_PANIC_IN_PREPARE=m25" in proc.stderr, proc.stderr
    assert "stack backtrace:" in proc.stderr, proc.stderr
    # The thread went on after the panic: the modules after m25 were prepared ahead too.
    assert info["prepared_ahead"] >= MODULES // 2, info["prepared_ahead"]


# Imports archived modules (which import nothing) one at a time until three have been served in
# all, counting start-up's own (`_distutils_hack` from setuptools' `.pth` in a venv), then the
# rest. Prints, at three, how many modules were served, how many threads the process has (the
# main thread alone, or the run-ahead thread too) and how many imports found their module
# prepared ahead, and that last count at the end. Reads pycds's log from the extension, which
# start-up loaded (importing `cds` would do imports of its own).
STARTUP_ONLY = """
import os, sys
log = sys.modules["cds._cds"].serve_log
def threads():
    return len(os.listdir("/proc/self/task"))
i = 0
while len(log()["served"]) < 3:
    __import__(f"leaf{i}")
    i += 1
three = (len(log()["served"]), threads(), log()["prepared_ahead"])
for j in range(i, 40):
    __import__(f"leaf{j}")
print("THREADS", three, log()["prepared_ahead"])
"""


def test_a_process_that_only_starts_up_never_starts_the_thread(project):
    """Start-up alone serves up to three modules (setuptools' `_distutils_hack`, Debian's
    `sitecustomize`, and the `linecache` that `python -c` imports on 3.13+): a process that
    serves no more than that pays for no run-ahead thread, which would only prepare modules such
    a process never imports. Later imports start it."""
    for i in range(40):
        # `time` is built in: the leaves import nothing the archive holds. The pause lets the
        # thread, once started, get ahead of the imports (as in `module_source`).
        project.write(f"leaf{i}.py", f"import time\nVALUE = {i}\nTABLE = {{'k': ({i}, 'v{i}')}}\ntime.sleep(0.002)\n")
    project.write("main.py", "".join(f"import leaf{i}\n" for i in range(40)))
    project.build("main.py")
    project.write("startup_only.py", STARTUP_ONLY)
    proc = project.share("startup_only.py")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("THREADS")][0]
    three, prepared_ahead = line[len("THREADS "):].rsplit(" ", 1)
    assert three == "(3, 1, 0)", line
    assert int(prepared_ahead) > 0, line
