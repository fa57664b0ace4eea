#!/usr/bin/env python3
"""Generate the values table of charts/tandem/README.md from values.yaml.

Like cert-manager's chart, every value is documented by the comment right above it in
values.yaml; this script turns those comments (their first paragraph), the defaults and
the types from values.schema.json into the README's table, between the
`<!-- values:start -->` and `<!-- values:end -->` markers.

    python3 tests/chart/readme.py           # rewrite the table
    python3 tests/chart/readme.py --check   # exit 1 if the README is out of date

The test suite runs the check (test_docs.py), and uses `documented_keys` to prove that
every key the chart defines has a comment.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "tandem"
START, END = "<!-- values:start -->", "<!-- values:end -->"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/\"']+):(?:\s|$)")
_COMMENT = re.compile(r"^(?P<indent> *)#(?P<text>.*)$")


def documented_keys(text: str) -> dict[tuple[str, ...], list[str]]:
    """Every mapping key of a values.yaml written in block style, in file order, with the
    comment lines directly above it (at the same indentation; [] when there are none)."""
    keys: dict[tuple[str, ...], list[str]] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    pending_indent = -1
    for line in text.splitlines():
        if not line.strip():
            pending, pending_indent = [], -1
            continue
        comment = _COMMENT.match(line)
        if comment:
            indent = len(comment["indent"])
            if pending and indent != pending_indent:
                pending = []
            pending_indent = indent
            pending.append(comment["text"][1:] if comment["text"].startswith(" ") else comment["text"])
            continue
        indent = len(line) - len(line.lstrip(" "))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        pending_here = pending if pending_indent == indent else []
        pending, pending_indent = [], -1
        if line.lstrip().startswith("-"):
            stack.append((indent, None))  # a list item: its keys are data, not values
            continue
        key = _KEY.match(line)
        if not key:
            continue  # a flow or scalar continuation
        stack.append((indent, key["key"].strip("\"'")))
        if None not in (k for _, k in stack):
            keys[tuple(k for _, k in stack)] = pending_here
    return keys


def resolve(schema: dict, node: dict) -> dict:
    """Follow a local `$ref` (#/definitions/NAME)."""
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def schema_node(schema: dict, path: tuple[str, ...]) -> dict | None:
    """The schema of the value at `path`, or None when the schema does not declare it."""
    node = schema
    for key in path:
        node = resolve(schema, node)
        props = node.get("properties", {})
        if key in props:
            node = props[key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    return node


def is_row(schema: dict, path: tuple[str, ...], value: Any) -> bool:
    """A table row (and a key that needs a comment): a key the chart itself defines (one
    of its parent's `properties`), not an entry of a map or a field of a Kubernetes type
    that is passed through as a whole (a `$ref` to a definition)."""
    if len(path) > 1:
        parent = schema_node(schema, path[:-1])
        if parent is None or "$ref" in parent or path[-1] not in resolve(schema, parent).get("properties", {}):
            return False
    return schema_node(schema, path) is not None


def type_of(schema: dict, node: dict) -> str:
    ref = node.get("$ref")
    node = resolve(schema, node)
    if "enum" in node:
        return " | ".join(json.dumps(v) for v in node["enum"])
    if "oneOf" in node:
        return " | ".join(type_of(schema, n) for n in node["oneOf"])
    kind = node.get("type", "object")
    kind = " | ".join(kind) if isinstance(kind, list) else kind
    if kind == "array" and "items" in node:
        return f"array of {type_of(schema, node['items'])}"
    if ref:
        return f"{kind} ({ref.rsplit('/', 1)[-1]})"
    return kind


def lookup(values: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        values = values[key]
    return values


def first_paragraph(lines: list[str]) -> str:
    paragraph: list[str] = []
    for line in lines:
        if not line.strip():
            break
        paragraph.append(line.strip())
    return " ".join(paragraph)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(chart: Path = CHART) -> str:
    text = (chart / "values.yaml").read_text()
    values = yaml.safe_load(text)
    schema = json.loads((chart / "values.schema.json").read_text())
    rows = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for path, comment in documented_keys(text).items():
        value = lookup(values, path)
        if not is_row(schema, path, value):
            continue
        node = schema_node(schema, path) or {}
        default = json.dumps(value, separators=(", ", ": "))
        is_section = isinstance(value, dict) and "$ref" not in node and node.get("properties")
        rows.append(
            "| `{}` | {} | {} | {} |".format(
                ".".join(path),
                "section" if is_section else cell(type_of(schema, node)),
                "" if is_section else f"`{cell(default)}`",
                cell(first_paragraph(comment)),
            )
        )
    return "\n".join(rows)


def render(readme: str, chart: Path = CHART) -> str:
    start, end = readme.index(START) + len(START), readme.index(END)
    return readme[:start] + "\n" + table(chart) + "\n" + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date")
    args = parser.parse_args(argv)
    path = CHART / "README.md"
    current = path.read_text()
    wanted = render(current)
    if args.check:
        if current != wanted:
            print(f"{path} is out of date: run python3 tests/chart/readme.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
