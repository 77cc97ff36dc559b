"""An application importing popular PyPI packages and a slice of the standard library, then doing
a little deterministic work with each. Used by the end-to-end test."""

import argparse, asyncio, csv, dataclasses, decimal, email.message, http.client, json, logging
import pathlib, shutil, sqlite3, subprocess, tempfile, typing, unittest, urllib.request
import xml.etree.ElementTree as ET
import concurrent.futures

import attr
import click
import jinja2
import packaging.specifiers
import packaging.version
import pygments
import pygments.formatters
import pygments.lexers
import requests
import rich.console
import rich.markdown
import rich.progress
import rich.syntax
import rich.table
import yaml


@attr.s(auto_attribs=True)
class Point:
    x: int
    y: int


@click.command()
@click.option("--n", default=3)
def cli(n):
    click.echo(f"click n={n}")


def main():
    print(jinja2.Template("{{ a }}-{{ b|upper }}").render(a=1, b="x"))
    print(pygments.highlight("x = 1", pygments.lexers.PythonLexer(), pygments.formatters.NullFormatter()).strip())
    print(yaml.safe_dump({"k": [1, 2]}).strip())
    print(Point(1, 2), packaging.version.Version("1.2.3") in packaging.specifiers.SpecifierSet(">=1.0"))
    print(requests.Request("GET", "http://example.invalid/", params={"q": 1}).prepare().url)
    console = rich.console.Console(width=40, color_system=None, force_terminal=False)
    table = rich.table.Table("a", "b")
    table.add_row("1", "2")
    console.print(table)
    console.print(rich.markdown.Markdown("# Title\n\n*text*"))
    print(json.dumps({"d": str(decimal.Decimal("1.10") * 3)}), ET.fromstring("<a><b/></a>")[0].tag)
    print(asyncio.run(asyncio.sleep(0, result="async ok")))
    cli.main(["--n", "5"], standalone_mode=False)
    print(len(sys.modules) > 300)


import sys

if __name__ == "__main__":
    main()
