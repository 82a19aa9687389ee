"""The retry policy every client of the SDK follows.

Retried: HTTP 429 and gRPC RESOURCE_EXHAUSTED (over the plan's limit, or a
model's full queue), HTTP 503 and gRPC UNAVAILABLE (a worker draining, the
limits not checkable for a moment, the network). Nothing else: a 400, 401,
403 or 404 will not get better by sending it again. (A 401 is sent once
more with a freshly fetched token, which is not a retry of this policy.)

The wait before attempt n+1 is full jitter, a random time in
[0, min(max_delay, base_delay * 2**n)], so that clients refused together do
not come back together; after a 429 that carried `x-ratelimit-reset`
(seconds until the plan's window ends) it is that long plus the jitter,
never less. Attempts are bounded (max_attempts, the first included) and so
is the whole call (deadline seconds from its first attempt): a wait that
would end past the deadline is not started and the error is raised instead.

Written here rather than taken from a retry library: the wait depends on
the refused answer (its x-ratelimit-reset), the same policy drives gRPC
trailers, HTTP headers, threads, gevent and asyncio, and it is forty lines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Mapping

RATE_LIMITED = "rate_limited"
UNAVAILABLE = "unavailable"

_HTTP = {429: RATE_LIMITED, 503: UNAVAILABLE}
_GRPC = {"RESOURCE_EXHAUSTED": RATE_LIMITED, "UNAVAILABLE": UNAVAILABLE}


def http_kind(status: int) -> str | None:
    """RATE_LIMITED, UNAVAILABLE or None (not retried) for an HTTP status."""
    return _HTTP.get(status)


def grpc_kind(code_name: str) -> str | None:
    """The same for a gRPC status code's name (e.g. "RESOURCE_EXHAUSTED")."""
    return _GRPC.get(code_name)


def reset_seconds(headers: Mapping[str, str] | None) -> float | None:
    """x-ratelimit-reset (else retry-after) in seconds, when given as a number."""
    if not headers:
        return None
    for name in ("x-ratelimit-reset", "retry-after"):
        v = headers.get(name)
        if v is None:
            continue
        try:
            s = float(str(v).strip())
        except ValueError:
            continue
        if s >= 0:
            return s
    return None


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """max_attempts: attempts in all, the first included (1: no retry);
    deadline: seconds a call may take in all, waits included."""

    max_attempts: int = 10
    base_delay: float = 0.1
    max_delay: float = 5.0
    deadline: float = 60.0
    # The random source and clock, replaceable in tests.
    rand: Callable[[float, float], float] = dataclasses.field(default=random.uniform, repr=False, compare=False)
    clock: Callable[[], float] = dataclasses.field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be at least 1, not {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.deadline <= 0:
            raise ValueError("RetryPolicy: delays must be >= 0 and the deadline > 0")

    def backoff(self, attempt: int, reset: float | None = None) -> float:
        """The wait after the attempt-th failure (0 = the first attempt)."""
        jitter = self.rand(0.0, min(self.max_delay, self.base_delay * (2 ** min(attempt, 30))))
        return (reset or 0.0) + jitter

    def start(self) -> Attempts:
        return Attempts(self)


NO_RETRY = RetryPolicy(max_attempts=1)


class Attempts:
    """One call's attempts under a policy: `wait(kind, reset)` says how long
    to sleep before the next attempt, or None when none may follow."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.started = policy.clock()
        self.attempt = 0  # failures so far

    def next_wait(self, reset: float | None = None) -> float | None:
        p = self.policy
        self.attempt += 1
        if self.attempt >= p.max_attempts:
            return None
        w = p.backoff(self.attempt - 1, reset)
        if p.clock() + w - self.started > p.deadline:
            return None
        return w

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def describe(self) -> str:
        return f"after {self.attempt} attempt(s) in {self.policy.clock() - self.started:.1f} s"
