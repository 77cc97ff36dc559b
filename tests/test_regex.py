"""Compiled regular expressions: the tracer records the patterns ``re`` compiles, the dump keeps
their programs, and a process served from the archive builds each pattern from its program.
A pattern built that way must be the pattern a normal run compiles (compared in a separate
process), and a damaged program must be compiled normally, never trusted."""

import json
import struct

from archive_tools import Archive

PROGRAM = r'''
import json, re, sys, warnings
warnings.simplefilter("always")
PATTERNS = [
    (r"(?P<year>\d{4})-(?P<month>\d\d)(?:-(?P<day>\d\d))?", re.I, "on 2024-05-17 at"),
    (rb"(ab+)(c)?\x00[\x80-\xff]+", 0, b"xabbc\x00\x81\xfe"),
    ("[\u00e9-\u00ff]+(?=x)|\U0001f600{2,}", 0, "caf\u00e9x \U0001f600\U0001f600"),
    (r"^\s*(\w+)\s*=\s*(.*?)\s*$", re.M, "a = 1\n bee=two  \n"),
    (r"(?x) ( \d+ ) \s* (?# comment ) (?P<unit> [kmg]b )", 0, "12 kb, 7mb"),
    (r"(?<=foo)bar(?!baz)|(?i:QUUX)", 0, "foobar foobarbaz quux"),
    (r"(a)|b(?(1)c|d)", 0, "bd ac"),
    (r"[^\W\d_]+", re.ASCII, "h\u00e9llo world_42"),
    ("a\u2028b|\x85|\x7f", 0, "a\u2028b \x85\x7f"),  # characters str.splitlines() breaks at
]
out = []
for text, flags, subject in PATTERNS:
    p = re.compile(text, flags)
    out.append([repr(p.pattern), int(p.flags), p.groups, dict(p.groupindex),
                [m.span() for m in p.finditer(subject)], repr(p.findall(subject)),
                repr(p.sub(lambda m: m.group(0)[::-1], subject))])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    re.compile("[[a]")  # "Possible nested set": the dump must not keep this one
    re.compile("(x)|[a&&b]")  # "Possible set intersection", one level deeper
# The warnings name this file and line, as without pycds (its stand-in adds no frame).
out.append([(w.category.__name__, w.filename == __file__, w.lineno) for w in caught])
print(json.dumps(out))
'''


def served_info(project, **extra):
    info, proc = project.info("prog.py", **extra)
    return info, json.loads(proc.stdout)


def test_patterns_from_the_archive_match_a_normal_run(project):
    project.write("prog.py", PROGRAM)
    normal = json.loads(project.plain("prog.py").stdout)
    project.build("prog.py")
    # One record per line for every line splitter, whatever the patterns hold.
    listed = [json.loads(line) for line in project.list.read_text().splitlines()]
    regexes = [r for r in listed if "regex" in r]
    assert any(r["bytes"] for r in regexes) and len(regexes) >= 9
    info, served = served_info(project)
    assert served == normal
    assert "re._compiler" in info["served"]
    # Every pattern of the program but the one that warns came from the archive.
    assert info["regexes"] >= 8
    # The warnings are still given, naming this program's line: those patterns were compiled
    # normally, through a stand-in that adds no frame. The same holds while tracing.
    assert served[-1][0][:2] == ["FutureWarning", True]
    assert all(named_here for _, named_here, _ in served[-1])
    assert json.loads(project.trace("prog.py").stdout) == normal


def test_regex_cache_can_be_turned_off(project):
    project.write("prog.py", PROGRAM)
    normal = json.loads(project.plain("prog.py").stdout)
    project.build("prog.py", PYCDSREGEX="0")
    assert not [line for line in project.list.read_text().splitlines() if '"regex"' in line]
    project.build("prog.py")
    info, served = served_info(project, PYCDSREGEX="0")
    assert served == normal and info["regexes"] == 0
    assert "re._compiler" in info["served"]


def damage_programs(project, mutate):
    """Applies ``mutate(archive, value_offset, value_len)`` to every keyed record's value."""
    a = Archive(bytearray(project.archive.read_bytes()))
    count = a.h("keyed_count")
    assert count >= 8
    for i in range(count):
        _, (_, _, v_off, v_len) = a.keyed_record(i)
        mutate(a, a.h("keyed_off") + v_off, v_len, i)
    project.archive.write_bytes(bytes(a.b))


def test_damaged_programs_are_compiled_normally(project):
    project.write("prog.py", PROGRAM)
    normal = json.loads(project.plain("prog.py").stdout)
    project.build("prog.py")

    # Checksums intact, programs wrong: every code word after the header of the value made
    # into an opcode _sre does not know. _sre.compile refuses each one; nothing runs it.
    def poison(a, at, length, i):
        code_len = struct.unpack_from("<I", a.b, at + 16)[0]
        for k in range(code_len):
            struct.pack_into("<I", a.b, at + 24 + 4 * k, 0xFFFF)
        a.fix_keyed_crc(i)

    damage_programs(project, poison)
    info, served = served_info(project, PYCDSVERBOSE="1")
    assert served == normal
    assert info["regexes"] == 0 and "re._compiler" in info["served"]

    # A flipped byte the checksum catches: the record is refused, the pattern compiled.
    project.build("prog.py")

    def flip(a, at, length, i):
        a.b[at + length - 1] ^= 0x5A

    damage_programs(project, flip)
    info, proc = project.info("prog.py", PYCDSVERBOSE="1")
    assert json.loads(proc.stdout) == normal
    assert info["regexes"] == 0
    assert "keyed record" in proc.stderr and "not used" in proc.stderr


def test_malformed_program_lengths_are_refused(project):
    """A value whose lengths do not add up (checksum recomputed) never reaches _sre."""
    project.write("prog.py", PROGRAM)
    normal = json.loads(project.plain("prog.py").stdout)
    project.build("prog.py")

    def lengths(a, at, length, i):
        struct.pack_into("<I", a.b, at + 16, 0x7FFFFFFF)  # code_len past the value's end
        a.fix_keyed_crc(i)

    damage_programs(project, lengths)
    info, proc = project.info("prog.py", PYCDSVERBOSE="1")
    assert json.loads(proc.stdout) == normal
    assert info["regexes"] == 0
    assert "malformed" in proc.stderr


def test_a_list_traced_twice_holds_each_pattern_once_for_the_dump(project):
    project.write("prog.py", PROGRAM)
    project.trace("prog.py")
    project.trace("prog.py")
    lines = [json.loads(line) for line in project.list.read_text().splitlines()]
    traced = [r for r in lines if "regex" in r]
    distinct = {(r["regex"], r["bytes"], r["flags"]) for r in traced}
    assert len(traced) == 2 * len(distinct)  # each traced run appends its own records
    code = f"import json; from cds.dump import read_list; print(json.dumps(read_list({str(project.list)!r})))"
    records, errors = json.loads(project.plain("-c", code).stdout)
    assert not errors
    assert len([r for r in records if "regex" in r]) == len(distinct)


def test_the_dump_keeps_no_program_it_cannot_vouch_for(project):
    """A hand-written list: each regular-expression record the dump must not keep is skipped
    with its reason (and a malformed one is a list error); the good one is kept."""
    import re

    records = [
        {"regex": "a+b", "bytes": False, "flags": 0},                # kept
        {"regex": "a+b", "bytes": False, "flags": 0},                # listed twice: kept once
        {"regex": "x[y", "bytes": False, "flags": 0},                # does not compile
        {"regex": "[[z]", "bytes": False, "flags": 0},               # warns (FutureWarning)
        {"regex": "dbg", "bytes": False, "flags": int(re.DEBUG)},    # DEBUG prints
        {"regex": "loc", "bytes": True, "flags": int(re.LOCALE)},    # LOCALE: per-locale program
        {"regex": "\u20ac", "bytes": True, "flags": 0},              # not latin-1: no bytes pattern
        {"regex": 5, "bytes": False, "flags": 0},                    # malformed record
    ]
    project.list.write_text("".join(json.dumps(r) + "\n" for r in records))
    code = (
        "import json; from cds.dump import run_dump; "
        f"r = run_dump({str(project.list)!r}, {str(project.archive)!r}); "
        "print(json.dumps([r.regexes, r.regexes_skipped, r.list_errors]))"
    )
    kept, skipped, errors = json.loads(project.plain("-c", code).stdout)
    assert kept == 1
    assert set(skipped) == {"x[y", "[[z]", "dbg", "loc", "\u20ac"}
    assert skipped["x[y"].startswith("does not compile")
    assert skipped["[[z]"].startswith("compiling it warns")
    assert skipped["dbg"] == "DEBUG flag" and skipped["loc"].startswith("LOCALE flag")
    assert skipped["\u20ac"] == "not a bytes pattern"
    assert len(errors) == 1 and "malformed regular expression record" in errors[0]
