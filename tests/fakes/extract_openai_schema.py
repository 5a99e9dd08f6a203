"""Regenerate tests/fixtures/openai_schemas.json from OpenAI's OpenAPI document.

    python -m tests.fakes.extract_openai_schema /path/to/openai-openapi.json

Copies only the schemas the fake model server validates against (request bodies
for Chat Completions and Responses, plus the streamed event shapes the fake's own
tests check) with every component they transitively reference, and rewrites the
OpenAPI-isms that plain JSON Schema 2020-12 would silently ignore:

- `nullable: true` (OpenAPI 3.0 style, still present in places) -> `null` allowed;
- `discriminator` + `oneOf` -> `if`/`then` dispatch on the tag, so a body is checked
  against the variant its tag names (plain `oneOf` fails when loose variants overlap);
- `$recursiveRef` (draft 2019-09) -> a plain `$ref` to the enclosing definition.

Descriptions and vendor extensions are dropped: they do not affect validation and
would make the fixture several times larger.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOTS = (
    "CreateChatCompletionRequest",
    "CreateResponse",
    "CreateChatCompletionStreamResponse",
    "CreateChatCompletionResponse",
    "ResponseStreamEvent",
    "Response",
    "ListModelsResponse",
)
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "openai_schemas.json"
_PREFIX = "#/components/schemas/"
_DROP = {"description", "example", "examples", "title", "deprecated", "$recursiveAnchor"}


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value.removeprefix(_PREFIX))
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def reachable(schemas: dict[str, Any], roots: tuple[str, ...]) -> list[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(_refs(schemas[name]) - seen)
    return sorted(seen)


def _tag_values(schemas: dict[str, Any], variant: dict[str, Any], prop: str) -> list[Any]:
    """The discriminator values a variant accepts (its `enum`/`const` for the tag)."""
    if "$ref" in variant:
        name = variant["$ref"].removeprefix(_PREFIX).removeprefix("#/$defs/")
        return _tag_values(schemas, schemas[name], prop)
    tag = variant.get("properties", {}).get(prop)
    if isinstance(tag, dict):
        if "const" in tag:
            return [tag["const"]]
        if "enum" in tag:
            return list(tag["enum"])
    values: list[Any] = []
    for part in variant.get("allOf", []):
        values += _tag_values(schemas, part, prop)
    return values


def _requires(schemas: dict[str, Any], variant: dict[str, Any], prop: str) -> bool:
    if "$ref" in variant:
        name = variant["$ref"].removeprefix(_PREFIX).removeprefix("#/$defs/")
        return _requires(schemas, schemas[name], prop)
    if prop in variant.get("required", []):
        return True
    return any(_requires(schemas, part, prop) for part in variant.get("allOf", []))


def _dispatch(schemas: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Rewrite oneOf/anyOf + discriminator into tag-driven if/then clauses."""
    prop = node.pop("discriminator")["propertyName"]
    key = "oneOf" if "oneOf" in node else "anyOf"
    variants = node.get(key, [])
    tagged = [(_tag_values(schemas, v, prop), v) for v in variants]
    if not variants or any(not values for values, _ in tagged):
        node.pop(key, None)
        node["anyOf"] = variants  # tag not resolvable: fall back to "any variant fits"
        return node
    node.pop(key)
    all_values = sorted({json.dumps(v) for values, _ in tagged for v in values})
    clauses = [
        {
            "if": {"properties": {prop: {"enum": values}}, "required": [prop]},
            "then": variant,
        }
        for values, variant in tagged
    ]
    untagged = [v for _, v in tagged if not _requires(schemas, v, prop)]
    if untagged:  # the tag may be omitted (e.g. EasyInputMessage.type): try those variants
        clauses.append({"if": {"not": {"required": [prop]}}, "then": {"anyOf": untagged}})
    else:
        node["required"] = sorted({*node.get("required", []), prop})
    node["allOf"] = [*node.get("allOf", []), *clauses]
    node.setdefault("properties", {})[prop] = {"enum": [json.loads(v) for v in all_values]}
    return node


def _convert(schemas: dict[str, Any], node: Any, owner: str) -> Any:
    if isinstance(node, list):
        return [_convert(schemas, v, owner) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or key.startswith("x-"):
            continue
        if key == "$ref":
            out["$ref"] = "#/$defs/" + value.removeprefix(_PREFIX)
        elif key == "$recursiveRef":
            out["$ref"] = "#/$defs/" + owner
        elif key in ("properties", "patternProperties", "$defs"):
            out[key] = {k: _convert(schemas, v, owner) for k, v in value.items()}
        else:
            out[key] = _convert(schemas, value, owner)
    if isinstance(out.get("discriminator"), dict) and ("oneOf" in out or "anyOf" in out):
        out = _dispatch(schemas, out)
    out.pop("discriminator", None)
    if out.pop("nullable", False):
        out = _allow_null(out)
    return out


def _allow_null(node: dict[str, Any]) -> dict[str, Any]:
    kind = node.get("type")
    if isinstance(kind, str) and "$ref" not in node:
        node["type"] = [kind, "null"]
        if "enum" in node and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        return node
    if isinstance(kind, list):
        node["type"] = [*kind, "null"] if "null" not in kind else kind
        return node
    return {"anyOf": [node, {"type": "null"}]}


def extract(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document["components"]["schemas"]
    names = reachable(schemas, ROOTS)
    defs = {name: _convert(schemas, schemas[name], name) for name in names}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": "Generated by tests/fakes/extract_openai_schema.py; do not edit by hand.",
        "x-openapi-version": document.get("info", {}).get("version"),
        "roots": list(ROOTS),
        "$defs": defs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("openapi", type=Path, help="path to OpenAI's openapi.json")
    parser.add_argument("--out", type=Path, default=FIXTURE)
    args = parser.parse_args(argv)
    result = extract(json.loads(args.openapi.read_text(encoding="utf-8")))
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(result['$defs'])} schemas to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
