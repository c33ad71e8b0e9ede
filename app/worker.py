"""Background work: the webhook inbox, refunds to send and to settle from the gateway's records, payouts,
the reconcilers, and the periodic reconciliation of the books with the gateway's records.

Runs inside the API process by default (`WORKER_IN_PROCESS=true`), or as its own
processes with `python -m app worker` (`python -m app.worker` is the same command); PostgreSQL's SKIP LOCKED
lets several workers share the queues without doing anything twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Sequence

from app import wiring
from app.core.config import get_settings
from app.core.logging import configure_logging
from app.events import delivery
from app.runtime import Runtime, build_runtime, freeze_long_lived_objects
from app.wiring import Job

log = logging.getLogger(__name__)

RECONCILE_EVERY_SECONDS = 60.0
# The loop of outbound deliveries runs at most this often: each round costs a few queries and each endpoint's
# lane a few transactions, so under a burst a round gathers events instead of sending each in a round of its own.
DELIVERY_ROUND_SECONDS = 0.25


class Worker:
    def __init__(self, rt: Runtime, jobs: Sequence[Job] = wiring.JOBS) -> None:
        self.rt = rt
        self.jobs = jobs
        self._last_reconcile = 0.0
        self._lock = asyncio.Lock()

    async def run_once(self) -> int:
        """One pass over every queue; returns how much work was done."""
        async with self._lock:
            done = 0
            for job in self.jobs:
                try:
                    done += await job(self.rt)
                except Exception:  # one broken job must not stop the others
                    log.exception("job %s failed", getattr(job, "__name__", job))
            if time.monotonic() - self._last_reconcile >= RECONCILE_EVERY_SECONDS:
                self._last_reconcile = time.monotonic()
                for reconcile in wiring.RECONCILERS:
                    try:
                        done += await reconcile(self.rt)
                    except Exception:
                        log.exception("reconciler %s failed", reconcile.__name__)
            return done

    async def drain(self, max_rounds: int = 100) -> None:
        """Run until there is nothing left to do now (tests and shutdown use this)."""
        for _ in range(max_rounds):
            if await self.run_once() == 0:
                return

    async def run_forever(self, stop: asyncio.Event) -> None:
        # Its own task: listing a day of the gateway's records must not hold up the queues.
        reconciler = asyncio.create_task(self._reconcile_with_gateway(stop), name="gateway reconciliation")
        deliveries = asyncio.create_task(self._deliver_events_forever(stop), name="outbound event delivery")
        try:
            await self._drain_forever(stop)
        finally:
            for task in (reconciler, deliveries):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await delivery.stop(self.rt)  # webhook lanes run beside the passes

    async def _deliver_events_forever(self, stop: asyncio.Event) -> None:
        """Outbound events, every poll interval (DELIVERY_ROUND_SECONDS at least), beside the passes: a pass
        stays in the inbox job while a burst of webhooks lasts, and its own `deliver_events` would wait until
        then, events and all."""
        while not stop.is_set():
            try:
                await delivery.deliver_events(self.rt)
            except Exception:  # the next round tries again
                log.exception("outbound event delivery failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(self.rt.settings.worker_poll_interval_seconds, DELIVERY_ROUND_SECONDS)):
                    await stop.wait()

    async def _reconcile_with_gateway(self, stop: asyncio.Event) -> None:
        """Every RECONCILIATION_INTERVAL_SECONDS, the first one interval after the start (a worker
        that restarts does not ask the gateway for a day of records each time)."""
        interval = self.rt.settings.reconciliation_interval_seconds
        if not interval:
            return
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()
            if stop.is_set():
                return
            try:
                await wiring.GATEWAY_RECONCILIATION(self.rt)
            except Exception:  # the next run tries again
                log.exception("gateway reconciliation failed")

    async def _drain_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.rt.work_available.clear()
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.rt.settings.worker_poll_interval_seconds):
                    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self.rt.work_available.wait())]
                    try:
                        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for waiter in waiters:
                            waiter.cancel()


def lower_priority(niceness: int) -> None:
    """The worker's work is queued and its callers do not wait on it; the API's callers do (Paystack times a
    webhook out). Sharing two cores with the API, a worker at niceness 10 lowered the intake's p99 by 11-29% in
    four alternating pairs of runs (docs/performance.md)."""
    if niceness and hasattr(os, "nice"):  # os.nice is Unix's
        os.nice(niceness)


async def main(*, once: bool = False) -> None:
    """The worker as a process of its own: until SIGINT or SIGTERM, or (`once`) until nothing is left to do."""
    settings = get_settings()
    configure_logging(settings.log_level)
    lower_priority(settings.worker_niceness)
    rt = build_runtime(settings, wiring.EXTENSIONS)
    freeze_long_lived_objects()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker started", extra={"gateway_url": settings.gateway_base_url})
    try:
        if settings.is_sandbox and not await rt.gateway.reachable():
            # The sandbox lives in the API process: a worker pointed at another address leaves every webhook
            # unprocessed. Not fatal (the API may start after the worker), but said once, with what to change.
            log.warning("the sandbox gateway at %s does not answer: start the API there, or give this worker the "
                        "API's PORT (or PUBLIC_BASE_URL)", settings.gateway_base_url)
        worker = Worker(rt)
        await (worker.drain() if once else worker.run_forever(stop))
    finally:
        await rt.gateway.aclose()
        await rt.db.dispose()


if __name__ == "__main__":
    # The old module path, kept as an alias of `python -m app worker` (its options and `--help` included). Run,
    # not imported: the command line is the layer above this module.
    import runpy
    import sys

    sys.argv = ["python -m app.worker", "worker", *sys.argv[1:]]
    runpy.run_module("app", run_name="__main__", alter_sys=True)
