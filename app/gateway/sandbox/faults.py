"""Faults the sandbox injects on request, so the service's failure paths can be exercised."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal, get_args

# reversed_after_success: the transfer succeeds (transfer.success), then the receiving bank sends it
# back (transfer.reversed, `transferred_at` still set).
TransferOutcome = Literal["success", "failed", "reversed", "reversed_after_success"]
# needs-attention: Paystack needs the customer's bank details; the refund stays there until retried.
RefundOutcome = Literal["processed", "failed", "needs-attention"]

TRANSFER_OUTCOMES: tuple[TransferOutcome, ...] = get_args(TransferOutcome)
REFUND_OUTCOMES: tuple[RefundOutcome, ...] = get_args(RefundOutcome)


@dataclass(eq=False)
class CallFault:
    """What happens to the next `remaining` API calls whose path contains `path_contains`.

    `fail`: an error answer, and the call has no effect. The others let the call take effect and then
    spoil its answer, so that the caller cannot tell what happened: `timeout` holds it back for `delay`
    seconds, `error_after` answers `status` (5xx) with an error body, `malformed` answers 200 with a body
    that is not JSON.
    """

    kind: Literal["fail", "timeout", "error_after", "malformed"]
    remaining: int
    path_contains: str | None
    status: int = 500
    delay: float = 0.0

    def matches(self, path: str) -> bool:
        return self.path_contains is None or self.path_contains in path


class SandboxFaults:
    def __init__(self) -> None:
        self._calls: list[CallFault] = []
        self._transfer_outcomes: deque[TransferOutcome] = deque()
        self._refund_outcomes: deque[RefundOutcome] = deque()

    def fail_next(self, count: int = 1, *, status: int = 500, path_contains: str | None = None) -> None:
        """The next `count` matching API calls answer `status` with an error body and change nothing."""
        _check_count(count)
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        self._calls.append(CallFault("fail", count, path_contains, status=status))

    def timeout_next(self, count: int = 1, *, path_contains: str | None = None, delay: float = 30.0) -> None:
        """The next `count` matching API calls take effect, then their answer is held for `delay` seconds."""
        _check_count(count)
        if delay < 0:
            raise ValueError("delay must not be negative")
        self._calls.append(CallFault("timeout", count, path_contains, delay=delay))

    def error_after_next(self, count: int = 1, *, status: int = 500, path_contains: str | None = None) -> None:
        """The next `count` matching API calls take effect, then answer `status` (5xx) with an error body."""
        _check_count(count)
        if not 500 <= status <= 599:
            raise ValueError("status must be a server error status (500-599): a 4xx says the call had no effect")
        self._calls.append(CallFault("error_after", count, path_contains, status=status))

    def malformed_next(self, count: int = 1, *, path_contains: str | None = None) -> None:
        """The next `count` matching API calls take effect, then answer 200 with a body that is not JSON."""
        _check_count(count)
        self._calls.append(CallFault("malformed", count, path_contains))

    def transfer_outcome_next(self, outcome: TransferOutcome, count: int = 1) -> None:
        _check_count(count)
        if outcome not in TRANSFER_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(TRANSFER_OUTCOMES)}")
        self._transfer_outcomes.extend([outcome] * count)

    def refund_outcome_next(self, outcome: RefundOutcome, count: int = 1) -> None:
        _check_count(count)
        if outcome not in REFUND_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(REFUND_OUTCOMES)}")
        self._refund_outcomes.extend([outcome] * count)

    def clear(self) -> None:
        self._calls.clear()
        self._transfer_outcomes.clear()
        self._refund_outcomes.clear()

    def take_call_fault(self, path: str) -> CallFault | None:
        """The oldest fault that applies to this call, used up by one."""
        for fault in self._calls:
            if fault.matches(path):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._calls.remove(fault)
                return fault
        return None

    def take_transfer_outcome(self) -> TransferOutcome:
        return self._transfer_outcomes.popleft() if self._transfer_outcomes else "success"

    def take_refund_outcome(self) -> RefundOutcome:
        return self._refund_outcomes.popleft() if self._refund_outcomes else "processed"


def _check_count(count: int) -> None:
    if count < 1:
        raise ValueError("count must be at least 1")
