"""The retry policy the network collectors share: a bounded number of attempts, exponential backoff.

Every collector retries only what a retry can fix (a dropped connection, a timeout, a 5xx, a 429);
errors a person must fix (wrong host key, wrong password, 404) fail at once with a clear message.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import wait_exponential

from formats import Section


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # including the first try
    initial_seconds: float = 1.0  # first backoff; doubles on each retry
    max_seconds: float = 30.0  # cap on a single backoff wait

    def wait(self) -> wait_exponential:
        return wait_exponential(multiplier=self.initial_seconds, min=self.initial_seconds, max=self.max_seconds)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return min(self.max_seconds, self.initial_seconds * 2 ** (attempt - 1))


def read_retry(connection: Section) -> RetryPolicy:
    """`connection.retry` of the sources file: {max_attempts, initial_seconds, max_seconds}."""
    section = connection.section("retry")
    policy = RetryPolicy(max_attempts=section.count("max_attempts", 5),
                         initial_seconds=section.positive("initial_seconds", 1.0),
                         max_seconds=section.positive("max_seconds", 30.0))
    section.done()
    return policy
