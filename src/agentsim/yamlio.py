"""YAML read strictly, from text files read strictly: one reader for every YAML agentsim takes in.

Scenarios, ``--set`` and ``--param`` values, catalog files, perf YAML from ``agentsim calibrate`` and profile
files from ``agentsim trace fit`` are all read here, so they follow one rule:

* **A repeated key is an error** (PyYAML keeps the last value silently): :class:`StrictLoader`, a
  ``SafeLoader`` whose mappings refuse a key they already hold, naming both lines.
* **A file is UTF-8 text** (:func:`read_text`): a binary file (a NUL byte) or bytes that are not UTF-8 are
  refused with the line where they start, instead of a decoder traceback.
* **Where a value sits** (:func:`line_of`): the line of the key at a dotted path, so an error about a field
  can name the line of the file that set it.

Only safe tags are constructed (no Python objects), as with ``yaml.safe_load``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["StrictLoader", "TextFileError", "line_of", "loads", "read_text"]


class TextFileError(ValueError):
    """A file that cannot be read as UTF-8 text; the message names the file (and the line)."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with a repeated key."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are not repeated keys
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if first is not None:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found the key {key!r} again (first on line {first}); a key may appear once per mapping",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def loads(text: str, name: str | None = None) -> Any:
    """The data of a YAML document, read with :class:`StrictLoader`; ``yaml.YAMLError`` if it is not valid,
    its message naming the document ``name`` (a file) where one is given."""
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.MarkedYAMLError as e:
        for mark in (e.context_mark, e.problem_mark):
            if mark is not None and name is not None:
                mark.name = name
        raise


def read_text(path: str | os.PathLike[str]) -> str:
    """The UTF-8 text of the file ``path``. :class:`TextFileError` naming the file when it cannot be read, is a
    directory, holds binary data or is not UTF-8 (with the line of the first bad byte)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise TextFileError(f"{name}: is a directory, not a file") from None
    except OSError as e:
        raise TextFileError(f"{name}: cannot read: {e.strerror or e}") from None
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise TextFileError(f"{name}:{line}: a binary file (NUL byte), not text") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise TextFileError(f"{name}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); save it as UTF-8") from None


def _child(node: Node, part: str | int) -> tuple[Node, int] | None:
    if isinstance(node, MappingNode) and isinstance(part, str):
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == part:
                return v, k.start_mark.line + 1
    if isinstance(node, SequenceNode) and isinstance(part, int) and -len(node.value) <= part < len(node.value):
        v = node.value[part]
        return v, v.start_mark.line + 1
    return None


def line_of(text: str, path: Sequence[str | int]) -> int | None:
    """The 1-based line of the deepest key or item of ``path`` (``["cluster", "pools", 0, "replicas"]``) that the
    YAML ``text`` holds; None when the text is not valid YAML or holds none of it."""
    try:
        node = yaml.compose(text, Loader=StrictLoader)
    except yaml.YAMLError:
        return None
    line: int | None = None
    for part in path:
        if node is None:
            break
        found = _child(node, part)
        if found is None:
            break
        node, line = found
    return line
