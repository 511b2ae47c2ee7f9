"""Broker addresses, TLS and naming rules of the MQTT bus."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from paho.mqtt.reasoncodes import ReasonCode


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
