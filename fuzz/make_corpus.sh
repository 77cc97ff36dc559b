#!/usr/bin/env bash
# Builds the seed corpus of the `archive` fuzz target: real archives written by pycds (traced and
# dumped with the pycds installed in .venv), plus a few damaged copies of them.
#
#   bash fuzz/make_corpus.sh            # writes fuzz/corpus/archive/ (git-ignored)
#   PYCDS_VENV=/path/to/venv bash fuzz/make_corpus.sh
#
# The archives are kept small (one to a handful of tiny modules each, and one with `json`), so
# that the fuzzer's mutations land on headers, index entries, metadata, bitmaps and fix-ups rather
# than being spread over megabytes of object bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${PYCDS_VENV:-$ROOT/.venv}
PY=$VENV/bin/python
OUT=$ROOT/fuzz/corpus/archive

if [ ! -x "$PY" ] || ! "$PY" -c 'import cds._cds' 2>/dev/null; then
    echo "make_corpus.sh: no pycds in $VENV." >&2
    echo "  Run \`bash tests/run.sh\` (it creates .venv and installs pycds), or:" >&2
    echo "  python3.11 -m venv .venv && .venv/bin/pip install ." >&2
    exit 1
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

# Tiny modules covering what the dumper stores differently: constants of every archived type,
# interned and non-interned strings, a frozenset (a fix-up), nested code objects, a package.
mkdir -p "$WORK/src/pkg"
cat > "$WORK/src/m_empty.py" <<'EOF'
EOF
cat > "$WORK/src/m_consts.py" <<'EOF'
A = 1
B = -5
C = 2 ** 70
D = 1.5
E = 2 + 3j
F = b"bytes\x00\xff"
G = "a string with spaces, not interned"
H = ("tuple", 1, None, True, False, ...)
I = ()
J = ""
K = b""
L = "\xe9t\xe9 \u20ac \U0001f600"
EOF
cat > "$WORK/src/m_code.py" <<'EOF'
def f(x, *args, y=3, **kw):
    if x in {1, 2, 3, "four"}:
        return [a for a in args if a not in frozenset({b"x", b"y"})]
    return lambda z: x + y + z


class K:
    attr = "name_like_identifier"

    def method(self):
        try:
            return self.attr
        finally:
            pass
EOF
cat > "$WORK/src/pkg/__init__.py" <<'EOF'
from . import sub
EOF
cat > "$WORK/src/pkg/sub.py" <<'EOF'
VALUE = ("sub", 42)
EOF

# archive NAME MODULE...: traces a script importing the modules and dumps only those modules and
# their submodules (not what the interpreter's startup or the modules themselves import from
# elsewhere: `json` alone pulls in `re`, `enum` and `collections`, close to a megabyte).
archive() {
    local name=$1
    shift
    local script=$WORK/src/run_$name.py lst=$WORK/$name.lst
    : > "$script"
    for m in "$@"; do echo "import $m" >> "$script"; done
    PYTHONDONTWRITEBYTECODE=1 "$PY" -m cds trace -o "$lst.all" -- "$script"
    "$PY" - "$lst.all" "$lst" "$@" <<'EOF'
import json, sys
src, dst, *keep = sys.argv[1:]
with open(src) as f, open(dst, "w") as out:
    for line in f:
        # Module records of the kept modules only (a list also records compiled regular
        # expressions, which have no name).
        rec = json.loads(line) if line.strip() else {}
        if rec.get("name", "").split(".")[0] in keep:
            out.write(line)
EOF
    "$PY" -m cds dump "$lst" "$OUT/$name.img" > /dev/null
}

archive consts m_consts
archive code m_code
archive empty_module m_empty
archive pkg pkg
archive several m_empty m_consts m_code pkg
archive json json

# Damaged copies: truncated (refused by the file-size check), and one byte flipped in the header
# (header checksum), in the first index entry's name offset (bounds check), in the last module's
# data in the blob and in the objects (data checksum, checked when the module is loaded).
"$PY" - "$OUT" <<'EOF'
import os, struct, sys
out = sys.argv[1]
for base in ("consts", "several"):
    data = open(os.path.join(out, base + ".img"), "rb").read()
    index_off, = struct.unpack_from("<Q", data, 64)
    blob_off, blob_len = struct.unpack_from("<QQ", data, 88)
    objects_off, = struct.unpack_from("<Q", data, 104)
    variants = {
        "trunc_header": data[:100],
        "trunc_half": data[: len(data) // 2],
        "trunc_last": data[:-1],
    }
    for where, at in (("header", 50), ("index", index_off + 3), ("blob", blob_off + blob_len - 8),
                      ("objects", objects_off + 24)):
        b = bytearray(data)
        b[at] ^= 0x41
        variants["flip_" + where] = bytes(b)
    for suffix, blob in variants.items():
        with open(os.path.join(out, f"{base}_{suffix}.img"), "wb") as f:
            f.write(blob)
EOF

echo "fuzz corpus in ${OUT#$ROOT/}:"
for f in "$OUT"/*.img; do printf "  %8d  %s\n" "$(stat -c %s "$f")" "${f##*/}"; done
