"""reminder coverage: one row per digest and cadence point (with the requirements covered)
instead of one per requirement, member and point

Revision ID: 0007_notifications_perf
Revises: 0004_outbox_learning
"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import models.base

revision: str = "0007_notifications_perf"
down_revision: str | Sequence[str] | None = "0004_outbox_learning"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = models.base.UTCDateTime(timezone=True)


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")


def upgrade() -> None:
    coverage = op.create_table(
        "reminder_coverage",
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("digest_day", sa.String(length=10), nullable=False),
        sa.Column("point", sa.String(length=10), nullable=False),
        sa.Column("requirement_ids", _json(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_reminder_coverage_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "member_id", "digest_day", "point", name=op.f("pk_reminder_coverage")
        ),
    )
    # Carry the points already covered over, grouped by digest and point.
    bind = op.get_bind()
    old = sa.table(
        "reminder_point",
        sa.column("requirement_id", sa.Integer()),
        sa.column("member_id", sa.Integer()),
        sa.column("point", sa.String()),
        sa.column("digest_day", sa.String()),
        sa.column("created_at", UTC),
    )
    grouped: dict[tuple[int, str, str], dict[str, Any]] = {}
    for req, member, point, day, created in bind.execute(
        sa.select(
            old.c.requirement_id, old.c.member_id, old.c.point, old.c.digest_day, old.c.created_at
        ).order_by(old.c.member_id)
    ):
        row = grouped.setdefault(
            (member, day, point),
            {
                "member_id": member,
                "digest_day": day,
                "point": point,
                "requirement_ids": [],
                "created_at": created,
            },
        )
        row["requirement_ids"].append(req)
        if len(grouped) >= 5000:
            bind.execute(coverage.insert(), list(grouped.values()))
            grouped.clear()
    if grouped:
        bind.execute(coverage.insert(), list(grouped.values()))
    op.drop_index(op.f("ix_reminder_point_member_id"), table_name="reminder_point")
    op.drop_table("reminder_point")


def downgrade() -> None:
    points = op.create_table(
        "reminder_point",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("requirement_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("point", sa.String(length=10), nullable=False),
        sa.Column("digest_day", sa.String(length=10), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["requirement_id"],
            ["mandatory_requirement.id"],
            name=op.f("fk_reminder_point_requirement_id_mandatory_requirement"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_reminder_point_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder_point")),
        sa.UniqueConstraint(
            "requirement_id", "member_id", "point", name=op.f("uq_reminder_point_requirement_id")
        ),
    )
    op.create_index(op.f("ix_reminder_point_member_id"), "reminder_point", ["member_id"])
    bind = op.get_bind()
    coverage = sa.table(
        "reminder_coverage",
        sa.column("member_id", sa.Integer()),
        sa.column("digest_day", sa.String()),
        sa.column("point", sa.String()),
        sa.column("requirement_ids", _json()),
        sa.column("created_at", UTC),
    )
    existing = sa.select(sa.table("mandatory_requirement", sa.column("id")).c.id)
    known = {r for (r,) in bind.execute(existing)}
    seen: set[tuple[int, int, str]] = set()
    rows: list[dict[str, Any]] = []
    for member, day, point, ids, created in bind.execute(sa.select(coverage)):
        for req in json.loads(ids) if isinstance(ids, str) else ids:
            if req in known and (req, member, point) not in seen:
                seen.add((req, member, point))
                rows.append(
                    {
                        "requirement_id": req,
                        "member_id": member,
                        "point": point,
                        "digest_day": day,
                        "created_at": created,
                    }
                )
    if rows:
        bind.execute(points.insert(), rows)
    op.drop_table("reminder_coverage")
