"""Parse and validate a course catalog (JSON list or CSV) into rows, before anything is applied.

The JSON format is that of ../shared/data/courses.json (a list of objects); CSV has the same
columns by name (UTF-8, with or without BOM, header on line 1). Every row is validated first;
errors name the CSV line (or JSON index) and the column, e.g. `line 7, column hours: not a
number`. Unknown columns (source, synthetic, ...) are ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from models import safejson
from models.tabular import Progress, RefusedFile, RowError, read_csv

AUDIENCES = ("public", "civil_servant")
# Action ids must fit in 64 bytes ("course.open:<id>"), so ids stay short and ASCII.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")
MAX_TITLE = 300
MAX_CATEGORY = 40
MAX_HOURS = 1000.0
REQUIRED_COLUMNS = ("id", "title", "category", "hours")
TRUE_WORDS = {"1", "true", "yes", "y", "是", "t"}
FALSE_WORDS = {"0", "false", "no", "n", "否", "f", ""}

Format = Literal["json", "csv"]


@dataclass(frozen=True)
class CourseRow:
    """One validated catalog row, ready to upsert."""

    id: str
    title: str
    category: str
    hours: float
    description: str = ""
    audience: str = "public"
    tags: tuple[str, ...] = ()
    url: str | None = None
    platform: str = ""
    hours_estimated: bool = False
    password_protected: bool = False
    # A plaintext course password to hash on import, or an argon2 hash taken as is.
    password: str | None = None
    password_hash: str | None = None


@dataclass
class ParsedCatalog:
    rows: list[CourseRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    total: int = 0  # rows seen in the source, valid or not

    @property
    def ok(self) -> bool:
        return not self.errors


class CatalogError(RefusedFile):
    """The catalog was refused; `errors` lists every problem found."""

    what = "catalog"


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = _text(value).casefold()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("not a yes/no value")


def _tags(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = safejson.loads(text)
            except safejson.JsonRefused as exc:
                raise ValueError("not a JSON list") from exc
        else:
            value = re.split(r"[|;、]", text)
    if not isinstance(value, list) or not all(isinstance(t, str | int) for t in value):
        raise ValueError("not a list of words")
    tags = tuple(dict.fromkeys(str(t).strip() for t in value if str(t).strip()))
    if any(len(t) > 60 for t in tags):
        raise ValueError("a tag is longer than 60 characters")
    return tags


def validate_row(raw: Mapping[str, Any], where: str) -> tuple[CourseRow | None, list[RowError]]:
    """A CourseRow from one source record, or the list of what is wrong with it."""
    errors: list[RowError] = []

    def bad(column: str, reason: str) -> None:
        errors.append(RowError(where, column, reason))

    cid = _text(raw.get("id"))
    if not cid:
        bad("id", "missing")
    elif not ID_PATTERN.match(cid):
        bad("id", "use 1-48 letters, digits, '.', '_' or '-'")
    title = " ".join(_text(raw.get("title")).split())
    if not title:
        bad("title", "missing")
    elif len(title) > MAX_TITLE:
        bad("title", f"longer than {MAX_TITLE} characters")
    category = _text(raw.get("category"))
    if not category:
        bad("category", "missing")
    elif len(category) > MAX_CATEGORY:
        bad("category", f"longer than {MAX_CATEGORY} characters")
    hours = 0.0
    raw_hours = raw.get("hours")
    if raw_hours is None or _text(raw_hours) == "":
        bad("hours", "missing")
    elif isinstance(raw_hours, bool):
        bad("hours", "not a number")
    else:
        try:
            hours = float(_text(raw_hours)) if isinstance(raw_hours, str) else float(raw_hours)
        except (TypeError, ValueError):
            bad("hours", "not a number")
        else:
            if not math.isfinite(hours) or hours <= 0 or hours > MAX_HOURS:
                bad("hours", f"must be more than 0 and at most {MAX_HOURS:g}")
    audience = _text(raw.get("audience")) or "public"
    if audience not in AUDIENCES:
        bad("audience", "must be public or civil_servant")
    try:
        tags = _tags(raw.get("tags"))
    except ValueError as exc:
        bad("tags", str(exc))
        tags = ()
    url = _text(raw.get("url")) or None
    if url is not None and not re.match(r"^https?://\S+$", url):
        bad("url", "must start with http:// or https://")
    flags: dict[str, bool] = {}
    for name in ("hours_estimated", "password_protected"):
        try:
            flags[name] = _bool(raw.get(name))
        except ValueError as exc:
            bad(name, str(exc))
            flags[name] = False
    password = _text(raw.get("password")) or None
    password_hash = _text(raw.get("password_hash")) or None
    if password_hash is not None and not password_hash.startswith("$argon2"):
        bad("password_hash", "not an argon2 hash")
    if password is not None and len(password) > 128:
        bad("password", "longer than 128 characters")
    description = _text(raw.get("description"))
    if len(description) > 5000:
        bad("description", "longer than 5000 characters")
    if errors:
        return None, errors
    row = CourseRow(
        id=cid,
        title=title,
        category=category,
        hours=round(hours, 2),
        description=description,
        audience=audience,
        tags=tags,
        url=url,
        platform=_text(raw.get("platform"))[:60],
        hours_estimated=flags["hours_estimated"],
        password_protected=flags["password_protected"] or bool(password or password_hash),
        password=password,
        password_hash=password_hash,
    )
    return row, []


def _validate_all(
    records: Iterable[tuple[str, Mapping[str, Any]]], total: int, progress: Progress | None
) -> ParsedCatalog:
    parsed = ParsedCatalog(total=total)
    seen: dict[str, str] = {}
    for n, (where, raw) in enumerate(records, start=1):
        row, errors = validate_row(raw, where)
        if row is not None:
            if row.id in seen:
                errors = [RowError(where, "id", f"duplicate of {seen[row.id]}")]
            else:
                seen[row.id] = where
                parsed.rows.append(row)
        parsed.errors.extend(errors)
        if progress is not None and (n % 500 == 0 or n == total):
            progress(n, total)
    return parsed


def parse_json(data: bytes | str, *, progress: Progress | None = None) -> ParsedCatalog:
    """Rows from a JSON list of course objects (courses.json format)."""
    try:
        doc = safejson.loads(data.decode("utf-8-sig") if isinstance(data, bytes) else data)
    except (UnicodeDecodeError, safejson.JsonRefused) as exc:
        return ParsedCatalog(errors=[RowError("file", None, f"not valid UTF-8 JSON: {exc}")])
    if isinstance(doc, dict) and isinstance(doc.get("courses"), list):
        doc = doc["courses"]
    if not isinstance(doc, list):
        return ParsedCatalog(errors=[RowError("file", None, "expected a list of courses")])
    records: list[tuple[str, Mapping[str, Any]]] = []
    errors: list[RowError] = []
    for i, item in enumerate(doc):
        if isinstance(item, dict):
            records.append((f"index {i}", item))
        else:
            errors.append(RowError(f"index {i}", None, "not an object"))
    parsed = _validate_all(records, len(doc), progress)
    parsed.errors = errors + parsed.errors
    return parsed


def parse_csv(data: bytes | str, *, progress: Progress | None = None) -> ParsedCatalog:
    """Rows from CSV with a header row; the header is line 1, so data starts on line 2."""
    try:
        table = read_csv(data, required=REQUIRED_COLUMNS, refuse=CatalogError)
    except CatalogError as exc:
        return ParsedCatalog(errors=exc.errors)
    records: list[tuple[str, Mapping[str, Any]]] = []
    errors: list[RowError] = []
    for row in table.rows:
        if row.error is not None:
            errors.append(row.error)
        else:
            records.append((f"line {row.line}", row.values))
    parsed = _validate_all(records, len(records) + len(errors), progress)
    parsed.errors = sorted(errors + parsed.errors, key=lambda e: e.line or 0)
    return parsed


def detect_format(name: str, data: bytes) -> Format:
    """By file extension, else by content (a JSON document starts with '[' or '{')."""
    lower = name.lower()
    if lower.endswith(".json"):
        return "json"
    if lower.endswith(".csv"):
        return "csv"
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return "json" if head in (b"[", b"{") else "csv"


def parse_catalog(
    data: bytes, *, fmt: Format | None = None, name: str = "", progress: Progress | None = None
) -> ParsedCatalog:
    """Parse and validate a whole catalog file; nothing is applied here."""
    chosen = fmt or detect_format(name, data)
    return (
        parse_json(data, progress=progress)
        if chosen == "json"
        else parse_csv(data, progress=progress)
    )


def read_catalog(path: Path, *, progress: Progress | None = None) -> ParsedCatalog:
    return parse_catalog(path.read_bytes(), name=path.name, progress=progress)
