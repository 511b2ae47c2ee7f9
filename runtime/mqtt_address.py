"""Broker addresses, TLS, naming rules, presence envelopes and the client of the MQTT bus."""

from __future__ import annotations

import ipaddress
import ssl
import sys
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from protocols import BROADCAST, Control, Envelope, seal
from runtime.bus import topic_for

log = structlog.get_logger()

SESSION_EXPIRY_S = 600
"""How long the broker keeps our session (subscriptions, queued QoS 1) while we are away."""


class BusConnectionError(ConnectionError):
    """The broker could not be reached, or refused our credentials or a subscription."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is, from `mqtt://[user:pass@]host[:port]` or `mqtts://...`."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"broker url {url!r} is not mqtt://host:port or mqtts://host:port")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:
        """The URL without credentials, for logs and errors."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def check_level(what: str, value: str) -> None:
    """A run id or agent name must be one plain topic level, or filters would go astray."""
    if not value or set(value) & set("/#+"):
        raise ValueError(f"{what} {value!r} must be non-empty without '/', '#' or '+'")


def check_login(address: BrokerAddress, username: str | None, *, tls: bool,
                required: bool) -> None:
    """Refuse to start without a login when one is `required`; warn of a password in clear.

    Raises:
        BusConnectionError: `required` and no user name is given.
    """
    if username is None:
        if required:
            raise BusConnectionError(f"{address} needs a login here (auth is required): use "
                                     "mqtt://USER:PASS@HOST:PORT or per-agent credentials")
        return
    if not tls and not _loopback(address.host):
        log.warning("mqtt_login_in_clear", broker=str(address), hint="use mqtts://")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may be anywhere
        return False


def refused(code: object) -> bool:
    """A SUBACK code that is a failure (v5 ReasonCode or v3.1.1 int, >= 0x80)."""
    value = code.value if isinstance(code, ReasonCode) else code
    return isinstance(value, int) and value >= 0x80


def tls_context(tls: ssl.SSLContext | bool | None, url_says_tls: bool) -> ssl.SSLContext | None:
    """The TLS context to use: the one given, a default one, or none."""
    if isinstance(tls, ssl.SSLContext):
        return tls
    if tls or (tls is None and url_says_tls):
        return ssl.create_default_context()
    return None


def presence_envelope(
    run: str, agent: str, command: Literal["hello", "bye", "offline"], detail: str = ""
) -> Envelope:
    """Control `command` from `agent` to all: hello on connect, bye on close, offline as will."""
    return seal(Control(command=command, detail=detail), run=run, episode=0, step=0,
                sender=agent, recipient=BROADCAST)  # fmt: skip


def persistent_client(
    address: BrokerAddress,
    identifier: str,
    *,
    credentials: tuple[str | None, str | None],
    tls: ssl.SSLContext | None,
    will: Envelope | None,
    max_inflight: int,
) -> aiomqtt.Client:
    """An MQTT 5 client that resumes its session (`identifier`) at every connection.

    Never clean_start: Mosquitto (2.0) does not save the session of a client
    that is connected with clean_start when it stops, so a restart would lose
    what it queued for us. A fresh client id has no old session anyway; an old
    session of a reused id only yields messages no subscription of ours matches.

    Args:
        address: The broker.
        identifier: MQTT client id, which names the session.
        credentials: User name and password, or Nones.
        tls: TLS context, or None for plain TCP.
        will: What the broker publishes (QoS 1) if the connection dies uncleanly.
        max_inflight: QoS 1 publishes paho sends before their PUBACKs; the caller's
            window bounds the publish calls, so aiomqtt's warning about many
            pending calls is off.
    """
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = SESSION_EXPIRY_S
    last_will = None if will is None else aiomqtt.Will(topic_for(will), will.to_json(), qos=1)
    client = aiomqtt.Client(
        address.host, address.port, username=credentials[0], password=credentials[1],
        identifier=identifier, protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
        properties=properties, will=last_will, tls_context=tls, max_inflight_messages=max_inflight,
    )  # fmt: skip
    client.pending_calls_threshold = sys.maxsize
    return client


def not_listening(error: Exception) -> bool:
    """Whether nothing listened at the broker's address (aiomqtt keeps only the text)."""
    return not isinstance(error, aiomqtt.MqttCodeError) and "Connection refused" in str(error)
