"""money safety: one live release item per milestone and deposit, customer-paid fees, flagged
chargebacks, webhook bodies stored without account numbers or authorization codes

- `release_items.live`: true while the release is pending, approved or released, NULL once it
  is rejected; unique with (milestone_id, deposit_id), so the database holds one live release
  item per milestone and deposit. Existing items of releases that are not rejected become live;
  where the race this closes left several live items for one pair, the executed one (else the
  oldest) stays live and the others are marked rejected with their releases, so an admin sees them.
- `payments.gateway_fee`, `payments.charged_amount`: what Paystack reported for the charge.
- `disputes.gateway_resolution`, `disputes.flag_reason`: Paystack's resolution as received, and
  why a chargeback was left frozen for an admin.
- `refunds.sent_at`, and refund statuses for sending at most once: `processing` becomes `sent`;
  the old `needs_attention` (given up after several sends) and a `pending` refund that was already
  sent at least once become `unknown`: their outcome is unclear and only Paystack's records settle
  them (the old code could have sent them more than once: check them against Paystack).
- `webhook_events.payload`: stored events keep their name and data with account numbers reduced
  to their last four digits and authorization codes replaced; the rule is frozen here as it was
  written, so the migration does not change with the application.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 03:10:00.000000
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import app.models.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REDACTED = "[redacted]"
BATCH = 500


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(item, dict | list):
                item = _redacted(item)
            elif item is None or isinstance(item, bool):
                pass
            elif key == "authorization_code":
                item = REDACTED
            elif "account_number" in key and isinstance(item, str | int):
                text = str(item)
                item = "*" * len(text) if len(text) <= 4 else "*" * (len(text) - 4) + text[-4:]
            out[key] = item
        return out
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return value


def _redact_webhook_payloads() -> None:
    connection = op.get_bind()
    events = sa.table("webhook_events", sa.column("id", sa.BigInteger), sa.column("payload", sa.Text))
    last = 0
    while True:
        rows = connection.execute(
            sa.select(events.c.id, events.c.payload).where(events.c.id > last).order_by(events.c.id).limit(BATCH)
        ).all()
        if not rows:
            return
        for row_id, payload in rows:
            last = row_id
            try:
                body = json.loads(payload)
            except ValueError:
                continue
            if not isinstance(body, dict):
                continue
            stored = json.dumps({"event": body.get("event"), "data": _redacted(body.get("data"))},
                                separators=(",", ":"), ensure_ascii=False)
            if stored != payload:
                connection.execute(events.update().where(events.c.id == row_id).values(payload=stored))


def _mark_live_release_items() -> None:
    connection = op.get_bind()
    items = sa.table(
        "release_items", sa.column("id", sa.BigInteger), sa.column("release_id", sa.String),
        sa.column("milestone_id", sa.String), sa.column("deposit_id", sa.String), sa.column("live", sa.Boolean),
    )
    releases = sa.table("release_requests", sa.column("id", sa.String), sa.column("status", sa.String))
    rows = connection.execute(
        sa.select(items.c.id, items.c.release_id, items.c.milestone_id, items.c.deposit_id, releases.c.status)
        .join(releases, releases.c.id == items.c.release_id)
        .where(releases.c.status != "rejected")
        .order_by(items.c.id)
    ).all()
    def first_per_pair(candidates: Sequence[Any]) -> set[int]:
        keep: dict[tuple[str, str], tuple[int, str]] = {}
        for item_id, _release_id, milestone_id, deposit_id, status in candidates:
            pair = (milestone_id, deposit_id)
            if pair not in keep or (status == "released" and keep[pair][1] != "released"):
                keep[pair] = (item_id, status)
        return {item_id for item_id, _ in keep.values()}

    # A release that is not executed and holds a duplicated pair is rejected whole; the pairs are
    # then chosen again among the releases left, so no rejected release keeps a live item.
    first = first_per_pair(rows)
    rejected = {release_id for item_id, release_id, *_, status in rows if item_id not in first and status != "released"}
    live_ids = first_per_pair([row for row in rows if row[1] not in rejected])
    if live_ids:
        connection.execute(items.update().where(items.c.id.in_(sorted(live_ids))).values(live=True))
    if rejected:
        connection.execute(releases.update().where(releases.c.id.in_(sorted(rejected))).values(status="rejected"))


def _move_refund_statuses() -> None:
    refunds = sa.table("refunds", sa.column("status", sa.String), sa.column("attempts", sa.Integer),
                       sa.column("available_at", sa.DateTime(timezone=True)))
    now = sa.func.current_timestamp()
    op.get_bind().execute(refunds.update().where(refunds.c.status == "processing")
                          .values(status="sent", available_at=now))
    op.get_bind().execute(
        refunds.update()
        .where((refunds.c.status == "needs_attention") | ((refunds.c.status == "pending") & (refunds.c.attempts > 0)))
        .values(status="unknown", available_at=now)
    )


def upgrade() -> None:
    with op.batch_alter_table("release_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("live", sa.Boolean(), nullable=True))
    _mark_live_release_items()
    with op.batch_alter_table("release_items", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            batch_op.f("uq_release_items_milestone_id_deposit_id_live"), ["milestone_id", "deposit_id", "live"]
        )
        batch_op.create_check_constraint(batch_op.f("ck_release_items_live_true_or_null"), "live")

    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gateway_fee", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("charged_amount", sa.BigInteger(), nullable=True))

    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gateway_resolution", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("flag_reason", sa.String(length=500), nullable=True))

    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_at", app.models.base.UTCDateTime(timezone=True), nullable=True))
    _move_refund_statuses()

    _redact_webhook_payloads()


def downgrade() -> None:
    # Redacted webhook bodies stay redacted: what was taken out is gone on purpose; refunds keep the
    # statuses they reached (`sent` and `unknown` mean nothing to the old code: settle them first).
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_column("sent_at")
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.drop_column("flag_reason")
        batch_op.drop_column("gateway_resolution")

    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("charged_amount")
        batch_op.drop_column("gateway_fee")

    with op.batch_alter_table("release_items", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_release_items_live_true_or_null"), type_="check")
        batch_op.drop_constraint(batch_op.f("uq_release_items_milestone_id_deposit_id_live"), type_="unique")
        batch_op.drop_column("live")
