"""Background work: tracked asyncio tasks, and work held back until a request has been answered."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

Job = Callable[[], Coroutine[Any, Any, None]]
# Either starts a job now (TaskTracker.launch) or once the current request is answered (AfterResponse.launch).
Launch = Callable[[Job], object]


class TaskTracker:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._sleeping_until: dict[asyncio.Task[Any], float] = {}
        # One event per wait_idle call, made in the caller's loop: a Sandbox may outlive a loop (tests).
        self._waiters: set[asyncio.Event] = set()
        self._closed = False

    def launch(self, job: Job) -> asyncio.Task[None]:
        if self._closed:
            raise RuntimeError("the sandbox is closed")
        task = asyncio.get_running_loop().create_task(job())
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    async def sleep(self, delay: float) -> None:
        """asyncio.sleep, recorded so that wait_idle can skip work due after its deadline."""
        task = asyncio.current_task()
        if task is not None:
            self._sleeping_until[task] = asyncio.get_running_loop().time() + delay
            self._notify()
        try:
            await asyncio.sleep(delay)
        finally:
            if task is not None:
                self._sleeping_until.pop(task, None)

    async def wait_idle(self, within: float) -> None:
        """Return once no task is running or sleeping until a time before the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        changed = asyncio.Event()
        self._waiters.add(changed)
        try:
            while True:
                changed.clear()
                busy = [
                    task
                    for task in self._tasks
                    if task not in self._sleeping_until or self._sleeping_until[task] <= deadline
                ]
                if not busy:
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError(f"sandbox still busy after {within} s ({len(busy)} task(s))")
                try:
                    async with asyncio.timeout(remaining):
                        await changed.wait()
                except TimeoutError:
                    continue
        finally:
            self._waiters.discard(changed)

    async def aclose(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._sleeping_until.pop(task, None)
        self._notify()
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("sandbox background task failed", exc_info=error)

    def _notify(self) -> None:
        for waiter in self._waiters:
            waiter.set()


class AfterResponse:
    """Jobs a request starts only once it has been answered.

    The webhook receiver may be this same process, still inside the request that caused
    the event and holding a database lock: a delivery started earlier could wait on it.
    """

    def __init__(self, tracker: TaskTracker) -> None:
        self._tracker = tracker
        self._jobs: list[Job] = []

    def launch(self, job: Job) -> None:
        self._jobs.append(job)

    def release(self) -> None:
        jobs, self._jobs = self._jobs, []
        for job in jobs:
            self._tracker.launch(job)
