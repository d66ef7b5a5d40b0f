"""The campaign file (YAML or JSON) and the codes CSV: parsed and checked before anything
changes. Every problem names the field (`prize.redeem_until`, `rule.min_hours`) or the CSV
line and column; a refused file changes nothing."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from models.tabular import RefusedFile, RowError, read_csv

TAIPEI = ZoneInfo("Asia/Taipei")
SLUG = re.compile(r"^[a-z0-9-]{1,64}$")
TOP_KEYS = {
    "slug",
    "title",
    "title_en",
    "starts_at",
    "ends_at",
    "rule",
    "prize",
    "per_person",
    "mode",
    "claim_days",
}
RULE_KEYS = {
    "civil_servants_only",
    "agencies",
    "min_hours",
    "since",
    "categories",
    "course_ids",
    "requirement",
}
PRIZE_KEYS = {"name", "name_en", "redeem", "redeem_en", "redeem_until", "generate"}
MAX_GENERATE = 100_000
MAX_CODE = 128


class CampaignFileError(ValueError):
    """The campaign file is refused; `errors` lists every problem, each naming its field."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("campaign file refused, nothing changed: " + "; ".join(errors))


class CodesFileError(RefusedFile):
    what = "codes file"


@dataclass(frozen=True)
class Rule:
    """Who qualifies; every key is optional and all must hold (a verified phone always)."""

    civil_servants_only: bool = False
    agencies: tuple[str, ...] = ()
    min_hours: float = 0.0
    since: dt.datetime | None = None
    categories: tuple[str, ...] = ()
    course_ids: tuple[str, ...] = ()
    requirement: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "civil_servants_only": self.civil_servants_only,
            "agencies": list(self.agencies),
            "min_hours": self.min_hours,
            "since": self.since.isoformat() if self.since else None,
            "categories": list(self.categories),
            "course_ids": list(self.course_ids),
            "requirement": self.requirement,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rule:
        since = data.get("since")
        return cls(
            civil_servants_only=bool(data.get("civil_servants_only")),
            agencies=tuple(data.get("agencies") or ()),
            min_hours=float(data.get("min_hours") or 0),
            since=dt.datetime.fromisoformat(since) if since else None,
            categories=tuple(data.get("categories") or ()),
            course_ids=tuple(data.get("course_ids") or ()),
            requirement=data.get("requirement"),
        )


@dataclass(frozen=True)
class CampaignSpec:
    slug: str
    title: str
    title_en: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    mode: str
    per_person: int
    claim_days: int
    rule: Rule
    prize: dict[str, Any]
    generate: int | None
    raw: dict[str, Any] = field(default_factory=dict)


def _time(value: Any, where: str, errors: list[str]) -> dt.datetime | None:
    """ISO 8601 (or YAML's own timestamps and dates); without an offset it is Asia/Taipei."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time())
    elif isinstance(value, str) and value.strip():
        try:
            moment = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            errors.append(f"{where}: not an ISO 8601 time ({value!r})")
            return None
    else:
        errors.append(f"{where}: a time is required (ISO 8601, e.g. 2026-12-31T23:59)")
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=TAIPEI)
    return moment.astimezone(dt.UTC)


def _text(data: dict[str, Any], key: str, where: str, errors: list[str], *, limit: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        errors.append(f"{where}: required text")
        return ""
    if len(value) > limit:
        errors.append(f"{where}: at most {limit} characters")
    return value.strip()


def _opt_text(data: dict[str, Any], key: str, where: str, errors: list[str]) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        errors.append(f"{where}: must be text")
        return ""
    return value.strip()


def _strings(value: Any, where: str, errors: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        errors.append(f"{where}: a list of names")
        return ()
    return tuple(v.strip() for v in value)


def _int(value: Any, where: str, errors: list[str], *, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(f"{where}: a whole number from {low} to {high}")
        return None
    if not low <= value <= high:
        errors.append(f"{where}: a whole number from {low} to {high}")
        return None
    return value


def _unknown(data: dict[str, Any], known: set[str], prefix: str, errors: list[str]) -> None:
    for key in sorted(set(data) - known, key=str):
        errors.append(f"{prefix}{key}: unknown field")


def _rule(data: Any, errors: list[str]) -> Rule:
    if data is None:
        return Rule()
    if not isinstance(data, dict):
        errors.append("rule: must be a mapping of rule keys")
        return Rule()
    _unknown(data, RULE_KEYS, "rule.", errors)
    civil = data.get("civil_servants_only", False)
    if not isinstance(civil, bool):
        errors.append("rule.civil_servants_only: true or false")
        civil = False
    hours = data.get("min_hours", 0)
    if isinstance(hours, bool) or not isinstance(hours, int | float) or hours < 0 or hours > 1000:
        errors.append("rule.min_hours: a number of hours from 0 to 1000")
        hours = 0
    since = _time(data["since"], "rule.since", errors) if data.get("since") is not None else None
    requirement = data.get("requirement")
    if requirement is not None and (not isinstance(requirement, str) or not requirement.strip()):
        errors.append("rule.requirement: a requirement code")
        requirement = None
    return Rule(
        civil_servants_only=civil,
        agencies=_strings(data.get("agencies"), "rule.agencies", errors),
        min_hours=float(hours),
        since=since,
        categories=_strings(data.get("categories"), "rule.categories", errors),
        course_ids=_strings(data.get("course_ids"), "rule.course_ids", errors),
        requirement=requirement.strip() if requirement else None,
    )


def _prize(data: Any, errors: list[str]) -> tuple[dict[str, Any], int | None]:
    if not isinstance(data, dict):
        errors.append("prize: required, with at least name and redeem")
        return {}, None
    _unknown(data, PRIZE_KEYS, "prize.", errors)
    prize: dict[str, Any] = {
        "name": _text(data, "name", "prize.name", errors, limit=200),
        "name_en": _opt_text(data, "name_en", "prize.name_en", errors),
        "redeem": _text(data, "redeem", "prize.redeem", errors, limit=1000),
        "redeem_en": _opt_text(data, "redeem_en", "prize.redeem_en", errors),
        "redeem_until": None,
    }
    if data.get("redeem_until") is not None:
        until = _time(data["redeem_until"], "prize.redeem_until", errors)
        prize["redeem_until"] = until.isoformat() if until else None
    generate = None
    if data.get("generate") is not None:
        generate = _int(data["generate"], "prize.generate", errors, low=1, high=MAX_GENERATE)
    return prize, generate


def load_document(data: bytes | str, *, name: str = "campaign file") -> dict[str, Any]:
    """YAML or JSON (JSON is YAML too, but its own parser gives better messages)."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    try:
        loaded = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CampaignFileError([f"file: not valid YAML or JSON ({exc})"]) from None
    if not isinstance(loaded, dict):
        raise CampaignFileError(["file: a mapping of campaign fields is needed"])
    return loaded


def parse_campaign(data: bytes | str | dict[str, Any]) -> CampaignSpec:
    """The campaign file checked whole; raises CampaignFileError listing every problem."""
    doc = data if isinstance(data, dict) else load_document(data)
    errors: list[str] = []
    _unknown(doc, TOP_KEYS, "", errors)
    slug = doc.get("slug")
    if not isinstance(slug, str) or not SLUG.match(slug):
        errors.append("slug: required, letters a-z, digits and '-' only (at most 64)")
        slug = ""
    title = _text(doc, "title", "title", errors, limit=200)
    title_en = _opt_text(doc, "title_en", "title_en", errors) or title
    starts = _time(doc.get("starts_at"), "starts_at", errors)
    ends = _time(doc.get("ends_at"), "ends_at", errors)
    if starts and ends and ends <= starts:
        errors.append("ends_at: must be after starts_at")
    mode = doc.get("mode", "instant")
    if mode not in ("instant", "draw"):
        errors.append("mode: 'instant' or 'draw'")
        mode = "instant"
    per_person = _int(doc.get("per_person", 1), "per_person", errors, low=1, high=100) or 1
    if mode == "draw" and per_person != 1:
        errors.append("per_person: a draw has one entry per person (1)")
    claim_days = _int(doc.get("claim_days", 7), "claim_days", errors, low=1, high=365) or 7
    rule = _rule(doc.get("rule"), errors)
    if rule.since and ends and rule.since >= ends:
        errors.append("rule.since: must be before ends_at")
    prize, generate = _prize(doc.get("prize"), errors)
    if errors:
        raise CampaignFileError(errors)
    assert starts is not None
    assert ends is not None
    return CampaignSpec(
        slug=slug,
        title=title,
        title_en=title_en,
        starts_at=starts,
        ends_at=ends,
        mode=str(mode),
        per_person=per_person,
        claim_days=claim_days,
        rule=rule,
        prize=prize,
        generate=generate,
        raw=json.loads(json.dumps(doc, default=str)),
    )


def parse_codes(data: bytes | str) -> list[str]:
    """The vendor's codes: a CSV with a `code` column; a duplicate or a bad code refuses it."""
    csv_file = read_csv(data, required=["code"], refuse=CodesFileError)
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    codes: list[str] = []
    for row in csv_file.rows:
        if row.error is not None:
            errors.append(row.error)
            continue
        code = row.values["code"]
        if not code:
            errors.append(RowError.at(row.line, "code", "empty code"))
        elif len(code) > MAX_CODE or not code.isprintable():
            errors.append(RowError.at(row.line, "code", f"at most {MAX_CODE} printable characters"))
        elif code in seen:
            errors.append(RowError.at(row.line, "code", f"duplicate of line {seen[code]}"))
        else:
            seen[code] = row.line
            codes.append(code)
    if errors:
        raise CodesFileError(errors)
    if not codes:
        raise CodesFileError([RowError("file", "code", "no codes in the file")])
    return codes


@dataclass(frozen=True)
class Redemption:
    line: int
    code: str
    redeemed_at: dt.datetime


def parse_redemptions(data: bytes | str, *, now: dt.datetime) -> list[Redemption]:
    """The vendor's `code,redeemed_at` CSV (times without offset are Asia/Taipei)."""
    csv_file = read_csv(data, required=["code", "redeemed_at"], refuse=CodesFileError)
    errors: list[RowError] = []
    out: list[Redemption] = []
    for row in csv_file.rows:
        if row.error is not None:
            errors.append(row.error)
            continue
        problems: list[str] = []
        at = _time(row.values["redeemed_at"], "redeemed_at", problems)
        if not row.values["code"]:
            errors.append(RowError.at(row.line, "code", "empty code"))
        elif at is None:
            errors.append(RowError.at(row.line, "redeemed_at", "not an ISO 8601 time"))
        elif at > now + dt.timedelta(minutes=5):
            errors.append(RowError.at(row.line, "redeemed_at", "in the future"))
        else:
            out.append(Redemption(row.line, row.values["code"], at))
    if errors:
        raise CodesFileError(errors)
    return out
