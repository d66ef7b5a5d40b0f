"""Import the training office's civil-servant roster (CSV), all or nothing.

Columns by name: employee_id, name, agency, mobile, email, active. UTF-8 with or without BOM;
the header is line 1. Every problem names its line and column (never the value: it may be a
phone number). A refused file changes nothing. Rows missing from a new file become inactive,
and members whose roster row is inactive, gone or on another number lose the status.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.identity import CivilServant, VerifiedPhone, record_audit, sync_civil_servant
from models.members import Member
from models.phones import normalise_phone
from models.pii import PiiVault
from models.tabular import Progress, RefusedFile, RowError, read_csv

COLUMNS = ("employee_id", "name", "agency", "mobile", "email", "active")
REQUIRED = ("employee_id", "name", "agency", "mobile", "active")
_TRUE = {"1", "true", "yes", "y", "是"}
_FALSE = {"0", "false", "no", "n", "否"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class RosterError(RefusedFile):
    """The roster was refused; `errors` lists every problem found (line and column)."""

    what = "roster"


@dataclass(frozen=True)
class RosterRow:
    line: int
    employee_id: str
    name: str
    agency: str
    mobile: str  # E.164
    email: str | None
    active: bool


@dataclass
class RosterResult:
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0  # active before, missing or inactive now
    linked: int = 0  # members who became verified civil servants
    status_removed: int = 0
    members_checked: set[int] = field(default_factory=set)


def parse_active(value: str) -> bool | None:
    folded = value.strip().casefold()
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    return None


def parse_roster(data: bytes | str, *, regions: Iterable[str] = ("TW",)) -> list[RosterRow]:
    """Validate the whole file (mobiles must be acceptable in `regions`, the
    PHONE_ALLOWED_REGIONS setting); raises RosterError listing every problem."""
    table = read_csv(data, required=REQUIRED, refuse=RosterError)

    errors: list[RowError] = []
    rows: list[RosterRow] = []
    seen_ids: dict[str, int] = {}
    seen_mobiles: dict[str, int] = {}
    for record in table.rows:
        line, values = record.line, record.values
        if record.error is not None:
            errors.append(record.error)
            continue
        row_errors: list[RowError] = []
        for column in REQUIRED:
            if not values.get(column):
                row_errors.append(RowError.at(line, column, "empty"))
        employee_id, name, agency = values["employee_id"], values["name"], values["agency"]
        if employee_id and len(employee_id) > 64:
            row_errors.append(RowError.at(line, "employee_id", "longer than 64 characters"))
        if employee_id in seen_ids:
            row_errors.append(
                RowError.at(
                    line, "employee_id", f"same employee_id as line {seen_ids[employee_id]}"
                )
            )
        if agency and len(agency) > 200:
            row_errors.append(RowError.at(line, "agency", "longer than 200 characters"))
        mobile = normalise_phone(values["mobile"], regions=regions) if values["mobile"] else None
        if values["mobile"] and mobile is None:
            row_errors.append(RowError.at(line, "mobile", "not a Taiwan mobile number"))
        email = values.get("email") or None
        if email and not _EMAIL.match(email):
            row_errors.append(RowError.at(line, "email", "not an e-mail address"))
        active = parse_active(values["active"]) if values["active"] else None
        if values["active"] and active is None:
            row_errors.append(RowError.at(line, "active", "use 1/0, true/false, yes/no or 是/否"))
        if mobile and active and mobile in seen_mobiles:
            row_errors.append(
                RowError.at(line, "mobile", f"same mobile as active line {seen_mobiles[mobile]}")
            )
        if employee_id:
            seen_ids.setdefault(employee_id, line)
        if row_errors:
            errors.extend(row_errors)
            continue
        assert mobile is not None
        assert active is not None
        if active:
            seen_mobiles[mobile] = line
        rows.append(RosterRow(line, employee_id, name, agency, mobile, email, active))
    if errors:
        raise RosterError(errors)
    return rows


async def import_roster(
    session: AsyncSession,
    *,
    vault: PiiVault,
    data: bytes | str,
    regions: Iterable[str] = ("TW",),
    now: dt.datetime,
    progress: Progress | None = None,
    actor: str = "system",
) -> RosterResult:
    """Replace the roster with the file's rows and update civil-servant status (no commit);
    `actor` is who the audit log names."""
    rows = parse_roster(data, regions=regions)
    result = RosterResult(rows=len(rows))
    existing = {r.employee_id: r for r in (await session.scalars(select(CivilServant))).all()}
    to_check: set[int] = set()
    in_file: set[str] = set()
    for done, row in enumerate(rows, start=1):
        in_file.add(row.employee_id)
        phone_hash = vault.lookup_hash(row.mobile)
        current = existing.get(row.employee_id)
        if current is None:
            session.add(
                CivilServant(
                    employee_id=row.employee_id,
                    name_sealed=vault.encrypt(row.name),
                    agency=row.agency,
                    email_sealed=vault.encrypt(row.email) if row.email else None,
                    phone_hash=phone_hash,
                    phone_sealed=vault.encrypt(row.mobile),
                    active=row.active,
                    imported_at=now,
                    updated_at=now,
                )
            )
            result.added += 1
        elif _apply(current, row, phone_hash, vault, result):
            current.updated_at = now
            result.updated += 1
            if current.member_id is not None:
                to_check.add(current.member_id)
        else:
            result.unchanged += 1
        if progress is not None and (done % 1000 == 0 or done == len(rows)):
            progress(done, len(rows))
    for employee_id, current in existing.items():
        if employee_id not in in_file and current.active:
            current.active = False
            current.updated_at = now
            result.deactivated += 1
            if current.member_id is not None:
                to_check.add(current.member_id)
    await session.flush()

    # Members whose verified number matches an active row not linked yet.
    active_hashes = [vault.lookup_hash(r.mobile) for r in rows if r.active]
    for start in range(0, len(active_hashes), 500):
        chunk = active_hashes[start : start + 500]
        found = await session.scalars(
            select(VerifiedPhone.member_id).where(VerifiedPhone.phone_hash.in_(chunk))
        )
        to_check.update(found.all())
    for member_id in sorted(to_check):
        member = await session.get(Member, member_id)
        before = bool(member and member.is_civil_servant)
        after = await sync_civil_servant(session, member_id=member_id, now=now)
        result.linked += int(after and not before)
        result.status_removed += int(before and not after)
    result.members_checked = to_check
    await record_audit(
        session,
        actor=actor,
        action="roster.imported",
        subject="roster",
        details={
            "rows": result.rows,
            "added": result.added,
            "updated": result.updated,
            "deactivated": result.deactivated,
            "linked": result.linked,
            "status_removed": result.status_removed,
        },
        now=now,
    )
    return result


def _apply(
    current: CivilServant, row: RosterRow, phone_hash: str, vault: PiiVault, result: RosterResult
) -> bool:
    """Update a stored row from the file; True when anything changed."""
    changed = False
    if current.phone_hash != phone_hash:
        current.phone_hash, current.phone_sealed = phone_hash, vault.encrypt(row.mobile)
        changed = True
    if vault.decrypt(current.name_sealed) != row.name:
        current.name_sealed = vault.encrypt(row.name)
        changed = True
    old_email = vault.decrypt(current.email_sealed) if current.email_sealed else None
    if old_email != row.email:
        current.email_sealed = vault.encrypt(row.email) if row.email else None
        changed = True
    if current.agency != row.agency:
        current.agency = row.agency
        changed = True
    if current.active != row.active:
        if current.active:
            result.deactivated += 1
        current.active = row.active
        changed = True
    return changed
