"""Benchmark workload: a program that starts up with a broad slice of the standard library.

It imports about ninety standard modules (argparse, json, logging, asyncio, email, http.client,
urllib.request, decimal, typing, dataclasses, subprocess, sqlite3, xml.etree.ElementTree, csv,
unittest, pathlib, tempfile, shutil, concurrent.futures and many more), uses a few of them and
prints one deterministic line. The "bench harness" lines are the same as in app.py.
"""

# --- bench harness: start ---------------------------------------------------------------------
import os
import sys
import time

_t_main = time.monotonic()
# --- bench harness: end -----------------------------------------------------------------------

_t_imp0 = time.monotonic()
import argparse
import ast
import asyncio
import base64
import bisect
import calendar
import collections
import concurrent.futures
import configparser
import contextlib
import copy
import csv
import dataclasses
import datetime
import decimal
import difflib
import email
import email.message
import email.mime.multipart
import email.mime.text
import email.parser
import email.policy
import email.utils
import enum
import fnmatch
import fractions
import functools
import getpass
import glob
import gzip
import hashlib
import heapq
import hmac
import html
import html.parser
import http.client
import http.cookies
import inspect
import io
import ipaddress
import itertools
import json
import locale
import logging
import logging.handlers
import lzma
import mimetypes
import multiprocessing
import numbers
import operator
import optparse
import pathlib
import pickle
import platform
import pprint
import queue
import random
import re
import secrets
import selectors
import shlex
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import string
import struct
import subprocess
import tarfile
import tempfile
import textwrap
import threading
import timeit
import tokenize
import traceback
import typing
import unittest
import unittest.mock
import urllib.parse
import urllib.request
import uuid
import warnings
import weakref
import xml.dom.minidom
import xml.etree.ElementTree
import zipfile
import zlib

_t_imp1 = time.monotonic()

digest = hashlib.sha256()


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    price: decimal.Decimal
    qty: int


parser = argparse.ArgumentParser(prog="stdlib")
parser.add_argument("--scale", type=int, default=3)
args = parser.parse_args(["--scale", "4"])

logger = logging.getLogger("stdlib-workload")
logger.addHandler(logging.NullHandler())
logger.info("starting")

rows = [Row(f"item{i}", decimal.Decimal(i) / 7, i * args.scale) for i in range(1, 6)]
total = sum((r.price * r.qty for r in rows), decimal.Decimal(0)).quantize(decimal.Decimal("0.01"))
digest.update(str(total).encode())

buf = io.StringIO()
writer = csv.writer(buf, lineterminator="\n")
writer.writerows((r.name, str(r.price)[:6], r.qty) for r in rows)
digest.update(buf.getvalue().encode())
digest.update(json.dumps({"rows": [dataclasses.asdict(r) for r in rows]}, default=str,
                         sort_keys=True).encode())

db = sqlite3.connect(":memory:")
db.execute("create table t (name text, qty integer)")
db.executemany("insert into t values (?, ?)", [(r.name, r.qty) for r in rows])
digest.update(repr(db.execute("select count(*), sum(qty) from t").fetchone()).encode())
db.close()

root = xml.etree.ElementTree.fromstring("<root><a x='1'/><b>text</b></root>")
digest.update(xml.etree.ElementTree.tostring(root))

msg = email.message.EmailMessage()
msg["Subject"] = "hello"
msg["From"] = "a@example.org"
msg.set_content("body")
digest.update(msg["Subject"].encode())

digest.update(urllib.parse.urlencode({"q": "cds", "n": 2}).encode())
digest.update(str(ipaddress.ip_network("10.0.0.0/30").num_addresses).encode())
digest.update(str(fractions.Fraction(3, 9) + statistics.median([1, 2, 5])).encode())


async def twice(x):
    await asyncio.sleep(0)
    return 2 * x


digest.update(str(asyncio.run(twice(21))).encode())

with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    digest.update(str(sum(pool.map(abs, [-1, -2, -3]))).encode())

with tempfile.TemporaryDirectory() as tmp:
    p = pathlib.Path(tmp, "f.txt")
    p.write_text("data")
    shutil.copy(p, pathlib.Path(tmp, "g.txt"))
    digest.update(str(len(os.listdir(tmp))).encode())

print(f"stdlib ok {len(sys.modules) > 100} {total} {digest.hexdigest()[:16]}")

# --- bench harness: start ---------------------------------------------------------------------
_t_work1 = time.monotonic()


def _bench_report():
    t_atexit = time.monotonic()
    path = os.environ.get("BENCH_TIMING_FILE")
    if path:
        rec = {"main": _t_main, "imp0": _t_imp0, "imp1": _t_imp1, "work1": _t_work1,
               "atexit": t_atexit}
        # Peak RSS of this process image. (ru_maxrss seen by the parent is no good for small
        # processes: on Linux it also counts the spawning parent's memory, shared until exec.)
        fd = os.open("/proc/self/status", os.O_RDONLY)
        status = os.read(fd, 16384)
        os.close(fd)
        for line in status.split(b"\n"):
            if line.startswith(b"VmHWM:"):
                rec["hwm_kb"] = int(line.split()[1])
        if os.environ.get("BENCH_INFO"):
            cds = sys.modules.get("cds")
            # pycds: the extension records what it served (the `cds` package and its runtime
            # are not imported by serving).
            serve_log = getattr(sys.modules.get("cds._cds"), "serve_log", None)
            if serve_log is not None:  # pycds
                i = serve_log()
                rec["served"] = len(i["served"])
                rec["fallbacks"] = len(i["fallbacks"])
                rec["fallback_reasons"] = dict(list(i["fallbacks"].items())[:20])
                rec["error"] = i["error"]
            finder = getattr(cds, "CDSFinder", None)
            if finder is not None and finder.shared_module is not None:  # the seed
                rec["unserved"] = len(finder.shared_module)
                seed_ext = sys.modules.get("_cds")
                if seed_ext is not None and hasattr(seed_ext, "_get_obj"):
                    rec["archived"] = len(seed_ext._get_obj())
                    rec["served"] = rec["archived"] - rec["unserved"]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, repr(rec).encode())
        os.close(fd)
    path = os.environ.get("BENCH_MODLIST")
    if path:
        lines = []
        for name, mod in list(sys.modules.items()):
            spec = getattr(mod, "__spec__", None)
            loader = getattr(spec, "loader", None)
            if spec is None or type(loader).__name__ != "SourceFileLoader" or not spec.origin:
                continue
            pkg = 1 if spec.submodule_search_locations is not None else 0
            lines.append(f"{name}\t{pkg}\t{spec.origin}\n")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, "".join(lines).encode("utf-8", "surrogateescape"))
        os.close(fd)


if os.environ.get("BENCH_WAIT"):
    # Memory measurement: stay alive, everything imported, until the runner closes stdin.
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    sys.stdin.read()

import atexit

atexit.register(_bench_report)
# --- bench harness: end -----------------------------------------------------------------------
