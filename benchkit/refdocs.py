"""Reference pages generated from the models that validate specs and records, so the two cannot disagree.

``benchkit schema spec --markdown`` and ``benchkit schema result --markdown``
print them; ``docs/reference/spec.md`` and ``docs/reference/result.md`` are
their checked-in output, and a test fails when either is out of date.

Every model reachable from the root is one section, in the order it is first
reached; every field is one row: name, type (with its constraints), unit,
default and description. Types, constraints and descriptions come from the
model's JSON Schema (what ``benchkit schema`` prints); defaults come from the
pydantic fields themselves, so a ``default_factory`` shows its value too.
Units are read from the field name's suffix, the project's naming rule
(``min_duration_ms``, ``memory_bytes``, ``throughput_per_s``).
"""

from __future__ import annotations

import json
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

# Longest suffix first: `_bytes_per_s` before `_per_s` and `_s`.
UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_flops_per_s", "FLOP/s"),
    ("_bytes_per_s", "bytes/s"),
    ("_per_s", "1/s"),
    ("_qps", "queries/s"),
    ("_bytes", "bytes"),
    ("_ns", "ns"),
    ("_ms", "ms"),
    ("_s", "s"),
)


def unit_of(field_name: str) -> str:
    """The unit a field's name declares by its suffix ('' when it declares none)."""
    for suffix, unit in UNIT_SUFFIXES:
        if field_name.endswith(suffix) and field_name != suffix.lstrip("_"):
            return unit
    return ""


def markdown(which: str) -> str:
    """The reference page for ``which`` ("spec" or "result") as Markdown."""
    if which == "spec":
        from benchkit.spec import Spec, spec_json_schema

        return _page(
            Spec,
            spec_json_schema(),
            "Spec reference",
            "Every field of an evaluation spec (YAML or JSON), as `benchkit validate` checks it. Every model "
            "rejects unknown keys, and a key given twice in one mapping is refused. Scenario fields whose default "
            "is `null` take the run profile's value ([rules](../rules.md#run-profiles)).\n\n"
            "Numbers are strict: an integer field takes an integer only (not `true`, `5.0` or `'5'`), no number "
            "may be NaN or infinite, and every duration, count and rate has the upper bound shown in its row "
            "(durations 7 days, query counts 10^9, batch sizes 2^20, rates 10^9/s, latency bounds one hour, "
            "`cell_timeout_s` 7 days, dimensions and catalog `params` 2^31 - 1): a value past one is a typo, never a setting. A name "
            "written as an unquoted `null` is YAML's null, not the text: quote it (`name: \"null\"`). A spec "
            "argument that does not exist is an error, unless it is a bare name (`ci-smoke`: no folder, no "
            "suffix), which names a standard spec shipped with benchkit.",
            "benchkit schema spec --markdown",
        )
    if which == "result":
        from benchkit.checks.divisions import RULES_VERSION
        from benchkit.results.records import (
            SCHEMA_HISTORY, SCHEMA_MINOR, SCHEMA_VERSION, ResultRecord, record_json_schema,
        )

        history = ["| schema | change |", "|---|---|"]
        history += [f"| {version} | {_cell(change)} |" for version, change in SCHEMA_HISTORY.items()]
        return _page(
            ResultRecord,
            record_json_schema(),
            "Result record reference",
            f"Every field of a result record, schema {SCHEMA_VERSION}.{SCHEMA_MINOR} (`schema_version` "
            f"{SCHEMA_VERSION}, `schema_minor` {SCHEMA_MINOR}; rules version {RULES_VERSION}). Clients may rely on "
            "these paths: fields are added, never renamed. A field whose default is shown may be absent from "
            "records written by an older benchkit of the same schema version.\n\n"
            "A minor step only adds optional fields. A reader accepts a record of its major and a newer minor, "
            "ignoring the fields it does not know with a warning that names them; it refuses an unknown field "
            "in a record of its own or an older minor (a typo or an edit), and a record of a newer major "
            "(\"written by a newer benchkit (schema N); upgrade benchkit\"). Records written before 1.8 carry no "
            "`schema_minor` and read as 1.0, whichever of the later blocks they hold.\n\n" + "\n".join(history),
            "benchkit schema result --markdown",
        )
    raise ValueError(f"no reference page for {which!r}; expected spec or result")


# --------------------------------------------------------------------------- rendering


def _page(root: type[BaseModel], schema: dict[str, Any], title: str, intro: str, command: str) -> str:
    defs: dict[str, Any] = schema.get("$defs", {})
    classes = _model_classes(root)
    order = _reach_order(schema, defs)
    lines = [
        f"# {title}",
        "",
        f"<!-- Generated by `{command}`; do not edit by hand. -->",
        "",
        intro,
        "",
        f"Regenerate with `{command} > docs/reference/{'spec' if 'spec' in command else 'result'}.md`.",
        "",
    ]
    for name in order:
        node = schema if name == schema.get("title") else defs[name]
        lines += _section(name, node, classes.get(name))
    return "\n".join(lines).rstrip() + "\n"


def _reach_order(schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    """Root, then every referenced definition breadth first, in property order."""
    order = [schema.get("title", "root")]
    queue = [schema]
    seen = set(order)
    while queue:
        node = queue.pop(0)
        for prop in node.get("properties", {}).values():
            for ref in _refs(prop):
                if ref not in seen:
                    seen.add(ref)
                    order.append(ref)
                    queue.append(defs[ref])
    return order


def _refs(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            out.append(ref.rsplit("/", 1)[-1])
        for key, value in node.items():
            if key not in ("$ref", "discriminator"):
                out += _refs(value)
    elif isinstance(node, list):
        for item in node:
            out += _refs(item)
    return out


def _model_classes(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every pydantic model reachable from ``root`` through field annotations, by class name."""
    found: dict[str, type[BaseModel]] = {}

    def visit(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp.__name__ in found:
                return
            found[tp.__name__] = tp
            for f in tp.model_fields.values():
                visit(f.annotation)
            return
        for arg in typing.get_args(tp):
            visit(arg)

    visit(root)
    return found


def _section(name: str, node: dict[str, Any], cls: type[BaseModel] | None) -> list[str]:
    lines = [f"## {name}", ""]
    desc = _doc(node.get("description", ""))
    if desc:
        lines += [desc, ""]
    props: dict[str, Any] = node.get("properties", {})
    required = set(node.get("required", ()))
    if not props:
        return lines + ["(no fields)", ""]
    lines += ["| field | type | unit | default | description |", "|---|---|---|---|---|"]
    for field, prop in props.items():
        default = _default(field, prop, required, cls)
        lines.append(
            f"| `{field}` | {_cell(_type(prop))} | {unit_of(field)} | {_cell(default)} | "
            f"{_cell(prop.get('description', ''))} |"
        )
    return lines + [""]


def _doc(text: str) -> str:
    """A model docstring (reStructuredText, as Python docstrings are) as Markdown paragraphs."""
    import inspect
    import re

    text = inspect.cleandoc(text)
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)  # :func:`percentile_ns` -> `percentile_ns`
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(field: str, prop: dict[str, Any], required: set[str], cls: type[BaseModel] | None) -> str:
    if field in required:
        return "required"
    if cls is not None and field in cls.model_fields:
        info = cls.model_fields[field]
        if info.default_factory is not None:
            value = info.default_factory()
            if isinstance(value, BaseModel):
                return "(defaults of each field)"
            return f"`{json.dumps(value)}`"
        if info.default is not PydanticUndefined:
            return f"`{json.dumps(info.default, default=str)}`"
    if "default" in prop:
        return f"`{json.dumps(prop['default'])}`"
    return ""


def _anchor(name: str) -> str:
    # MkDocs' toc slug of a one-word heading: lower case.
    return f"[{name}](#{name.lower()})"


def _type(s: dict[str, Any]) -> str:
    if "$ref" in s:
        return _anchor(s["$ref"].rsplit("/", 1)[-1])
    if "const" in s:
        return f"`{json.dumps(s['const'])}`"
    if "enum" in s:
        return "one of " + ", ".join(f"`{v}`" for v in s["enum"])
    for key in ("anyOf", "oneOf"):
        if key in s:
            parts = [_type(x) for x in s[key]]
            nullable = "null" in parts
            parts = [p for p in parts if p != "null"]
            text = " or ".join(parts)
            disc = s.get("discriminator", {}).get("propertyName")
            if disc:
                text += f" (by `{disc}`)"
            return text + (" or null" if nullable else "")
    t = s.get("type")
    if t == "array":
        if "prefixItems" in s:
            return "[" + ", ".join(_type(x) for x in s["prefixItems"]) + "]"
        items = s.get("items")
        inner = _type(items) if items else ""
        # Parenthesised when the item type has constraints, so "list of (integer, > 0)" reads unambiguously.
        base = (f"list of ({inner})" if ", " in inner or " or " in inner else f"list of {inner}") if items else "list"
    elif t == "object":
        extra = s.get("additionalProperties")
        if isinstance(extra, dict):
            key = s.get("propertyNames", {})
            keys = f"{_type(key)} " if key else ""
            base = f"map {keys}→ {_type(extra)}".replace("map  ", "map ")
        else:
            base = "map"
    elif t == "string" and s.get("format"):
        base = {"date-time": "date-time (UTC, ISO 8601)", "path": "path"}.get(s["format"], f"string ({s['format']})")
    elif isinstance(t, str):
        base = t
    elif isinstance(t, list):
        base = " or ".join(t)
    else:
        base = "any"
    return base + _constraints(s)


def _constraints(s: dict[str, Any]) -> str:
    parts = []
    for key, sym in (("exclusiveMinimum", ">"), ("minimum", "≥"), ("exclusiveMaximum", "<"), ("maximum", "≤")):
        if key in s:
            v = s[key]
            # integers in full (a bound of 604,800,000 ms, not 6.048e+08), other numbers as they read best
            parts.append(f"{sym} {v:,}" if isinstance(v, int) or float(v).is_integer() and abs(v) >= 1e4 else
                         f"{sym} {v:g}")
    if "minLength" in s:
        parts.append(f"length ≥ {s['minLength']}")
    if "pattern" in s:
        parts.append(f"matching `{s['pattern']}`")
    return f", {', '.join(parts)}" if parts else ""


__all__ = ["UNIT_SUFFIXES", "markdown", "unit_of"]
