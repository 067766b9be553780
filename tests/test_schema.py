"""The scenario file's JSON Schema (``agentsim schema``, editors' completion and hover help): every field of every
spec model is described (issue 18). Attribute docstrings become descriptions (spec/base.py), so a field without
one is a field a user meets with no explanation."""

from __future__ import annotations

from typing import Any

from agentsim.spec import Scenario


def undescribed(schema: dict[str, Any]) -> list[str]:
    """``Model.field`` for every property of the schema and of its ``$defs`` without a non-empty description."""
    models = {"Scenario": schema, **schema.get("$defs", {})}
    return [
        f"{name}.{field}"
        for name, model in models.items()
        for field, prop in (model.get("properties") or {}).items()
        if not str(prop.get("description") or "").strip()
    ]


def test_every_scenario_field_has_a_description() -> None:
    schema = Scenario.model_json_schema()
    assert len(schema.get("$defs", {})) > 30  # the walk reaches the nested models
    assert undescribed(schema) == []


def test_the_walk_finds_a_field_without_one() -> None:
    schema = {"properties": {"a": {"description": "x"}},
              "$defs": {"M": {"properties": {"b": {"type": "int"}, "c": {"description": " "}}}}}
    assert undescribed(schema) == ["M.b", "M.c"]
