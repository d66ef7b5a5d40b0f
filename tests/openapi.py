"""Validate request bodies against the LINE OpenAPI spec in ../shared/platform (when present).

OpenAPI 3.0's `discriminator` is not JSON Schema: it is followed here, so that a text message
is checked against TextMessage, a Flex button against FlexButton, and so on.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema import validators

_active: set[tuple[int, str]] = set()


def _discriminator(
    validator: Any, disc: dict[str, Any], instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if not isinstance(instance, dict):
        return
    ref = disc.get("mapping", {}).get(instance.get(disc["propertyName"]))
    if ref is None:
        return
    key = (id(instance), ref)
    if key in _active:  # the subtype's allOf points back at this base schema
        return
    _active.add(key)
    try:
        yield from validator.descend(instance, {"$ref": ref})
    finally:
        _active.discard(key)


_Validator = validators.extend(jsonschema.Draft4Validator, {"discriminator": _discriminator})


@functools.cache
def _components(spec_path: str) -> dict[str, Any]:
    spec = yaml.safe_load(Path(spec_path).read_text("utf-8"))
    return spec["components"]


def line_schema_errors(shared_dir: Path, schema: str, body: dict[str, Any]) -> list[str]:
    """Messages for every way `body` breaks `schema` of messaging-api.yml (empty when valid)."""
    spec = shared_dir / "platform" / "line" / "messaging-api.yml"
    document = {"$ref": f"#/components/schemas/{schema}", "components": _components(str(spec))}
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _Validator(document).iter_errors(body)
    ]
