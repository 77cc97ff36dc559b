"""Run ``python -c CODE`` and report the process's peak RSS.

    python bench/tools/hwm.py OUTFILE CODE

Behaves like ``python -c CODE`` (``sys.path[0]`` is ``''``, ``__name__`` is ``__main__``) and,
at exit, writes ``VmHWM`` from /proc/self/status (KiB) to OUTFILE. The runner wraps the dumpers
in it because the parent's ``ru_maxrss`` of a child also counts the parent's own memory (the
child shares it until exec). It imports nothing beyond what the interpreter loads at start-up,
so the seed's dumper, which archives what it imports itself, sees the same state as under -c.
"""

import atexit
import os
import sys


def _report(path):
    try:
        fd = os.open("/proc/self/status", os.O_RDONLY)
        status = os.read(fd, 16384)
        os.close(fd)
    except OSError:
        return
    for line in status.split(b"\n"):
        if line.startswith(b"VmHWM:"):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, line.split()[1])
            os.close(fd)


def main():
    out, code = sys.argv[1], sys.argv[2]
    atexit.register(_report, out)
    sys.argv = ["-c"] + sys.argv[3:]
    sys.path[0] = ""
    main_module = type(sys)("__main__")
    main_module.__builtins__ = __builtins__
    sys.modules["__main__"] = main_module
    exec(compile(code, "<string>", "exec"), main_module.__dict__)


if __name__ == "__main__":
    main()
