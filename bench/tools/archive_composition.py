"""What an archive's bytes are made of, against the `.pyc` bytes of the same modules.

    .venv/bin/python bench/tools/archive_composition.py LIST [ARCHIVE]

LIST is a module list written by the tracer (one JSON object per module). Run it with the
interpreter the list was traced with, in a venv where pycds is installed (it reads the layout
facts of `cds._cds`). For each listed module it loads the code object as the dumper does
(`SourceFileLoader.get_code`), walks every object the archive would hold for it, and adds up
what each kind of object takes when laid out as the interpreter's own structs: the object's
size as the interpreter reports it (`sys.getsizeof`, which includes a tuple's GC header),
rounded up to the archive's 16-byte alignment. Interned strings are counted once per archive,
as the text of the strings table (their bytes and a 16-byte record). The interpreter's own
singletons (small ints, empty and one-character strings and bytes, `None`, ...) cost nothing.

For each kind it also gives the *fixed part*: what an object of that kind takes before its
contents (a code object without its bytecode, a string or bytes without its characters, a
tuple without its item pointers). The payload left is about what marshal writes; the fixed
parts are what an in-place layout adds, and that is where the archive's excess over the
`.pyc` bytes comes from. This is an estimate of the objects section: with ARCHIVE given, the
archive's own figures are printed beside it (objects, metadata, file size).
"""

import argparse
import collections
import ctypes
import marshal
import sys
import types
from importlib.machinery import SourceFileLoader

from cds import _cds
from cds.dump import read_list

ALIGN = 16
FACTS = _cds.layout_facts()


def align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def interned(s):
    """Whether `s` carries the interned mark (offset and mask from the interpreter's headers)."""
    state = ctypes.c_uint32.from_address(id(s) + FACTS["str_state"]).value
    return state & FACTS["str_state_interned"] != 0


def singleton(o):
    if o is None or o is Ellipsis or isinstance(o, bool):
        return True
    if type(o) is int:
        return -5 <= o <= 256
    if type(o) in (tuple, frozenset):
        return len(o) == 0
    if type(o) is bytes:
        return len(o) <= 1
    if type(o) is str:
        return len(o) == 0 or (len(o) == 1 and ord(o) < 256)
    return False


class Tally:
    def __init__(self):
        self.count = collections.Counter()
        self.bytes = collections.Counter()
        self.fixed = collections.Counter()
        self.table_strings = set()

    def add(self, kind, size, fixed):
        self.count[kind] += 1
        self.bytes[kind] += align(size)
        self.fixed[kind] += align(size) - (size - fixed)

    def module(self, code):
        seen = set()

        def walk(o, role):
            if singleton(o) or id(o) in seen:
                return
            seen.add(id(o))
            t = type(o)
            if t is types.CodeType:
                self.add("code object", sys.getsizeof(o), sys.getsizeof(o) - len(o.co_code))
                walk(o.co_consts, "constants")
                walk(o.co_names, "names")
                # The code object's own table of local, cell and free variable names and its
                # bytes of their kinds (`co_varnames` and the others are made from them).
                local = o.co_varnames + tuple(c for c in o.co_cellvars if c not in o.co_varnames) + o.co_freevars
                if local:
                    size = sys.getsizeof(local)
                    self.add("tuple (local names)", size, size - 8 * len(local))
                    for x in local:
                        walk(x, "names")
                    if len(local) > 1:
                        self.add("bytes (local kinds)", sys.getsizeof(bytes(len(local))), sys.getsizeof(b""))
                for field in ("co_linetable", "co_exceptiontable"):
                    walk(getattr(o, field), field)
                for field in ("co_filename", "co_name", "co_qualname"):
                    walk(getattr(o, field), "name")
            elif t in (tuple, frozenset):  # a frozenset is archived as a tuple
                size = sys.getsizeof(tuple(o))
                self.add(f"tuple ({role})", size, size - 8 * len(o))
                for x in o:
                    walk(x, role)
            elif t is str:
                if interned(o):
                    if o not in self.table_strings:
                        self.table_strings.add(o)
                        text = len(o.encode("utf-8", "surrogatepass"))
                        self.count["interned str (strings table)"] += 1
                        self.bytes["interned str (strings table)"] += 16 + text
                        self.fixed["interned str (strings table)"] += 16
                else:
                    top = max(map(ord, o))
                    width = 1 if top < 256 else 2 if top < 65536 else 4
                    self.add(f"str ({role})", sys.getsizeof(o), sys.getsizeof(o) - width * len(o))
            elif t is bytes:
                label = role if role in ("co_linetable", "co_exceptiontable") else "constants"
                self.add(f"bytes ({label})", sys.getsizeof(o), sys.getsizeof(b""))
            else:
                self.add(t.__name__, sys.getsizeof(o), sys.getsizeof(o))

        walk(code, "constants")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("list")
    ap.add_argument("archive", nargs="?")
    args = ap.parse_args()
    tally = Tally()
    modules = 0
    marshalled = 0
    records, _ = read_list(args.list)  # the dumper's own reader (one record per name)
    for rec in records:
        name, origin = rec.get("name"), str(rec.get("origin", ""))
        if not origin.endswith(".py"):
            continue  # a plain name or a regular expression: not a module with a recorded source
        try:
            code = SourceFileLoader(name, origin).get_code(name)
        except (OSError, SyntaxError, ImportError) as e:
            print(f"skipped {name}: {e}", file=sys.stderr)
            continue
        modules += 1
        marshalled += len(marshal.dumps(code))
        tally.module(code)
    total = sum(tally.bytes.values())
    fixed = sum(tally.fixed.values())
    mib = 1 << 20
    print(f"{modules} modules; marshalled code objects {marshalled / mib:.2f} MiB (the .pyc bytes less their "
          f"16-byte headers); estimated in-place layout {total / mib:.2f} MiB ({total / marshalled:.2f}x), "
          f"of which fixed parts {fixed / mib:.2f} MiB and contents {(total - fixed) / mib:.2f} MiB "
          f"({(total - fixed) / marshalled:.2f}x the marshalled bytes)")
    print(f"{'kind':36} {'count':>7} {'MiB':>7} {'share':>6} {'avg B':>6} {'fixed MiB':>9}")
    for kind, b in tally.bytes.most_common():
        n = tally.count[kind]
        print(f"{kind:36} {n:7d} {b / mib:7.2f} {100 * b / total:5.1f}% {b / n:6.0f} {tally.fixed[kind] / mib:9.2f}")
    if args.archive:
        st = _cds.Archive(args.archive).stats()
        print(f"archive {args.archive}: {st['modules']} modules, file {st['file_bytes'] / mib:.2f} MiB = objects "
              f"{st['objects_bytes'] / mib:.2f} MiB + metadata {st['metadata_bytes'] / mib:.2f} MiB (index, strings "
              f"table, per-module metadata, pointer bitmaps, compiled regular expressions); "
              f"file / marshalled {st['file_bytes'] / marshalled:.2f}x")


if __name__ == "__main__":
    main()
