"""The exec-only floor: how fast a workload's import phase could be if every code object were
already in memory.

    python bench/tools/floor.py MODLIST SCRIPT [ARGS...]

MODLIST is the list the workload itself wrote in a plain run (``BENCH_MODLIST``): one line per
module that was imported by ``SourceFileLoader``, ``name<TAB>is_package<TAB>origin``, in import
order. This tool, run with the plain venv's interpreter:

1. loads every listed module's code object with ``SourceFileLoader(name, origin).get_code(name)``
   (reading and unmarshalling the ``.pyc``: the work a code cache exists to avoid), untimed;
2. puts a meta path finder first on ``sys.meta_path`` that answers for exactly those modules
   with a spec whose loader's ``get_code`` returns the preloaded object (no path search, no
   ``stat``, no file read, no unmarshal; module creation and ``exec`` are as usual);
3. runs SCRIPT as ``__main__``; the script's own harness stamps its import phase and writes them
   to ``BENCH_TIMING_FILE`` exactly as in a normal run.

So the import phase measured here is module object creation, spec/loader bookkeeping and the
execution of the module bodies: what remains for any code cache, including pycds. It imports
nothing that the interpreter has not loaded at start-up, so it does not pre-import any of the
workload's modules.
"""

import gc
import os
import sys

import _frozen_importlib_external as _external

SourceFileLoader = _external.SourceFileLoader


class PreloadedLoader(SourceFileLoader):
    def __init__(self, fullname, path, code):
        super().__init__(fullname, path)
        self._code = code

    def get_code(self, fullname):
        if fullname == self.name:
            return self._code
        return super().get_code(fullname)


class PreloadedFinder:
    def __init__(self, entries):
        self._entries = entries

    def find_spec(self, fullname, path=None, target=None):
        entry = self._entries.get(fullname)
        if entry is None:
            return None
        code, origin, is_package = entry
        loader = PreloadedLoader(fullname, origin, code)
        locations = [os.path.dirname(origin)] if is_package else None
        return _external.spec_from_file_location(
            fullname, origin, loader=loader, submodule_search_locations=locations
        )

    def invalidate_caches(self):
        pass


def main():
    if len(sys.argv) < 3:
        sys.stderr.write("usage: floor.py MODLIST SCRIPT [ARGS...]\n")
        return 2
    modlist, script = sys.argv[1], os.path.abspath(sys.argv[2])
    entries = {}
    with open(modlist, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            name, pkg, origin = line.rstrip("\n").split("\t", 2)
            if name in sys.modules or name in entries:
                continue
            code = SourceFileLoader(name, origin).get_code(name)
            entries[name] = (code, origin, pkg == "1")
    # The preloaded objects must not make the import phase pay for them elsewhere: freeze them
    # out of the cyclic GC (as an archive's objects are: untracked), so collections triggered
    # during the import phase do not traverse tens of MB of code objects no real run has yet.
    gc.collect()
    gc.freeze()
    sys.meta_path.insert(0, PreloadedFinder(entries))
    sys.path[0] = os.path.dirname(script)
    sys.argv = [script] + sys.argv[3:]
    with open(script, "rb") as f:
        source = f.read()
    code = compile(source, script, "exec")
    # A fresh __main__ module for the script (this tool's functions keep their own globals).
    main_module = type(sys)("__main__")
    main_module.__file__ = script
    main_module.__cached__ = None
    main_module.__builtins__ = __builtins__
    sys.modules["__main__"] = main_module
    exec(code, main_module.__dict__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
