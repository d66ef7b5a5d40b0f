"""Checks Bot API calls against the Bot API spec (field names, required fields, types).

Uses ../shared/platform/telegram/api.json when present; otherwise the subset below, copied
from that file (Bot API 10.1) for the methods and types edoor sends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from telegram import InputFile

SPEC_FILE = Path(__file__).resolve().parents[2] / "shared" / "platform" / "telegram" / "api.json"

# {"methods"|"types": {name: {field: [[types...], required]}}}, copied from api.json.
SUBSET_FILE = Path(__file__).with_name("telegram_api_subset.json")

Spec = dict[str, dict[str, dict[str, tuple[list[str], bool]]]]


def load_spec() -> Spec:
    """The full spec when the shared folder exists, else the built-in subset."""
    if SPEC_FILE.is_file():
        raw = json.loads(SPEC_FILE.read_text("utf-8"))
        return {
            group: {
                name: {f["name"]: (f["types"], f["required"]) for f in item.get("fields", [])}
                for name, item in raw[group].items()
            }
            for group in ("methods", "types")
        }
    return {
        group: {
            name: {field: (types, required) for field, (types, required) in fields.items()}
            for name, fields in json.loads(SUBSET_FILE.read_text("utf-8"))[group].items()
        }
        for group in ("methods", "types")
    }


def _matches(spec: Spec, kind: str, value: Any, where: str) -> list[str]:
    if kind.startswith("Array of "):
        if not isinstance(value, list):
            return [f"{where}: expected {kind}"]
        return [
            e for i, v in enumerate(value) for e in _matches(spec, kind[9:], v, f"{where}[{i}]")
        ]
    simple = {
        "String": lambda v: isinstance(v, str),
        "Integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "Float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "Boolean": lambda v: isinstance(v, bool),
        "True": lambda v: v is True,
        # URLs and file_ids are Strings; an upload (a QR code's PNG) is PTB's InputFile.
        "InputFile": lambda v: isinstance(v, InputFile),
    }
    if kind in simple:
        return [] if simple[kind](value) else [f"{where}: expected {kind}, got {value!r}"]
    if kind in spec["types"]:
        return object_errors(spec, kind, value, where)
    return [f"{where}: type {kind} not in the spec subset"]


def _value_errors(spec: Spec, kinds: list[str], value: Any, where: str) -> list[str]:
    attempts = [_matches(spec, kind, value, where) for kind in kinds]
    if any(not errors for errors in attempts):
        return []
    return min(attempts, key=len)


def object_errors(spec: Spec, type_name: str, value: Any, where: str = "") -> list[str]:
    """Problems of a JSON object against a Bot API type."""
    where = where or type_name
    if not isinstance(value, dict):
        return [f"{where}: expected a {type_name} object"]
    fields = spec["types"][type_name]
    errors = [f"{where}.{k}: no such field in {type_name}" for k in value if k not in fields]
    errors += [f"{where}: missing {k}" for k, (_, req) in fields.items() if req and k not in value]
    for key, item in value.items():
        if key in fields:
            errors += _value_errors(spec, fields[key][0], item, f"{where}.{key}")
    return errors


def call_errors(spec: Spec, method: str, params: dict[str, Any]) -> list[str]:
    """Problems of one Bot API call (JSON parameters) against the method's spec."""
    fields = spec["methods"].get(method)
    if fields is None:
        return [f"{method}: no such method"]
    errors = [f"{method}.{k}: no such parameter" for k in params if k not in fields]
    errors += [
        f"{method}: missing {k}" for k, (_, req) in fields.items() if req and k not in params
    ]
    for key, value in params.items():
        if key in fields:
            errors += _value_errors(spec, fields[key][0], value, f"{method}.{key}")
    return errors
