"""A small command-line app used by the README's demo: it imports a broad slice of the
standard library and a local package, then does a little work."""

import argparse
import asyncio
import csv
import dataclasses
import decimal
import email.message
import http.client
import io
import json
import logging
import pathlib
import sqlite3
import tempfile
import typing
import unittest
import urllib.request
import xml.etree.ElementTree as ET
import concurrent.futures

from shop import catalog, pricing


def main(argv=None):
    parser = argparse.ArgumentParser(description="demo shop report")
    parser.add_argument("--currency", default="EUR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    items = catalog.load()
    total = pricing.total(items)
    out = io.StringIO()
    csv.writer(out).writerows((i.name, i.price) for i in items)
    msg = email.message.EmailMessage()
    msg["Subject"] = f"{len(items)} items"
    db = sqlite3.connect(":memory:")
    db.execute("create table t (name text, price text)")
    db.executemany("insert into t values (?, ?)", ((i.name, str(i.price)) for i in items))
    count = db.execute("select count(*) from t").fetchone()[0]
    root = ET.fromstring("<r><i/><i/></r>")
    print(json.dumps({"items": count, "total": f"{total} {args.currency}", "subject": msg["Subject"],
                      "xml": len(root), "csv_lines": out.getvalue().count("\n")}))


if __name__ == "__main__":
    main()
