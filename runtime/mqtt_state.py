"""Where an MqttBus stands with its broker: four explicit states and the moves between them."""

from __future__ import annotations

import enum


class ConnectionState(enum.Enum):
    """The connection state of an MqttBus; it moves only along `TRANSITIONS`."""

    CLOSED = "closed"
    """Not opened yet, or closed: publish and subscribe are refused."""
    CONNECTING = "connecting"
    """No connection (first attempt, or retrying with backoff): publishes are buffered,
    new filters wait for the next connection."""
    CONNECTED = "connected"
    """Connected and subscribed, the buffer being flushed: new filters go to the broker,
    new publishes queue behind the buffer."""
    READY = "ready"
    """Connected and flushed: publishes go straight to the broker."""


_S = ConnectionState
TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    _S.CLOSED: frozenset({_S.CONNECTING}),
    _S.CONNECTING: frozenset({_S.CONNECTED, _S.CLOSED}),
    _S.CONNECTED: frozenset({_S.READY, _S.CONNECTING, _S.CLOSED}),
    _S.READY: frozenset({_S.CONNECTING, _S.CLOSED}),
}
"""Every state a bus may go to from each state; anything else is a bug (RuntimeError)."""


def check_transition(current: ConnectionState, target: ConnectionState) -> None:
    """RuntimeError unless a bus in state `current` may go to `target`."""
    if target not in TRANSITIONS[current]:
        raise RuntimeError(f"MqttBus cannot go from {current.name} to {target.name}")
