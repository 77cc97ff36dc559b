"""TRACE and DUMP modes: the tracer that records the modules a program imports, and the dump
that writes an archive from such a list and exits. Imported by ``cds._runtime.activate`` only in
those modes. Like the runtime, it imports nothing an application might import itself."""

import os
import sys

from cds import _runtime as rt


class TraceFinder:
    """Placed just before ``PathFinder``, it asks ``PathFinder`` itself (what the import system
    would do next anyway), records each source module found, with the search locations used, and
    returns the same spec. Each record is appended to the list at once, in one ``write`` to an
    ``O_APPEND`` descriptor, so concurrent tracers never interleave lines and a process that
    ends abruptly (``os._exit``, a signal) loses nothing it imported."""

    def __init__(self, list_path):
        self._list = list_path
        self._fd = None
        self._recorded = set()
        self._count = 0
        self._regexes = set()
        self.trace_regexes = os.environ.get("PYCDSREGEX", "").strip() != "0"

    def find_spec(self, fullname, path=None, target=None):
        spec = rt.PathFinder.find_spec(fullname, path, target)
        if spec is not None and fullname not in self._recorded:
            try:
                self._record(fullname, path, spec)
            except Exception as exc:
                rt._say(1, f"not traced: {fullname}: {exc}")
        if fullname == "re._compiler" and self.trace_regexes and spec is not None and type(spec.loader) is rt.SourceFileLoader:
            spec.loader = _RegexTracingLoader(fullname, spec.loader.path, self)
        return spec

    def _append(self, line):
        if self._fd is None:
            self._fd = os.open(self._list, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        data = line.encode("utf-8", "surrogateescape")
        if os.write(self._fd, data) != len(data):
            raise OSError(f"short write to {self._list}")

    def record_regex(self, pattern, flags):
        """Records a pattern that ``re`` compiled (once per pattern, type and flags; at most
        ``MAX_REGEXES`` per process)."""
        key = (type(pattern), pattern, flags)
        if key in self._regexes or len(self._regexes) >= MAX_REGEXES:
            return
        self._regexes.add(key)
        try:
            if type(pattern) is bytes:
                text, is_bytes = pattern.decode("latin-1"), True
            else:
                pattern.encode("utf-8")  # the archive keeps only what UTF-8 can encode
                text, is_bytes = pattern, False
            self._append(regex_line(text, is_bytes, flags))
        except Exception as exc:
            rt._say(1, f"regular expression not traced: {exc}")

    def _record(self, fullname, path, spec):
        if type(spec.loader) is not rt.SourceFileLoader or not spec.origin:
            return
        search = [p for p in (sys.path if path is None else path) if isinstance(p, str)]
        st = os.stat(spec.origin)
        line = trace_line(fullname, spec.origin, spec.submodule_search_locations is not None,
                          search, st.st_mtime_ns, st.st_size)
        self._append(line)
        self._recorded.add(fullname)
        self._count += 1

    def invalidate_caches(self):
        pass


# Distinct patterns one traced process records at most (a program that compiles patterns made
# from its input would otherwise grow the list without bound).
MAX_REGEXES = 4096


class _RegexTracingLoader(rt.SourceFileLoader):
    """The loader of ``re._compiler`` while tracing: once the module has run, its ``compile``
    (what ``re`` calls for each pattern it has not compiled yet) also records the pattern."""

    def __init__(self, fullname, path, finder):
        super().__init__(fullname, path)
        self._cds_finder = finder

    def exec_module(self, module):
        super().exec_module(module)
        trace_regexes(module, self._cds_finder)


def trace_regexes(compiler, finder):
    """Makes ``re._compiler.compile`` record each pattern it compiles, through a native stand-in
    (``_cds.RegexCompile``) that adds no frame: warnings that compiling gives name the same
    caller as without pycds."""
    rt._cds.RegexCompile.install(compiler, None, finder.record_regex)


def start_trace(list_path):
    rt._state["list"] = list_path or None
    if not list_path:
        rt._state["error"] = "PYCDSMODE=TRACE needs PYCDSLIST; not tracing"
        rt._say(0, rt._state["error"])
        return
    finder = TraceFinder(os.path.abspath(list_path))
    rt._cds.insert_finder(finder)
    if "re._compiler" in sys.modules and finder.trace_regexes:
        trace_regexes(sys.modules["re._compiler"], finder)
    if rt._verbose >= 1:
        import atexit

        atexit.register(lambda: rt._say(1, f"traced {finder._count} modules into {finder._list}"))


# Every character that any line splitter (str.splitlines too) takes for a line break is escaped,
# so that a record is one line for every reader, whatever its pattern or path holds.
_ESCAPES = {i: f"\\u{i:04x}" for i in [*range(0x20), 0x7F, 0x85, 0x2028, 0x2029]}
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"


def _json_str(s):
    return '"' + s.translate(_ESCAPES) + '"'


def regex_line(text, is_bytes, flags):
    """One line of a traced list for a compiled pattern (a ``bytes`` pattern as latin-1 text)."""
    return (
        "{"
        f'"regex": {_json_str(text)}, "bytes": {"true" if is_bytes else "false"}, "flags": {int(flags)}'
        "}\n"
    )


def trace_line(name, origin, is_package, search, mtime_ns, size):
    """One line of a traced list: a JSON object (written without importing ``json``)."""
    return (
        "{"
        f'"name": {_json_str(name)}, "origin": {_json_str(origin)}, '
        f'"package": {"true" if is_package else "false"}, '
        f'"search": [{", ".join(_json_str(p) for p in search)}], '
        f'"mtime_ns": {int(mtime_ns)}, "size": {int(size)}'
        "}\n"
    )


# ---------------------------------------------------------------------------------------------
# DUMP: write the archive from the list, then exit without running the program.


def dump_and_exit(list_path, archive_path):
    if not list_path or not archive_path:
        rt._state["error"] = "PYCDSMODE=DUMP needs PYCDSLIST and PYCDSARCHIVE; not dumping"
        rt._say(0, rt._state["error"])
        return
    from cds import dump

    try:
        report = dump.run_dump(list_path, archive_path)
        sys.stderr.write(report.summary() + "\n")
        status = 0
    except Exception as exc:
        sys.stderr.write(f"pycds: dump failed: {exc}\n")
        status = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)
