"""Behaviour that depends on what each CPython version does with code objects and strings at
run time: specialization of calls into archived code (3.12+ guards calls on code versions) and
archived strings interned at run time (3.14 releases interned immortal strings at exit). Each
check runs the same program plainly and from the archive, in separate processes."""

HOT = '''
import dis


def add(a, b):
    return a + b


def caller(n):
    s = 0
    for i in range(n):
        s = add(s, i)
    return s


class Point:
    def __init__(self, x):
        self.x = x

    def norm(self):
        return abs(self.x)


def methods(n):
    t = 0
    for i in range(n):
        t += Point(i).norm()
    return t


def report():
    print(caller(2000), methods(2000))
    for f in (caller, methods):
        # The adaptive (specialized) instructions after the loops above: if archived code could
        # not be specialized (say, code version 0 on 3.12+), the calls would stay generic.
        print(f.__name__, [i.opname for i in dis.get_instructions(f, adaptive=True)])
'''


def test_calls_into_archived_code_specialize_like_a_normal_import(project):
    project.write("hot.py", HOT)
    project.write("main.py", "import hot\nhot.report()\n")
    project.build("main.py")
    plain = project.plain("main.py").stdout
    shared = project.share("main.py", PYCDSVERBOSE="2")
    assert "served hot from the archive" in shared.stderr
    assert shared.stdout == plain
    ops = " ".join(plain.splitlines()[1:])
    # The loops did specialize (the comparison above is not between two generic runs).
    assert any(op in ops for op in ("CALL_PY_EXACT_ARGS", "CALL_PY_WITH_DEFAULTS")), ops


INTERNING = '''
import sys

NAME = "not an identifier, so never interned by the compiler"
OTHER = "also-not-an-identifier"


class Holder:
    pass


def use():
    s = sys.intern(NAME)
    h = Holder()
    setattr(h, OTHER, 1)          # interns the attribute name in place
    d = {OTHER: 2}
    return s is NAME, getattr(h, OTHER), d[OTHER], sys.intern("also-" + "not-an-identifier") is OTHER
'''


def test_archived_strings_interned_at_run_time_survive_exit(project):
    project.write("strs.py", INTERNING)
    project.write("main.py", "import strs\nprint(strs.use())\n")
    project.build("main.py")
    plain = project.plain("main.py")
    # Exit status 0: interpreter finalization (which on 3.14 releases interned immortal
    # strings) must not free archived memory.
    shared = project.share("main.py", PYCDSVERBOSE="2")
    assert "served strs from the archive" in shared.stderr
    assert shared.stdout == plain.stdout
