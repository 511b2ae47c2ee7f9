"""When MqttBus tries its broker again: the first connection, and after a lost one."""

from __future__ import annotations

from runtime.mqtt_address import not_listening

BACKOFF_S = (0.05, 2.0)
"""First and longest wait between reconnection attempts."""
FIRST_CONNECT_S = 5.0
"""How long the first connection is retried while nothing listens at the broker's
address (a broker starting or restarting); a refusal by the broker is final at once."""


class Retry:
    """The wait before the next connection attempt, doubling from BACKOFF_S[0] to
    BACKOFF_S[1] while attempts fail and back to the start once a connection holds."""

    def __init__(self, now: float) -> None:
        self.give_up_at = now + FIRST_CONNECT_S
        self.delay = BACKOFF_S[0]
        self.attempts = 0

    def first_connection_ends(self, error: Exception, now: float) -> bool:
        """Whether a failed first connection is final: anything but a broker not
        listening yet, or the first `FIRST_CONNECT_S` are over."""
        return not not_listening(error) or now >= self.give_up_at

    def failed_again(self) -> int:
        """One more failed attempt; their count since the last connection."""
        self.attempts += 1
        self.delay = min(self.delay * 2, BACKOFF_S[1])
        return self.attempts

    def reset(self) -> None:
        """A connection held: the next loss starts waiting from the shortest delay."""
        self.delay, self.attempts = BACKOFF_S[0], 0
