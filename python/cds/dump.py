"""The dumper: turn a module list into an archive, without running any application code.

A list line is either a JSON object written by the tracer (name, origin, search locations, and
the source's stat) or, as in the original seeds, a plain module name. Each module is found with
the import system's own ``PathFinder`` on the recorded search locations (or, for a plain name, on
``sys.path`` and the parent package's directory), its code object comes from
``SourceFileLoader.get_code`` (the ``.pyc`` when valid, else compiled), and the extension copies
it into the archive. Nothing is imported or executed.

    python -m cds.dump mod.lst mod.img
    python -c 'import cds.dump; cds.dump.run_dump("mod.lst", "mod.img")'
"""

import json
import marshal
import os
import sys
import time
from dataclasses import dataclass, field
from importlib.machinery import PathFinder, SourceFileLoader

__all__ = ["run_dump", "read_list", "DumpReport", "main"]


@dataclass
class DumpReport:
    archive: str
    modules: int = 0
    skipped: dict = field(default_factory=dict)
    file_bytes: int = 0
    objects_bytes: int = 0
    pyc_bytes: int = 0
    seconds: float = 0.0
    list_errors: list = field(default_factory=list)
    regexes: int = 0
    regexes_skipped: dict = field(default_factory=dict)

    def summary(self):
        mb = 1024 * 1024
        return (
            f"pycds: archived {self.modules} modules into {self.archive} "
            f"({self.file_bytes / mb:.2f} MiB for {self.pyc_bytes / mb:.2f} MiB of .pyc) "
            f"in {self.seconds:.2f} s; {len(self.skipped)} skipped; "
            f"{self.regexes} compiled regular expressions"
        )


def read_list(path):
    """Parse a module list. Returns ``(records, errors)``: each record a dict with at least
    ``name``, or, for a regular expression the tracer saw compiled, ``regex`` (the pattern;
    latin-1 text of a ``bytes`` pattern), ``bytes`` and ``flags``; errors are ``"line N: why"``
    strings for lines that were skipped. Later duplicates of a name (or of a regular
    expression) are dropped."""
    records, errors, seen, seen_regexes = [], [], set(), set()
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for number, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("{"):
                try:
                    rec = json.loads(line)
                    ok = isinstance(rec, dict) and isinstance(rec.get("name"), str)
                except ValueError as exc:
                    errors.append(f"line {number}: not valid JSON ({exc})")
                    continue
                if isinstance(rec, dict) and "regex" in rec:
                    if not (isinstance(rec["regex"], str) and type(rec.get("flags")) is int):
                        errors.append(f"line {number}: malformed regular expression record")
                        continue
                    key = (rec["regex"], bool(rec.get("bytes")), rec["flags"])
                    if key not in seen_regexes:  # lists that several traced runs appended to
                        seen_regexes.add(key)
                        records.append(rec)
                    continue
                if not ok:
                    errors.append(f"line {number}: record without a name")
                    continue
            else:
                rec = {"name": line}
            name = rec["name"]
            # What the import system accepts: non-empty dotted parts that can name a file (not
            # only identifiers: `_sysconfigdata__linux_x86_64-linux-gnu` is a real module).
            if not all(part and part.isprintable() and not any(c in part for c in " /\\") for part in name.split(".")):
                errors.append(f"line {number}: {name!r} is not a module name")
                continue
            if name not in seen:
                seen.add(name)
                records.append(rec)
    return records, errors


def _location_index(search, origin, is_package):
    """Index of the search location that holds ``origin`` (the last one if none matches)."""
    parent = os.path.dirname(origin)
    if is_package:
        parent = os.path.dirname(parent)
    for i, entry in enumerate(search):
        if os.path.abspath(entry or ".") == parent:
            return i
    return len(search) - 1


class _Resolver:
    """Finds modules the way the import system would, on recorded or default search paths."""

    def __init__(self):
        self._specs = {}

    def spec_for_plain_name(self, name):
        if name in self._specs:
            return self._specs[name]
        parent, _, _ = name.rpartition(".")
        if parent:
            pspec = self.spec_for_plain_name(parent)[0]
            search = list(pspec.submodule_search_locations or []) if pspec else []
        else:
            search = list(sys.path)
        spec = PathFinder.find_spec(name, search) if search else None
        self._specs[name] = (spec, search)
        return spec, search


def run_dump(list_path, archive_path, *, verbose=False):
    """Write the archive ``archive_path`` from the module list ``list_path``; return a
    :class:`DumpReport`. Modules that cannot be archived are skipped (reported, not fatal).
    The archive is written to a temporary file and renamed into place."""
    from cds import _cds

    started = time.perf_counter()
    records, errors = read_list(list_path)
    report = DumpReport(archive=str(archive_path), list_errors=errors)
    writer = _cds.ArchiveWriter()
    resolver = _Resolver()
    for rec in records:
        if "regex" in rec:
            _add_regex(writer, report, rec)
            continue
        name = rec["name"]
        origin = rec.get("origin")
        if origin is not None:
            search = [p for p in rec.get("search", []) if isinstance(p, str)]
            spec = PathFinder.find_spec(name, search)
        else:
            spec, search = resolver.spec_for_plain_name(name)
        reason = None
        if spec is None:
            reason = "not found on its search path"
        elif type(spec.loader) is not SourceFileLoader:
            reason = f"not a source module ({type(spec.loader).__name__})"
        elif origin is not None and spec.origin != origin:
            reason = f"now resolves to {spec.origin}, traced at {origin}"
        if reason is None:
            reason = _add(writer, report, name, spec, search)
        if reason is not None:
            report.skipped[name] = reason
            if verbose:
                print(f"pycds: skipped {name}: {reason}", file=sys.stderr)
    stats = writer.write(os.fspath(archive_path))
    report.modules = stats["modules"]
    report.file_bytes = stats["file_bytes"]
    report.objects_bytes = stats["objects_bytes"]
    report.seconds = time.perf_counter() - started
    return report


def _add(writer, report, name, spec, search):
    origin = spec.origin
    is_package = spec.submodule_search_locations is not None
    loader = SourceFileLoader(name, origin)
    try:
        before = os.stat(origin)
        code = loader.get_code(name)
        after = os.stat(origin)
    except (OSError, SyntaxError, ValueError, ImportError) as exc:
        return f"cannot compile: {exc}"
    if (before.st_mtime_ns, before.st_size) != (after.st_mtime_ns, after.st_size):
        return "source changed while it was being read"
    k = _location_index(search, origin, is_package)
    try:
        writer.add(name, code, origin, is_package, after.st_mtime_ns, after.st_size, search[: k + 1])
    except _cds_error() as exc:
        return str(exc)
    report.pyc_bytes += 16 + len(marshal.dumps(code))
    return None


def _add_regex(writer, report, rec):
    """Compiles a traced pattern as ``re._compiler.compile`` does and keeps the program, if
    compiling it again from the program gives an equal pattern and compiling it warns of
    nothing (a process served from the archive would not see the warning)."""
    import re
    import warnings
    from re import _compiler, _parser

    text, flags = rec["regex"], rec["flags"]
    try:
        pattern = text.encode("latin-1") if rec.get("bytes") else text
    except UnicodeEncodeError:
        report.regexes_skipped[text] = "not a bytes pattern"
        return
    if flags & re.DEBUG:
        report.regexes_skipped[text] = "DEBUG flag"
        return
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            p = _parser.parse(pattern, flags)
            code = _compiler._code(p, flags)
            groupindex = p.state.groupdict
            indexgroup = [None] * p.state.groups
            for k, i in groupindex.items():
                indexgroup[i] = k
            final = flags | p.state.flags
            ours = _compiler._sre.compile(pattern, final, code, p.state.groups - 1, groupindex, tuple(indexgroup))
            theirs = _compiler.compile(pattern, flags)
    except Exception as exc:
        report.regexes_skipped[text] = f"does not compile: {exc}"
        return
    if caught:
        report.regexes_skipped[text] = f"compiling it warns: {caught[0].message}"
        return
    if final & re.LOCALE:
        # Its program depends on the locale it is compiled under (see _sre's pattern compare).
        report.regexes_skipped[text] = "LOCALE flag: compiled for the locale of each run"
        return
    same = (ours == theirs and ours.groups == theirs.groups and ours.groupindex == theirs.groupindex)
    if not same:
        report.regexes_skipped[text] = "the program does not compile to the same pattern"
        return
    try:
        if writer.add_regex(pattern, flags, final, code, p.state.groups - 1, dict(groupindex)):
            report.regexes += 1
    except (ValueError, OverflowError, _cds_error()) as exc:
        report.regexes_skipped[text] = str(exc)


def _cds_error():
    from cds import _cds

    return _cds.ArchiveError


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m cds.dump", description="Write a pycds archive from a module list."
    )
    parser.add_argument("list", help="module list written by the tracer (or plain module names)")
    parser.add_argument("archive", help="archive file to write (replaced atomically)")
    parser.add_argument("-v", "--verbose", action="store_true", help="name each skipped module")
    args = parser.parse_args(argv)
    try:
        report = run_dump(args.list, args.archive, verbose=args.verbose)
    except Exception as exc:
        print(f"pycds: dump failed: {exc}", file=sys.stderr)
        return 1
    for err in report.list_errors:
        print(f"pycds: {args.list}: {err}", file=sys.stderr)
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
