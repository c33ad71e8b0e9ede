"""What a request or a job needs besides its session: settings, database, gateway, cipher."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.batching import GroupCommit
from app.core.config import Settings
from app.core.crypto import FieldCipher
from app.core.db import Database
from app.gateway.client import PaystackClient


@dataclass
class Runtime:
    settings: Settings
    db: Database
    gateway: PaystackClient
    cipher: FieldCipher
    # set when the in-process worker runs: wakes it as soon as there is work
    work_available: asyncio.Event = field(default_factory=asyncio.Event)
    _group_commits: dict[str, GroupCommit[Any]] = field(default_factory=dict)

    def notify_worker(self) -> None:
        self.work_available.set()

    def group_commit(
        self,
        name: str,
        work: Callable[[AsyncSession, list[Any]], Awaitable[list[Any]]],
        *,
        committed: Callable[[int], None] = lambda size: None,
    ) -> GroupCommit[Any]:
        """This runtime's group commit for one kind of job: made on first use, then shared by every caller."""
        commits = self._group_commits.get(name)
        if commits is None:
            commits = self._group_commits[name] = GroupCommit(self.db, work, committed=committed)
        return commits
