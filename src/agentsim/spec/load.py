"""Loading a scenario: YAML files, mappings and ``path=value`` overrides turned into a validated Scenario.

A scenario file is read as strict YAML (:mod:`agentsim.yamlio`: UTF-8 text, no repeated key) into plain data,
its relative file paths (trace workloads, catalog files) taken from the scenario file's directory; each ``--set
dotted.path[i]=value`` override edits that data (the value read as YAML) before validation, so overrides are
validated exactly like the file. An override that reaches into a part the file left to its defaults is applied
to the fully resolved scenario instead. Pydantic's error locations are rewritten into the dotted paths a user
writes, with the union-tag segments pydantic inserts dropped (``cluster.pools[0].perf.mfu``, not
``...perf.roofline.mfu``), an unknown key, kind or choice gets a did-you-mean, and every problem is gathered
into one :class:`~agentsim.errors.ScenarioError`, with the line of the file that set each bad field.
The built-in, commented example scenarios
(``agentsim example``) are package data read from here too.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from agentsim.errors import ScenarioError, did_you_mean
from agentsim.spec.base import error_loc, known_fields
from agentsim.spec.scenario import Scenario
from agentsim.yamlio import TextFileError, line_of, loads, read_text

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_path(path: str) -> list[str | int]:
    """``"cluster.pools[0].replicas"`` -> ``["cluster", "pools", 0, "replicas"]``."""
    parts: list[str | int] = []
    pos = 0
    for m in _TOKEN.finditer(path):
        gap = path[pos : m.start()]
        if gap not in ("", "."):
            raise ValueError(f"cannot parse path {path!r}")
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not parts or path[pos:] not in ("",):
        raise ValueError(f"cannot parse path {path!r}")
    return parts


def format_path(loc: Iterable[str | int]) -> str:
    """``["cluster", "pools", 0, "replicas"]`` -> ``"cluster.pools[0].replicas"``."""
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def set_path(data: dict[str, Any], path: str, value: Any, source: str = "--set") -> None:
    """Set ``dotted.path[i]`` in raw scenario data to ``value``; missing mappings along the path are created.

    Setting a ``kind`` to another variant clears that object first, so the new variant starts from its own
    defaults instead of failing on the old variant's fields (``cluster.router.kind=round-robin`` on a
    prefix-aware router with a ``balance_tokens``).
    """
    try:
        keys = parse_path(path.strip())
    except ValueError as e:
        raise ScenarioError([(path, str(e))], source) from None
    node: Any = data
    for i, k in enumerate(keys[:-1]):
        here = format_path(keys[: i + 1])
        if isinstance(k, int):
            if not isinstance(node, list) or not -len(node) <= k < len(node):
                raise ScenarioError([(here, "no such list element")], source)
            node = node[k]
        else:
            if not isinstance(node, dict):
                raise ScenarioError([(here, "not a mapping")], source)
            node = node.setdefault(k, {})
    last = keys[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not -len(node) <= last < len(node):
            raise ScenarioError([(path, "no such list element")], source)
        node[last] = value
        return
    if not isinstance(node, dict):
        raise ScenarioError([(path, "not a mapping")], source)
    if last == "kind" and "kind" in node and node["kind"] != value:
        node.clear()
    node[last] = value


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``dotted.path[i]=value`` to raw scenario data; the value is read as YAML (``16``, ``true``,
    ``{kind: poisson, rate_per_s: 2}``). See :func:`set_path`."""
    if "=" not in assignment:
        raise ScenarioError([(assignment, "an override must look like path.to.field=value")], "--set")
    path, _, raw = assignment.partition("=")
    try:
        value = loads(raw) if raw.strip() else raw
    except yaml.YAMLError as e:
        raise ScenarioError([(path, str(e))], "--set") from None
    set_path(data, path, value)


def _clean_loc(loc: tuple[str | int, ...], data: Any) -> list[str | int] | None:
    """Drop the union-tag segments pydantic inserts (``perf.roofline.mfu`` -> ``perf.mfu``). ``None`` for an
    error about a union branch that does not apply (the ``str`` branch of ``profile`` when a mapping was
    given): reporting it would only mislead."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part == "str" and "str" not in node:
            return None
        if isinstance(node, dict) and part == "synthetic" and "synthetic" not in node:
            continue  # the tag of a synthetic workload, which files need not write
        if isinstance(node, dict) and isinstance(part, str) and part not in node and node.get("kind") == part:
            continue
        if isinstance(node, dict) and isinstance(part, str) and part not in node and "[" in part:
            continue  # pydantic's 'function-after[...]' style segments
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part) if isinstance(part, str) else None
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return out


def validate_data(data: Any, source: str = "scenario") -> Scenario:
    """Validate raw data as a :class:`~agentsim.spec.Scenario`, raising :class:`ScenarioError` with paths."""
    if not isinstance(data, Mapping):
        raise ScenarioError([("", f"expected a mapping at the top level, got {type(data).__name__}")], source)
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        raise ScenarioError(field_errors(e, Scenario, data), source) from None


def field_errors(e: ValidationError, model: type[BaseModel], data: Any) -> list[tuple[str, str]]:
    """Pydantic's errors for ``data`` validated as ``model`` as ``(dotted path, reason)`` pairs: the union tags
    left out of the paths, and a did-you-mean for an unknown key, kind or choice."""
    errors: list[tuple[str, str]] = []
    for err in e.errors():
        loc = _clean_loc(error_loc(err), data)
        if loc is None:
            continue
        msg = str(err["msg"]).removeprefix("Value error, ")
        ctx = err.get("ctx") or {}
        if err["type"] == "extra_forbidden" and loc:
            known = known_fields(model, loc[:-1], data)
            msg = f"unknown field{did_you_mean(str(loc[-1]), known)}"
            if known and " (did you mean" not in msg:
                msg += f"; fields here: {', '.join(known)}"
        elif err["type"] == "union_tag_invalid":
            msg += did_you_mean(str(ctx.get("tag", "")), re.findall(r"'([^']*)'", str(ctx.get("expected_tags", ""))))
        elif err["type"] == "literal_error" and isinstance(err.get("input"), str):
            msg += did_you_mean(err["input"], re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        errors.append((format_path(loc), msg))
    return errors


def read_data(source: str | Path | Mapping[str, Any] | Scenario, *, name: str | None = None) -> Any:
    """The raw data of a scenario (a YAML file, a mapping or a Scenario), not validated: what overrides and
    plan candidates are applied to before validation. :class:`ScenarioError` if the file cannot be read."""
    if isinstance(source, Scenario):
        return source.model_dump(mode="json")
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    label = name or str(path)
    try:
        text = read_text(path)
    except TextFileError as e:
        raise ScenarioError([("", str(e).removeprefix(f"{path}: "))], label) from None
    try:
        data = loads(text, str(path))
    except yaml.YAMLError as e:
        raise ScenarioError([("", f"not valid YAML: {e}")], label) from None
    return rebase_paths(data, path.parent)


def rebase_paths(data: Any, directory: Path) -> Any:
    """``data`` with the relative file paths a scenario file names (``workload[i].path`` of a trace workload,
    ``catalog[i]``) made relative to ``directory``, the scenario file's own, instead of the working directory:
    a scenario and the files beside it move together."""
    if not isinstance(data, dict) or directory in (Path(""), Path(".")):
        return data

    def rebase(p: Any) -> Any:
        return os.path.normpath(directory / p) if isinstance(p, str) and p and not os.path.isabs(p) else p

    for w in data.get("workload") or []:
        if isinstance(w, dict) and w.get("kind") == "trace" and "path" in w:
            w["path"] = rebase(w["path"])
    if isinstance(data.get("catalog"), list):
        data["catalog"] = [rebase(p) for p in data["catalog"]]
    return data


def load_scenario(
    source: str | Path | Mapping[str, Any] | Scenario,
    overrides: Iterable[str] = (),
    *,
    name: str | None = None,
) -> Scenario:
    """A validated scenario from a YAML file, a mapping or a Scenario, with ``path=value`` overrides applied
    and validated like the file. Raises :class:`ScenarioError` naming each bad field; ``name`` labels the
    source in messages."""
    data = read_data(source, name=name)
    label = name or (str(source) if isinstance(source, str | Path) else "scenario")
    overrides = list(overrides)
    try:
        return _load(data, overrides, label)
    except ScenarioError as e:
        if not isinstance(source, str | Path):
            raise
        raise with_file_lines(e, source, overrides) from None


def with_file_lines(error: ScenarioError, path: str | Path, overrides: Iterable[str] = ()) -> ScenarioError:
    """``error`` with the line of the scenario file ``path`` that set each bad field (none for a field an
    override set, or one the file does not write)."""
    try:
        text = read_text(path)
    except TextFileError:
        return error
    set_by_override = []
    for o in overrides:
        with contextlib.suppress(ValueError):
            set_by_override.append(parse_path(o.partition("=")[0].strip()))
    lines = {}
    for p, _ in error.errors:
        try:
            loc = parse_path(p) if p else []
        except ValueError:
            continue
        if not loc or any(loc[: len(o)] == o for o in set_by_override):
            continue
        line = line_of(text, loc)
        if line is not None:
            lines[p] = line
    return error.with_lines(lines) if lines else error


def _load(data: Any, overrides: list[str], label: str) -> Scenario:
    raw = copy.deepcopy(data)
    for o in overrides:
        apply_override(raw, o)
    try:
        return validate_data(raw, label)
    except ScenarioError as first:
        if not overrides:
            raise
        # An override may reach into a part the file left to its defaults (``cluster.pools[0].perf.mfu`` with
        # no ``perf`` written): apply it to the fully resolved scenario instead, when the file alone is valid.
        try:
            full = validate_data(copy.deepcopy(data), label).model_dump(mode="json")
            for o in overrides:
                apply_override(full, o)
            return validate_data(full, label)
        except ScenarioError:
            raise first from None


def example_text(name: str = "default") -> str:
    """The text of a built-in, commented example scenario."""
    f = resources.files("agentsim") / "examples" / f"{name}.yaml"
    if not f.is_file():
        known = ", ".join(example_names())
        raise ScenarioError([("", f"no built-in example {name!r}; known: {known}")], "example")
    return f.read_text()


def example_names() -> list[str]:
    """Names of the built-in example scenarios."""
    d = resources.files("agentsim") / "examples"
    return sorted(p.name.removesuffix(".yaml") for p in d.iterdir() if p.name.endswith(".yaml"))


def default_scenario() -> Scenario:
    """The built-in default scenario (``agentsim example``): what ``agentsim run`` runs with no file."""
    return validate_data(loads(example_text("default")), "built-in default scenario")
