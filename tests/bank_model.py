"""The Bank test's engine, Jepsen-style: a seeded schedule of concurrent operations sent over HTTP to
the service (several instances on one PostgreSQL database), the built-in sandbox gateway injecting
seeded faults, the worker's jobs run in between as worker processes would run them; then a drain and
the checks that every minor unit is still accounted for.

`tests/test_bank.py` runs it small on every PostgreSQL run; `bench/bank.py` runs it large.

What a seed fixes: the schedule, i.e. every step's faults, operations and the dice each operation
picks its targets and amounts with. Targets are picked among what exists when the operation starts,
and which of two concurrent requests wins a row lock is PostgreSQL's choice, so two runs of one seed
send the same schedule and may still see different answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.sql import Select

from app.core.config import Settings
from app.core.money import to_major
from app.core.security import issue_token
from app.gateway.sandbox import Sandbox
from app.gateway.signature import sign
from app.ledger import accounts
from app.main import create_app
from app.models import Dispute as DisputeRow
from app.models import (
    EscrowTransaction,
    Holding,
    JournalEntry,
    LedgerAccount,
    Milestone,
    Payment,
    Payout,
    PayoutAccount,
    Posting,
    Refund,
    ReleaseRequest,
    ShareTransfer,
    WebhookEvent,
)
from app.models.base import utcnow
from app.payments.gateway_refunds import refund_id_in_note
from app.payments.tasks import reconcile_pending
from app.payouts.tasks import reconcile_payouts
from app.runtime import Runtime
from app.web.idempotency import REPLAY_HEADER
from app.wiring import JOBS
from tests.helpers import another_instance, answer_label

BASE_URL = "http://testserver"
CURRENCY = "NGN"

# What the service runs with here: the worker is the engine's to drive; gateway calls give up soon, so a
# withheld answer costs half a second; refunds the gateway has no record of fail at once (the sandbox's
# list is complete); share offers expire within a run; large releases need an admin's approval.
BANK_SETTINGS: dict[str, Any] = {
    "worker_in_process": False,
    "rate_limit_enabled": False,
    "gateway_timeout_seconds": 0.5,
    "gateway_max_retries": 1,
    "sandbox_settle_delay_seconds": 0.01,
    "sandbox_webhook_retry_delays": "0.05,0.1",
    "reconcile_pending_after_seconds": 0,
    "refund_check_interval_seconds": 0.05,
    "refund_unknown_give_up_seconds": 0,
    "share_transfer_expiry_seconds": 3.0,
    "escrow_release_threshold": "20000",
    "log_level": "ERROR",
}
TIMEOUT_FAULT_DELAY = 0.7  # longer than gateway_timeout_seconds: the client gives up

ADMIN = "bank-admin"
INVESTORS = [f"bank-investor-{i}" for i in range(1, 7)]


@dataclass(frozen=True)
class AppSpec:
    id: str
    owner: str
    share_price: str
    total_shares: int
    approvers: tuple[str, ...]
    required_approvals: int
    platform_fee: str
    prices: tuple[str, ...]  # what sellers ask per share
    most_bought: int  # shares one investment asks for at most


APPS = (
    AppSpec("bank-app-a", "bank-owner-a", "1000.00", 90, ("bank-approver-1", "bank-approver-2"), 2, "2.50",
            ("900.00", "1000.00", "1250.00"), 12),
    AppSpec("bank-app-b", "bank-owner-b", "250.00", 2000, ("bank-approver-2", "bank-approver-3"), 1, "0",
            ("200.00", "300.00"), 60),
)
APP_BY_ID = {spec.id: spec for spec in APPS}
PAYEES = [spec.owner for spec in APPS] + INVESTORS
# Payout accounts registered before the schedule starts; the others register (or not) during it.
REGISTERED_AT_START = [APPS[0].owner, *INVESTORS[:4]]
PERIODS = ("2026-01", "2026-02", "2026-03")
MILESTONE_PERCENTAGES = ("5", "10", "15", "20", "25", "30", "40")
CHECKOUT_OUTCOMES = ("success",) * 6 + ("failed", "abandoned", "unpaid")

# Gateway paths a fault can aim at, and the faults (SandboxFaults' methods, their arguments, and how often
# they come up). An outcome fault waits for the next transfer or refund whenever that comes: rarer, or
# nearly every transfer would fail.
FAULT_PATHS = ("/transaction/initialize", "/transaction/verify", "/refund", "/transfer", "/transfer/verify",
               "/transfer/bulk", "/transferrecipient")
FAULT_KINDS: tuple[tuple[str, dict[str, Any], int], ...] = (
    ("fail_next", {"status": 500}, 3),
    ("fail_next", {"status": 503}, 3),
    ("fail_next", {"status": 429}, 3),
    ("fail_next", {"status": 400}, 3),
    ("timeout_next", {"delay": TIMEOUT_FAULT_DELAY}, 3),
    ("error_after_next", {"status": 500}, 3),
    ("error_after_next", {"status": 502}, 3),
    ("malformed_next", {}, 3),
    ("transfer_outcome_next", {"outcome": "failed"}, 1),
    ("transfer_outcome_next", {"outcome": "reversed"}, 1),
    ("transfer_outcome_next", {"outcome": "reversed_after_success"}, 1),
    ("refund_outcome_next", {"outcome": "failed"}, 1),
    ("refund_outcome_next", {"outcome": "needs-attention"}, 1),
)
FAULTS_PER_STEP = 0.35  # the chance that a step starts with a fault injected (and again for a second one)
MAX_BATCH = 4
TWICE = 0.1  # the chance that an operation whose route honours Idempotency-Key is sent twice with one key
DRAIN_ROUNDS = 40

# Operations and how often they come up.
WEIGHTS: dict[str, int] = {
    "invest": 14, "pay_revenue": 4, "buy_shares": 5, "distribute": 3, "add_milestone": 3, "complete_milestone": 3,
    "request_release": 6, "decide_release": 8, "execute_release": 6, "refund": 6, "open_dispute": 3,
    "resolve_dispute": 4, "offer_shares": 5, "cancel_offer": 2, "register_payout_account": 2, "retry_payout": 3,
    "verify_payment": 3, "replay_webhook": 3, "worker": 14, "audit": 3,
}
KEYED = frozenset({"invest", "pay_revenue", "buy_shares", "distribute", "request_release", "refund", "offer_shares"})


# ---- the schedule --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    kind: str
    # Rolled when the schedule is made, read when the operation runs: dice[0..5] pick its targets and
    # amounts, dice[6] names its Idempotency-Key, dice[7] the instance it is sent to.
    dice: tuple[int, ...]
    twice: bool  # sent twice at once with one Idempotency-Key

    def die(self, index: int, sides: int) -> int:
        return self.dice[index] % sides


@dataclass(frozen=True)
class Fault:
    action: str
    arguments: tuple[tuple[str, Any], ...]

    @property
    def label(self) -> str:
        shown = dict(self.arguments)
        detail = shown.get("status") or shown.get("outcome") or ""
        path = shown.get("path_contains", "")
        return " ".join(part for part in (self.action, str(detail), path) if part)


@dataclass(frozen=True)
class Step:
    faults: tuple[Fault, ...]
    ops: tuple[Op, ...]


def plan_schedule(seed: int, operations: int, max_batch: int = MAX_BATCH) -> list[Step]:
    """The schedule a seed stands for: steps of 1..max_batch concurrent operations, some led by faults."""
    rng = random.Random(seed)
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    steps: list[Step] = []
    planned = 0
    while planned < operations:
        faults = []
        while rng.random() < FAULTS_PER_STEP and len(faults) < 2:
            action, arguments, _ = rng.choices(FAULT_KINDS, [weight for _, _, weight in FAULT_KINDS])[0]
            if action in ("transfer_outcome_next", "refund_outcome_next"):
                faults.append(Fault(action, tuple(arguments.items())))
            else:
                aimed = {**arguments, "path_contains": rng.choice(FAULT_PATHS)}
                faults.append(Fault(action, tuple(aimed.items())))
        size = min(rng.randint(1, max_batch), operations - planned)
        ops = []
        for _ in range(size):
            kind = rng.choices(kinds, weights)[0]
            ops.append(Op(kind, tuple(rng.randrange(2**31) for _ in range(8)), kind in KEYED and rng.random() < TWICE))
        steps.append(Step(tuple(faults), tuple(ops)))
        planned += size
    return steps


# ---- what happened -------------------------------------------------------------------------------------


@dataclass
class Tally:
    answers: Counter[tuple[str, str]] = field(default_factory=Counter)  # (operation, answer) -> count
    faults: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    drain_rounds: int = 0
    final_state: dict[str, Counter[str]] = field(default_factory=dict)  # rows by status, after the drain

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append((name, ok, detail))
        if not ok:
            self.violations.append(f"check {name}: {detail}")


# Answers the contract gives for a request it refuses; anything else 4xx or 5xx is a violation, but for a
# gateway that failed (502 GATEWAY_ERROR) on a route that calls it while the client waits.
REFUSALS = frozenset({409, 422})


# ---- the service: instances on one database, one sandbox ------------------------------------------------


@dataclass
class Instance:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def runtime(self) -> Runtime:
        return self.app.state.runtime


@contextlib.asynccontextmanager
async def service(settings: Settings, count: int) -> AsyncIterator[list[Instance]]:
    """`count` instances of the service on `settings`' database, as `--workers N` runs it. They share
    the first one's gateway client, so every instance talks to its sandbox (which holds the charges,
    transfers and refunds, and sends its webhooks to the first instance)."""
    async with contextlib.AsyncExitStack() as stack:
        first = create_app(settings, loopback=True)
        await stack.enter_async_context(LifespanManager(first, startup_timeout=30, shutdown_timeout=30))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(first), base_url=BASE_URL, timeout=60))
        instances: list[Instance] = [Instance(first, client)]
        for _ in range(count - 1):
            instances.append(Instance(*await another_instance(
                stack, settings, first.state.runtime.gateway, BASE_URL, timeout=60)))
        yield instances


async def run_worker_jobs(rt: Runtime, *, reconcile: bool) -> int:
    """One pass of the worker's queues, as `Worker.run_once` makes it, and the reconcilers it runs every
    minute when `reconcile`. A job that raises is not caught: here that is a defect."""
    done = 0
    for job in JOBS:
        done += await job(rt)
    if reconcile:
        done += await reconcile_pending(rt)
        done += await reconcile_payouts(rt, older_than_seconds=0)
    return done


# ---- the run -------------------------------------------------------------------------------------------


class Bank:
    def __init__(self, instances: list[Instance], settings: Settings, seed: int) -> None:
        self.instances = instances
        self.settings = settings
        self.seed = seed
        self.tally = Tally()
        self.started_at = utcnow()

    # ---- plumbing

    @property
    def home(self) -> Instance:
        """The instance whose sandbox is the gateway: checkouts go there."""
        return self.instances[0]

    @property
    def sandbox(self) -> Sandbox:
        return self.home.app.state.sandbox

    @property
    def rt(self) -> Runtime:
        return self.home.runtime

    def headers(self, user_id: str) -> dict[str, str]:
        roles = ["admin"] if user_id == ADMIN else []
        return {"Authorization": f"Bearer {issue_token(self.settings, user_id, roles)}"}

    def client(self, op: Op) -> httpx.AsyncClient:
        return self.instances[op.die(7, len(self.instances))].client

    def judge(self, kind: str, response: httpx.Response, *, gateway: bool = False,
              allowed: frozenset[int] = frozenset()) -> bool:
        """Tally the answer; True if it is a success. A refusal the contract allows is not a violation."""
        label = answer_label(response)
        self.tally.answers[(kind, label)] += 1
        status = response.status_code
        if status < 400:
            return True
        if status in REFUSALS or status in allowed or (gateway and label == "502 GATEWAY_ERROR"):
            return False
        self.tally.violations.append(
            f"{kind}: {response.request.method} {response.request.url.path} -> {status}: {response.text[:400]}")
        return False

    def skipped(self, kind: str) -> None:
        self.tally.answers[(kind, "nothing to act on")] += 1

    async def pick(self, stmt: Select[Any], die: int) -> Any | None:
        """One row of `stmt` (ordered, as the statement says), chosen by `die`; None when there is none."""
        async with self.rt.db.unit_of_work() as session:
            rows = (await session.execute(stmt)).all()
        return rows[die % len(rows)] if rows else None

    async def post(self, op: Op, path: str, user: str, body: dict[str, Any] | None = None, *,
                   gateway: bool = False, allowed: frozenset[int] = frozenset()) -> dict[str, Any] | None:
        """POST as `user`; twice at once with one Idempotency-Key when the operation says so (then at most
        one request may act, and every success must answer the same object). Returns the object made."""
        headers = self.headers(user)
        if not op.twice:
            response = await self.client(op).post(path, headers=headers, json=body)
            return response.json() if self.judge(op.kind, response, gateway=gateway, allowed=allowed) else None
        headers["Idempotency-Key"] = f"bank-{self.seed}-{op.dice[6]}"
        first = op.die(7, len(self.instances))  # the two go to two instances when there are several
        clients = [self.instances[(first + n) % len(self.instances)].client for n in range(2)]
        responses = await asyncio.gather(*(http.post(path, headers=headers, json=body) for http in clients))
        made = [r for r in responses if self.judge(op.kind, r, gateway=gateway, allowed=allowed)]
        # a distribution's dry run writes nothing, so the key is not taken for it: both may compute it
        acted = [r for r in made if REPLAY_HEADER not in r.headers and not r.json().get("dry_run")]
        if len(acted) > 1 or len({str(r.json().get("id") or r.json().get("reference")) for r in made}) > 1:
            self.tally.violations.append(f"{op.kind}: one Idempotency-Key acted twice on {path}: "
                                         f"{[r.text[:200] for r in made]}")
        return made[0].json() if made else None

    # ---- setup

    async def setup(self) -> None:
        http, admin = self.home.client, self.headers(ADMIN)
        for spec in APPS:
            response = await http.put(f"/v1/apps/{spec.id}", headers=admin, json={
                "name": spec.id, "owner_id": spec.owner, "currency": CURRENCY, "share_price": spec.share_price,
                "total_shares": spec.total_shares, "approvers": list(spec.approvers),
                "required_approvals": spec.required_approvals, "lock_in_days": 0,
                "platform_fee_percentage": spec.platform_fee,
            })
            assert response.status_code == 200, response.text
        for spec in APPS:  # a milestone ready for releases from the start; the schedule adds more
            response = await http.post(f"/v1/apps/{spec.id}/milestones", headers=self.headers(spec.owner),
                                       json={"title": "prototype", "release_percentage": "20"})
            assert response.status_code == 201, response.text
            response = await http.post(f"/v1/milestones/{response.json()['id']}/complete",
                                       headers=self.headers(spec.owner), json={"evidence": "shipped"})
            assert response.status_code == 200, response.text
        for user in REGISTERED_AT_START:
            response = await http.put("/v1/payout-accounts/me", headers=self.headers(user),
                                      json=payout_account_body(user))
            assert response.status_code == 200, response.text

    # ---- operations

    async def invest(self, op: Op) -> None:
        spec = APPS[op.die(0, len(APPS))]
        investor = INVESTORS[op.die(1, len(INVESTORS))]
        body = {"payment_type": "investment", "app_id": spec.id, "email": f"{investor}@example.com",
                "currency": CURRENCY, "shares": 1 + op.die(2, spec.most_bought)}
        await self.pay(op, investor, body)

    async def pay_revenue(self, op: Op) -> None:
        spec = APPS[op.die(0, len(APPS))]
        body = {"payment_type": "revenue", "app_id": spec.id, "email": f"{spec.owner}@example.com",
                "currency": CURRENCY, "amount": f"{50 * (1 + op.die(1, 60))}.00",
                "period": PERIODS[op.die(2, len(PERIODS))]}
        await self.pay(op, spec.owner, body)

    async def buy_shares(self, op: Op) -> None:
        found = await self.pick(select(ShareTransfer.id, ShareTransfer.app_id, ShareTransfer.buyer_id)
                                .where(ShareTransfer.status == "pending").order_by(ShareTransfer.created_at,
                                                                                   ShareTransfer.id), op.dice[0])
        if found is None:
            return self.skipped(op.kind)
        transfer_id, app_id, buyer = found
        body = {"payment_type": "share_transfer", "app_id": app_id, "email": f"{buyer}@example.com",
                "currency": CURRENCY, "share_transfer_id": transfer_id}
        await self.pay(op, buyer, body)

    async def pay(self, op: Op, payer: str, body: dict[str, Any]) -> None:
        """Ask for a payment, settle it at the sandbox's checkout as the customer chooses, and maybe ask
        the service to verify it at once (the webhook also comes, in the background)."""
        payment = await self.post(op, "/v1/payments", payer, body, gateway=True)
        if payment is None:
            return
        outcome = CHECKOUT_OUTCOMES[op.die(3, len(CHECKOUT_OUTCOMES))]
        if outcome == "unpaid":
            return
        checkout = await self.home.client.post(payment["payment_url"], data={"outcome": outcome})
        if checkout.status_code not in (200, 303):
            self.tally.violations.append(f"{op.kind}: checkout -> {checkout.status_code}: {checkout.text[:200]}")
        if op.die(4, 2):
            response = await self.client(op).post(f"/v1/payments/{payment['reference']}/verify",
                                                  headers=self.headers(payer))
            self.judge(f"{op.kind}/verify", response, gateway=True, allowed=frozenset({402}))

    async def verify_payment(self, op: Op) -> None:
        found = await self.pick(select(Payment.reference, Payment.user_id).where(Payment.status == "pending")
                                .order_by(Payment.created_at, Payment.id), op.dice[0])
        if found is None:
            return self.skipped(op.kind)
        reference, payer = found
        response = await self.client(op).post(f"/v1/payments/{reference}/verify", headers=self.headers(payer))
        self.judge(op.kind, response, gateway=True, allowed=frozenset({402}))

    async def distribute(self, op: Op) -> None:
        spec = APPS[op.die(0, len(APPS))]
        body: dict[str, Any] = {"period": PERIODS[op.die(1, len(PERIODS))], "currency": CURRENCY}
        if op.die(2, 6) == 0:
            body["dry_run"] = True
        await self.post(op, f"/v1/apps/{spec.id}/distributions", ADMIN if op.die(3, 3) == 0 else spec.owner, body)

    async def add_milestone(self, op: Op) -> None:
        spec = APPS[op.die(0, len(APPS))]
        percentage = MILESTONE_PERCENTAGES[op.die(1, len(MILESTONE_PERCENTAGES))]
        await self.post(op, f"/v1/apps/{spec.id}/milestones", spec.owner,
                        {"title": f"{percentage}% more", "release_percentage": percentage})

    async def complete_milestone(self, op: Op) -> None:
        found = await self.pick(select(Milestone.id, Milestone.app_id).where(Milestone.status == "pending")
                                .order_by(Milestone.created_at, Milestone.id), op.dice[0])
        if found is None:
            return self.skipped(op.kind)
        milestone_id, app_id = found
        await self.post(op, f"/v1/milestones/{milestone_id}/complete", APP_BY_ID[app_id].owner,
                        {"evidence": "shipped"})

    async def request_release(self, op: Op) -> None:
        found = await self.pick(select(Milestone.id, Milestone.app_id, Milestone.release_percentage)
                                .where(Milestone.status.in_(("completed", "released")))
                                .order_by(Milestone.created_at, Milestone.id), op.dice[0])
        if found is None:
            return self.skipped(op.kind)
        milestone_id, app_id, hundredths = found
        body: dict[str, Any] = {"milestone_id": milestone_id}
        if op.die(1, 2) == 0:
            deposit = await self.pick(self.deposits().where(EscrowTransaction.app_id == app_id), op.dice[2])
            if deposit is not None:
                body["transaction_id"] = deposit.id
        if op.die(3, 4) == 0:
            body["release_percentage"] = f"{hundredths // 2 / 100:.2f}"
        await self.post(op, "/v1/escrow/releases", APP_BY_ID[app_id].owner, body)

    async def decide_release(self, op: Op) -> None:
        found = await self.pick(select(ReleaseRequest.id, ReleaseRequest.app_id)
                                .where(ReleaseRequest.status == "pending_approval")
                                .order_by(ReleaseRequest.created_at, ReleaseRequest.id), op.dice[0])
        if found is None:
            return self.skipped(op.kind)
        release_id, app_id = found
        deciders = [*APP_BY_ID[app_id].approvers, ADMIN]
        decision = "reject" if op.die(2, 10) == 0 else "approve"
        await self.post(op, f"/v1/escrow/releases/{release_id}/approvals", deciders[op.die(1, len(deciders))],
                        {"decision": decision})

    async def execute_release(self, op: Op) -> None:
        any_release = op.die(1, 4) == 0  # now and then one that is not (or no longer) approved
        stmt = select(ReleaseRequest.id).order_by(ReleaseRequest.created_at, ReleaseRequest.id)
        found = await self.pick(stmt if any_release else stmt.where(ReleaseRequest.status == "approved"), op.dice[0])
        if found is None:
            return self.skipped(op.kind)
        await self.post(op, f"/v1/escrow/releases/{found.id}/execute", ADMIN)

    def deposits(self) -> Select[Any]:
        return (select(EscrowTransaction.id, EscrowTransaction.investor_id, EscrowTransaction.amount,
                       (EscrowTransaction.amount - EscrowTransaction.released - EscrowTransaction.refunded
                        - EscrowTransaction.frozen).label("available"))
                .where(EscrowTransaction.type == "deposit")
                .order_by(EscrowTransaction.created_at, EscrowTransaction.id))

    async def refund(self, op: Op) -> None:
        deposit = await self.pick(self.deposits(), op.dice[0])
        if deposit is None:
            return self.skipped(op.kind)
        body: dict[str, Any] = {"reason": "bank test"}
        share = op.die(1, 6)  # 0..1: all that remains; 2..4: part of what is free; 5: more than it holds
        if share == 5:
            body["amount"] = to_major(deposit.amount + 100, CURRENCY)
        elif share >= 2 and deposit.available >= 400:
            body["amount"] = to_major(deposit.available * (share - 1) // 4, CURRENCY)
        await self.post(op, f"/v1/escrow/transactions/{deposit.id}/refunds", ADMIN, body)

    async def open_dispute(self, op: Op) -> None:
        deposit = await self.pick(self.deposits(), op.dice[0])
        if deposit is None:
            return self.skipped(op.kind)
        body: dict[str, Any] = {"transaction_id": deposit.id, "reason": "not what was promised"}
        if op.die(1, 2) and deposit.available >= 200:
            body["amount"] = to_major(deposit.available // 2, CURRENCY)
        await self.post(op, "/v1/disputes", deposit.investor_id, body)

    async def resolve_dispute(self, op: Op) -> None:
        found = await self.pick(select(DisputeRow.id, DisputeRow.amount).where(DisputeRow.status == "open")
                                .order_by(DisputeRow.created_at, DisputeRow.id), op.dice[0])
        if found is None:
            return self.skipped(op.kind)
        outcome = ("refund", "partial_refund", "release", "dismiss")[op.die(1, 4)]
        body: dict[str, Any] = {"outcome": outcome, "note": "bank test"}
        if outcome == "partial_refund":
            body["amount"] = to_major(max(found.amount // 2, 1), CURRENCY)
        await self.post(op, f"/v1/disputes/{found.id}/resolve", ADMIN, body)

    async def offer_shares(self, op: Op) -> None:
        found = await self.pick(select(Holding.app_id, Holding.user_id, Holding.shares - Holding.reserved_shares)
                                .where(Holding.shares > Holding.reserved_shares)
                                .order_by(Holding.app_id, Holding.user_id), op.dice[0])
        if found is None:
            return self.skipped(op.kind)
        app_id, seller, free = found
        buyers = [user for user in INVESTORS if user != seller]
        shares = free + 1 if op.die(1, 8) == 0 else 1 + op.die(2, free)
        spec = APP_BY_ID[app_id]
        await self.post(op, "/v1/share-transfers", seller, {
            "app_id": app_id, "buyer_id": buyers[op.die(3, len(buyers))], "shares": shares,
            "price_per_share": spec.prices[op.die(4, len(spec.prices))]})

    async def cancel_offer(self, op: Op) -> None:
        found = await self.pick(select(ShareTransfer.id, ShareTransfer.seller_id, ShareTransfer.buyer_id)
                                .where(ShareTransfer.status == "pending")
                                .order_by(ShareTransfer.created_at, ShareTransfer.id), op.dice[0])
        if found is None:
            return self.skipped(op.kind)
        await self.post(op, f"/v1/share-transfers/{found.id}/cancel", (found.seller_id, found.buyer_id)[op.die(1, 2)])

    async def register_payout_account(self, op: Op) -> None:
        """A payee registers an account, or moves to another one while payouts may be on their way."""
        user = PAYEES[op.die(0, len(PAYEES))]
        response = await self.client(op).put("/v1/payout-accounts/me", headers=self.headers(user),
                                             json=payout_account_body(user, op.die(1, 3)))
        self.judge(op.kind, response, gateway=True)

    async def retry_payout(self, op: Op) -> None:
        found = await self.pick(select(Payout.id).where(Payout.status.in_(("failed", "reversed")))
                                .order_by(Payout.created_at, Payout.id), op.dice[0])
        if found is None:
            return self.skipped(op.kind)
        await self.post(op, f"/v1/payouts/{found.id}/retry", ADMIN)

    async def replay_webhook(self, op: Op) -> None:
        """Paystack sends an event again, late: a charge, transfer or refund as the gateway has it now."""
        sandbox = self.sandbox
        events = [("charge.success", tx.verify_data()) for tx in sandbox.transactions.values()
                  if tx.status == "success"]
        events += [(f"transfer.{t.status}", t.webhook_data()) for t in sandbox.transfer_history
                   if t.status in ("success", "failed", "reversed")]
        events += [(f"refund.{r.status}", r.webhook_data()) for r in sandbox.refunds.values() if r.status != "pending"]
        if not events:
            return self.skipped(op.kind)
        event, data = events[op.die(0, len(events))]
        body = json.dumps({"event": event, "data": data}, separators=(",", ":")).encode()
        key = self.settings.paystack_secret_key.get_secret_value()
        response = await self.client(op).post("/v1/webhooks/paystack", content=body, headers={
            "content-type": "application/json", "x-paystack-signature": sign(body, key)})
        self.judge(op.kind, response)

    async def worker(self, op: Op) -> None:
        """A pass of one instance's worker: each instance stands for a worker process too."""
        await run_worker_jobs(self.instances[op.die(0, len(self.instances))].runtime, reconcile=op.die(1, 3) == 0)
        self.tally.answers[(op.kind, "pass")] += 1

    async def audit(self, op: Op) -> None:
        """The integrity checks while everything else runs, which must never see a fault that is not
        there: the admin's, and readiness's cheap ones (its reachability checks depend on the machine)."""
        http = self.client(op)
        response = await http.get("/v1/admin/integrity", headers=self.headers(ADMIN))
        if self.judge(op.kind, response) and not response.json()["ok"]:
            failed = [c for c in response.json()["checks"] if not c["ok"]]
            self.tally.violations.append(f"audit: integrity failed mid-run: {failed}")
        ready = (await http.get("/readyz")).json()
        failed = [c for c in ready["checks"] if "integrity" in c["name"] and not c["ok"]]
        if failed:
            self.tally.violations.append(f"audit: /readyz failed mid-run: {failed}")

    # ---- running

    async def run_op(self, op: Op) -> None:
        try:
            await getattr(self, op.kind)(op)
        except Exception:  # an exception out of the service (or a job) is a defect, not a refusal
            self.tally.answers[(op.kind, "raised")] += 1
            self.tally.violations.append(f"{op.kind} raised: {traceback.format_exc(limit=8)}")

    async def run(self, schedule: Sequence[Step]) -> None:
        for index, step in enumerate(schedule):
            for fault in step.faults:
                getattr(self.sandbox.faults, fault.action)(**dict(fault.arguments))
                self.tally.faults[fault.label] += 1
            await asyncio.gather(*(self.run_op(op) for op in step.ops))
            await self.guards_hold(f"after step {index}")

    async def guards_hold(self, when: str) -> None:
        """Escrow, payable and revenue accounts never below zero; no deposit gives more than it holds."""
        async with self.rt.db.unit_of_work() as session:
            negative = (await session.execute(
                select(LedgerAccount.name, LedgerAccount.balance)
                .where(LedgerAccount.guarded.is_(True), LedgerAccount.balance < 0))).all()
            overdrawn = (await session.scalars(
                select(EscrowTransaction.id).where(
                    EscrowTransaction.type == "deposit",
                    EscrowTransaction.released + EscrowTransaction.refunded + EscrowTransaction.frozen
                    > EscrowTransaction.amount))).all()
        if negative or overdrawn:
            self.tally.violations.append(f"{when}: accounts below zero {negative}, deposits overdrawn {overdrawn}")

    async def drain(self) -> None:
        """No more faults; the worker (and time) go on until nothing waits: each round makes what waits
        for a later time due now, runs every job and the reconcilers, and lets the sandbox settle."""
        self.sandbox.faults.clear()
        for round_ in range(1, DRAIN_ROUNDS + 1):
            await self.sandbox.wait_idle(timeout=30)
            await self.fast_forward()
            await run_worker_jobs(self.rt, reconcile=True)
            await self.sandbox.wait_idle(timeout=30)
            left = await self.unsettled()
            self.tally.drain_rounds = round_
            if not left:
                return
        self.tally.violations.append(f"drain: still unsettled after {DRAIN_ROUNDS} rounds: {left}")

    async def fast_forward(self) -> None:
        """Whatever the worker would take up later (an inbox retry's backoff, a refund's next check) is due now."""
        now = utcnow()
        async with self.rt.db.unit_of_work() as session:
            await session.execute(update(WebhookEvent).where(WebhookEvent.status == "pending").values(available_at=now))
            await session.execute(update(Refund).where(Refund.status.in_(("pending", "unknown", "sent",
                                                                           "needs_attention")))
                                  .values(available_at=now))
            await session.execute(update(Payout).where(Payout.status == "pending").values(available_at=now))

    async def unsettled(self) -> dict[str, int]:
        """What still waits for the worker or the gateway: inbox events, refunds and payouts on their way,
        payments the gateway has settled and the service has not."""
        async with self.rt.db.unit_of_work() as session:
            events = await session.scalar(select(func.count()).select_from(WebhookEvent)
                                          .where(WebhookEvent.status.in_(("pending", "processing"))))
            refunds = await session.scalar(select(func.count()).select_from(Refund)
                                           .where(Refund.status.in_(("pending", "sending", "unknown", "sent"))))
            payouts = await session.scalar(
                select(func.count()).select_from(Payout)
                .outerjoin(PayoutAccount, PayoutAccount.user_id == Payout.user_id)
                .where((Payout.status == "processing") | ((Payout.status == "pending") & (
                    Payout.recipient_code.is_not(None) | PayoutAccount.id.is_not(None)))))
            pending = (await session.scalars(select(Payment.reference).where(Payment.status == "pending"))).all()
        charged = sum(1 for reference in pending if self.sandbox.transactions[reference].status != "ongoing")
        left = {"inbox events": events or 0, "refunds": refunds or 0, "payouts": payouts or 0,
                "payments settled at the gateway": charged}
        return {name: count for name, count in left.items() if count}


def payout_account_body(user: str, which: int = 0) -> dict[str, str]:
    """One of a user's resolvable accounts at Zenith Bank."""
    return {"bank_code": "057", "account_number": f"{10 * PAYEES.index(user) + which + 10:010d}", "currency": CURRENCY}


# ---- the checks ----------------------------------------------------------------------------------------


async def check_books(bank: Bank) -> None:
    """After the drain: the service's own checks, and the books against the gateway's own records."""
    tally, http, admin = bank.tally, bank.home.client, bank.headers(ADMIN)
    integrity = (await http.get("/v1/admin/integrity", headers=admin)).json()
    failed = [c for c in integrity["checks"] if not c["ok"]]
    tally.check("integrity", integrity["ok"] and not failed, f"{len(integrity['checks'])} checks; failed: {failed}")

    window = {"from": (bank.started_at - timedelta(days=1)).date().isoformat(),
              "to": datetime.now(UTC).date().isoformat()}
    reconciliation = await http.get("/v1/admin/reconciliation", headers=admin, params=window)
    body = reconciliation.json()
    tally.check("reconciliation", reconciliation.status_code == 200 and body.get("ok") is True,
                f"{window['from']}..{window['to']}: {body.get('differences', body)}")

    rt, sandbox = bank.rt, bank.sandbox
    async with rt.db.unit_of_work() as session:
        payments = (await session.scalars(select(Payment))).all()
        refunds = (await session.scalars(select(Refund))).all()
        payouts = (await session.scalars(select(Payout))).all()
        transfers = (await session.scalars(select(ShareTransfer))).all()
        credits = await _credits(session)
        deposits = (await session.scalars(select(EscrowTransaction).where(EscrowTransaction.type == "deposit"))).all()
        releases = (await session.execute(
            select(EscrowTransaction.deposit_id, func.sum(EscrowTransaction.amount), func.count())
            .where(EscrowTransaction.type == "release", EscrowTransaction.status == "completed",
                   EscrowTransaction.milestone_id.is_not(None))
            .group_by(EscrowTransaction.deposit_id))).all()
        promised = dict((await session.execute(
            select(Milestone.app_id, func.sum(Milestone.release_percentage)).group_by(Milestone.app_id))).all())
        balances = dict((await session.execute(select(LedgerAccount.name, LedgerAccount.balance))).all())
        owed_to_payees = await _owed_to_payees(session)
        holdings = (await session.scalars(select(Holding))).all()
        share_refunds = (await session.scalars(select(EscrowTransaction).where(
            EscrowTransaction.type == "refund", EscrowTransaction.shares > 0))).all()
    tally.final_state = {name: Counter(row.status for row in rows) for name, rows in (
        ("payments", payments), ("refunds", refunds), ("payouts", payouts), ("share transfers", transfers))}
    charges_credited_once(tally, payments, credits, transfers, refunds, sandbox)
    refunds_sent_at_most_once(tally, refunds, sandbox)
    refunds_within_charges(tally, payments, refunds)
    reserved_shares_match(tally, holdings, transfers, share_refunds)
    transfers_sent_at_most_once(tally, payouts, sandbox)
    payouts_once_per_obligation(tally, payouts, credits)
    releases_within_milestones(tally, deposits, releases, promised)
    gateway_money_conserved(tally, balances, sandbox)
    tally.check("payable_accounts_hold_what_is_owed",
                all(balances.get(name, 0) == owed for name, owed in owed_to_payees.items())
                and all(balance == owed_to_payees.get(name, 0) for name, balance in balances.items()
                        if name.startswith("payable:")),
                str({name: (balances.get(name, 0), owed) for name, owed in owed_to_payees.items()
                     if balances.get(name, 0) != owed}))
    await _escrow_and_shares_as_the_api_shows(bank)


@dataclass(frozen=True)
class Credit:
    """A journal entry that credits a charge (`deposit:`, `revenue:` or `share_sale:`) or owes a payee
    (`release:`, `share_sale:`, `distribution:`): its key and its postings by account."""

    key: str
    legs: dict[str, int]


async def _credits(session: Any) -> dict[str, Credit]:
    rows = (await session.execute(
        select(JournalEntry.idempotency_key, LedgerAccount.name, func.sum(Posting.amount))
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(JournalEntry.kind.in_(("deposit", "revenue", "share_sale", "release", "distribution")))
        .group_by(JournalEntry.idempotency_key, LedgerAccount.name))).all()
    legs: dict[str, dict[str, int]] = defaultdict(dict)
    for key, account, amount in rows:
        legs[key][account] = int(amount)
    return {key: Credit(key, by_account) for key, by_account in legs.items()}


def charges_credited_once(tally: Tally, payments: Sequence[Payment], credits: dict[str, Credit],
                           transfers: Sequence[ShareTransfer], refunds: Sequence[Refund], sandbox: Sandbox) -> None:
    """Every charge the gateway took is applied once: credited (deposit, revenue or share sale, for its
    whole amount) or, when it could no longer buy what it was for, refunded in full instead; a charge
    the gateway did not take is not."""
    gateway = accounts.gateway(CURRENCY)
    sale_of = {t.payment_id: t.id for t in transfers if t.payment_id}
    # a charge that could not buy what it was for is refunded in full (a failed refund leaves it owed to the payer)
    returned = Counter(r.payment_id for r in refunds if r.escrow_transaction_id is None)
    wrong = []
    for payment in payments:
        keys = [key for key in (f"deposit:{payment.reference}", f"revenue:{payment.reference}",
                                f"share_sale:{sale_of.get(payment.id)}") if key in credits]
        charged_here = payment.status in ("success", "partially_refunded", "refunded")
        charged_there = sandbox.transactions[payment.reference].status == "success"
        applied = len(keys) + returned[payment.id]
        amounts_right = all(credits[key].legs.get(gateway) == -payment.amount for key in keys)
        if charged_here != charged_there or applied != (1 if charged_here else 0) or not amounts_right:
            wrong.append({"reference": payment.reference, "status": payment.status,
                          "gateway": sandbox.transactions[payment.reference].status, "credits": keys,
                          "refunded_instead": returned[payment.id]})
    charged = sum(1 for p in payments if p.status in ("success", "partially_refunded", "refunded"))
    tally.check("each_charge_credited_once", not wrong, f"{charged} charges of {len(payments)} payments; {wrong[:10]}")


def refunds_sent_at_most_once(tally: Tally, refunds: Sequence[Refund], sandbox: Sandbox) -> None:
    """The gateway holds at most one refund per refund of ours (found by the id in its merchant note),
    none that is not ours, and one for each refund of ours it processed."""
    at_gateway = Counter(refund_id_in_note(r.merchant_note) for r in sandbox.refunds.values())
    ours = {r.id for r in refunds}
    twice = {refund_id: n for refund_id, n in at_gateway.items() if n > 1}
    strays = [refund_id for refund_id in at_gateway if refund_id not in ours]
    lost = [r.id for r in refunds if r.status == "processed" and at_gateway[r.id] != 1]
    tally.check("each_refund_sent_at_most_once", not (twice or strays or lost),
                f"{len(sandbox.refunds)} at the gateway for {len(refunds)} of ours; sent twice {twice}, "
                f"not ours {strays}, processed here but not there {lost}")


def refunds_within_charges(tally: Tally, payments: Sequence[Payment], refunds: Sequence[Refund]) -> None:
    """No charge is refunded beyond what it took, and a payment's refunded amount and status say what its
    processed refunds add up to."""
    asked: Counter[str] = Counter()
    processed: Counter[str] = Counter()
    for refund in refunds:
        if refund.status != "failed":
            asked[refund.payment_id] += refund.amount
        if refund.status == "processed":
            processed[refund.payment_id] += refund.amount
    wrong = []
    for payment in payments:
        done = processed[payment.id]
        status = "refunded" if done >= payment.amount else "partially_refunded" if done else "success"
        status_wrong = payment.status in ("success", "partially_refunded", "refunded") and payment.status != status
        if asked[payment.id] > payment.amount or payment.refunded_amount != done or status_wrong:
            wrong.append({"reference": payment.reference, "amount": payment.amount, "status": payment.status,
                          "refunded_amount": payment.refunded_amount, "refunds_processed": done,
                          "refunds_asked": asked[payment.id]})
    tally.check("refunds_within_charges", not wrong, f"{len(refunds)} refunds; {wrong[:10]}")


def reserved_shares_match(tally: Tally, holdings: Sequence[Holding], transfers: Sequence[ShareTransfer],
                           share_refunds: Sequence[EscrowTransaction]) -> None:
    """A holding's reserved shares are those of its pending offers and of full refunds still on their way
    (which cancel the shares once processed); never more than it holds."""
    reserved: Counter[tuple[str, str]] = Counter()
    for transfer in transfers:
        if transfer.status == "pending":
            reserved[(transfer.app_id, transfer.seller_id)] += transfer.shares
    for record in share_refunds:
        if record.status == "pending":
            reserved[(record.app_id, record.investor_id)] += record.shares
    wrong = [{"app": h.app_id, "user": h.user_id, "shares": h.shares, "reserved": h.reserved_shares,
              "expected": reserved[(h.app_id, h.user_id)]}
             for h in holdings if not 0 <= h.reserved_shares == reserved[(h.app_id, h.user_id)] <= h.shares]
    tally.check("reserved_shares_match_offers_and_refunds", not wrong, f"{len(holdings)} holdings; {wrong[:10]}")


def transfers_sent_at_most_once(tally: Tally, payouts: Sequence[Payout], sandbox: Sandbox) -> None:
    """Per payout reference, every transfer the gateway made but the latest failed conclusively before the
    next was asked for (a retry), the latest agrees with the payout, and the gateway made no other transfer."""
    made: dict[str, list[str]] = defaultdict(list)
    for transfer in sandbox.transfer_history:
        made[transfer.reference].append(transfer.status)
    ours = {p.reference: p for p in payouts}
    wrong = []
    for reference, statuses in made.items():
        payout = ours.get(reference)
        earlier_failed = all(status in ("failed", "reversed") for status in statuses[:-1])
        paid_agrees = payout is not None and (payout.status == "paid") == (statuses[-1] == "success")
        if not (payout and earlier_failed and paid_agrees):
            wrong.append({"reference": reference, "transfers": statuses, "payout": payout and payout.status})
    unpaid = [p.reference for p in payouts if p.status == "paid" and p.reference not in made]
    tally.check("each_payout_sent_at_most_once", not (wrong or unpaid),
                f"{len(sandbox.transfer_history)} transfers for {len(payouts)} payouts; {wrong[:10]}; "
                f"paid here, never sent: {unpaid}")


PAYOUT_SOURCES = {"release": "release", "share_sale": "share_sale", "distribution": "distribution"}


def payouts_once_per_obligation(tally: Tally, payouts: Sequence[Payout], credits: dict[str, Credit]) -> None:
    """One payout per payee of each release, sale and distribution, for what that entry owed the payee."""
    per_obligation = Counter((p.reason, p.source_id, p.user_id) for p in payouts)
    repeated = {key: n for key, n in per_obligation.items() if n > 1}
    wrong = [
        {"payout": p.id, "reason": p.reason, "amount": p.amount,
         "owed": credits.get(f"{PAYOUT_SOURCES[p.reason]}:{p.source_id}", Credit("", {})).legs.get(
             accounts.payable(p.user_id, p.currency))}
        for p in payouts
        if credits.get(f"{PAYOUT_SOURCES[p.reason]}:{p.source_id}", Credit("", {})).legs.get(
            accounts.payable(p.user_id, p.currency)) != p.amount
    ]
    tally.check("one_payout_per_obligation", not (repeated or wrong),
                f"{len(payouts)} payouts; repeated {repeated}; amounts not owed {wrong[:10]}")


def releases_within_milestones(tally: Tally, deposits: Sequence[EscrowTransaction], releases: Sequence[Any],
                                promised: dict[str, int]) -> None:
    """Milestones never take more of a deposit than their percentages of its amount, but for the rounding
    of a release split over several deposits: under 1.5 minor units per release row. In whole numbers:
    2 x released x 10000 < 2 x amount x percentage (hundredths) + 3 x rows x 10000."""
    by_id = {d.id: d for d in deposits}
    over = []
    for deposit_id, released, rows in releases:
        deposit = by_id[deposit_id]
        percentage = int(promised.get(deposit.app_id, 0))
        if 2 * released * 10000 >= 2 * deposit.amount * percentage + 3 * rows * 10000:
            over.append({"deposit": deposit_id, "amount": deposit.amount, "released": int(released),
                         "milestone_hundredths": percentage})
    tally.check("releases_within_milestone_percentages", not over, f"{len(releases)} deposits released from; {over}")


def gateway_money_conserved(tally: Tally, balances: dict[str, int], sandbox: Sandbox) -> None:
    """What the books say the gateway holds for us is what the gateway's own records add up to: charges
    taken, less refunds processed and transfers paid (a transfer reversed after it was paid came back)."""
    charged = sum(tx.amount for tx in sandbox.transactions.values() if tx.status == "success")
    refunded = sum(r.amount for r in sandbox.refunds.values() if r.status == "processed")
    paid_out = sum(t.amount for t in sandbox.transfer_history if t.status == "success")
    at_gateway = charged - refunded - paid_out
    books = -balances.get(accounts.gateway(CURRENCY), 0)
    tally.check("gateway_money_matches_the_books", books == at_gateway,
                f"books {books}; gateway {at_gateway} = charged {charged} - refunded {refunded} - paid out {paid_out}")


async def _owed_to_payees(session: Any) -> dict[str, int]:
    """payable:user:* as the rows say it: payouts not sent or sent back, and refunds that failed back to
    the payer (a sold-out investment, a sale that could not complete)."""
    owed: dict[str, int] = defaultdict(int)
    for user, currency, amount in (await session.execute(
            select(Payout.user_id, Payout.currency, func.sum(Payout.amount))
            .where(Payout.status.in_(("pending", "failed", "reversed")))
            .group_by(Payout.user_id, Payout.currency))).all():
        owed[accounts.payable(user, currency)] += int(amount)
    for account, amount in (await session.execute(
            select(Refund.return_account, func.sum(Refund.amount))
            .where(Refund.status == "failed", Refund.return_account.like("payable:%"))
            .group_by(Refund.return_account))).all():
        owed[account] += int(amount)
    return dict(owed)


async def _escrow_and_shares_as_the_api_shows(bank: Bank) -> None:
    http, admin = bank.home.client, bank.headers(ADMIN)
    negative, shares_wrong = [], []
    for spec in APPS:
        for item in (await http.get(f"/v1/apps/{spec.id}/escrow", headers=admin)).json()["items"]:
            if any(item[name].startswith("-") for name in ("held", "frozen", "available", "deposited")):
                negative.append({spec.id: item})
        shown = (await http.get(f"/v1/apps/{spec.id}", headers=admin)).json()
        cap_table = (await http.get(f"/v1/apps/{spec.id}/cap-table", headers=admin)).json()
        held = sum(item["shares"] for item in cap_table["items"])
        if not (shown["shares_issued"] == cap_table["shares_issued"] == held <= spec.total_shares):
            shares_wrong.append({spec.id: {"issued": shown["shares_issued"], "held": held}})
    bank.tally.check("escrow_never_negative", not negative, str(negative))
    bank.tally.check("shares_issued_equal_holdings", not shares_wrong, str(shares_wrong))


# ---- one run, and what it prints ------------------------------------------------------------------------


async def run_bank(instances: list[Instance], settings: Settings, *, seed: int, operations: int,
                   max_batch: int = MAX_BATCH) -> Tally:
    bank = Bank(instances, settings, seed)
    schedule = plan_schedule(seed, operations, max_batch)
    started = time.perf_counter()
    await bank.setup()
    await bank.run(schedule)
    scheduled = time.perf_counter()
    await bank.drain()
    drained = time.perf_counter()
    await check_books(bank)
    bank.tally.timings = {"schedule": scheduled - started, "drain": drained - scheduled,
                          "checks": time.perf_counter() - drained}
    return bank.tally


def report(tally: Tally, *, seed: int, operations: int, engine: str) -> str:
    timings = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in tally.timings.items())
    lines = [f"bank: seed {seed}, {operations} operations, {engine}; {timings}; drained in {tally.drain_rounds} "
             f"round(s); replay with BANK_SEED={seed} BANK_OPS={operations}"]
    by_kind: dict[str, list[str]] = defaultdict(list)
    for (kind, label), count in sorted(tally.answers.items()):
        by_kind[kind].append(f"{label} x{count}")
    lines.append("operations by kind and answer:")
    lines += [f"  {kind:<28} {', '.join(labels)}" for kind, labels in sorted(by_kind.items())]
    lines.append(f"faults injected ({sum(tally.faults.values())}):")
    lines += [f"  {label:<48} x{count}" for label, count in sorted(tally.faults.items())]
    lines.append("after the drain:")
    lines += [f"  {name:<28} {', '.join(f'{status} x{n}' for status, n in sorted(counts.items()))}"
              for name, counts in tally.final_state.items()]
    lines.append("final checks:")
    lines += [f"  {'ok  ' if ok else 'FAIL'} {name}: {detail}" for name, ok, detail in tally.checks]
    lines.append(f"violations ({len(tally.violations)}):" if tally.violations else "violations: none")
    lines += [f"  {violation}" for violation in tally.violations[:30]]
    return "\n".join(lines)

