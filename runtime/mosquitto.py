"""A private Mosquitto broker process: its own port, config and data directory.

Tests and benchmarks never mock the broker: they start a real `mosquitto` with the
options they need (persistence, users, ACL, TLS), or from a config file such as the one
`parley broker-config` writes, and stop, kill, restart or reload it mid-run.

    with Mosquitto(persistence=True) as broker:
        bus = MqttBus("run", broker.url)
        broker.restart()

Tests import it (`from runtime.mosquitto import Mosquitto`); tests/runtime/conftest.py
wraps it in the `mosquitto` and `mosquitto_factory` fixtures.
"""

from __future__ import annotations

import getpass
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

_SEARCH_PATH = "/usr/sbin:/usr/local/sbin:/usr/bin:/usr/local/bin"


def find_tool(name: str) -> str | None:
    """Path of a mosquitto tool (the broker lives in sbin, often off the PATH)."""
    return shutil.which(name) or shutil.which(name, path=_SEARCH_PATH)


MOSQUITTO = find_tool("mosquitto")
MOSQUITTO_PASSWD = find_tool("mosquitto_passwd")
MOSQUITTO_PUB = find_tool("mosquitto_pub")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Mosquitto:
    """One mosquitto process on 127.0.0.1 with a config written to a temp dir.

    Args:
        persistence: Save sessions and queued QoS 1 messages to disk, so they survive
            `restart()` (mosquitto writes its database on a clean stop).
        users: username -> password; when given, anonymous clients are refused.
        acl: Text of an ACL file (mosquitto `acl_file` syntax).
        tls: (certfile, keyfile) to serve TLS instead of plain TCP.
        port: Port to listen on; a free one by default. Kept across restarts.
        config: A mosquitto.conf to start from instead (the options above are then
            unused); the port is that of its first `listener`.
    """

    def __init__(
        self,
        *,
        persistence: bool = False,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        tls: tuple[Path, Path] | None = None,
        port: int | None = None,
        config: Path | None = None,
    ) -> None:
        if MOSQUITTO is None:
            raise RuntimeError("mosquitto is not installed")
        self.source = config
        self.port = _listener_port(config) if config else port or free_port()
        self.host = "127.0.0.1"
        self.persistence = persistence
        self.users = dict(users or {})
        self.acl = acl
        self.tls = tls
        self._tmp = tempfile.TemporaryDirectory(prefix="parley-mosquitto-")
        self.dir = Path(self._tmp.name)
        self.config = self.dir / "mosquitto.conf"
        self.log_file = self.dir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def url(self) -> str:
        """`mqtt://127.0.0.1:<port>` (`mqtts://` with TLS), without credentials."""
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"

    def url_for(self, username: str, password: str) -> str:
        """The broker URL with credentials in it."""
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{username}:{password}@{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _write_config(self) -> None:
        if self.source is not None:
            # As given, but logging to our file: by default mosquitto logs to stderr,
            # which nobody reads while it runs (a full pipe would stall it).
            text = self.source.read_text()
            self.config.write_text(f"{text}\nlog_dest file {self.log_file}\n")
            return
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'false' if self.users else 'true'}",
            # Started as root, mosquitto would drop to a `mosquitto` user that cannot
            # write our temp dir; stay whoever we are.
            f"user {getpass.getuser()}",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 10000",
        ]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.dir}/"]
        if self.users:
            lines.append(f"password_file {self._write_passwords()}")
        if self.acl is not None:
            acl_file = self.dir / "acl"
            acl_file.write_text(self.acl)
            lines.append(f"acl_file {acl_file}")
        if self.tls is not None:
            certfile, keyfile = self.tls
            lines += [f"certfile {certfile}", f"keyfile {keyfile}"]
        self.config.write_text("\n".join(lines) + "\n")

    def _write_passwords(self) -> Path:
        if MOSQUITTO_PASSWD is None:
            raise RuntimeError("mosquitto_passwd is not installed")
        path = self.dir / "passwords"
        path.touch()
        for username, password in self.users.items():
            subprocess.run(
                [MOSQUITTO_PASSWD, "-b", str(path), username, password],
                check=True,
                capture_output=True,
            )
        return path

    def start(self, timeout: float = 5.0) -> None:
        """Start the broker and wait until it accepts TCP connections."""
        if self.running:
            return
        assert MOSQUITTO is not None
        self._process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self._failure()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def _failure(self) -> str:
        pipe = self._process.stderr if self._process else None
        stderr = pipe.read().decode() if pipe else ""
        log = self.log_file.read_text() if self.log_file.exists() else ""
        return (stderr + log).strip()[-2000:]

    def stop(self, timeout: float = 5.0) -> None:
        """Stop cleanly (SIGTERM): mosquitto saves its persistence database first."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Stop abruptly (SIGKILL): nothing is saved."""
        self._end(signal.SIGKILL, 5.0)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def restart(self, users: Mapping[str, str] | None = None) -> None:
        """Clean stop, then start again on the same port with the same data.

        Args:
            users: New users and passwords to start with, replacing the old ones.
        """
        self.stop()
        if users is not None:
            self.users = dict(users)
            self._write_config()
        self.start()

    def reload(self, users: Mapping[str, str] | None = None) -> None:
        """Make the running broker re-read its config, passwords and ACL (SIGHUP).

        Args:
            users: Passwords to set first (a user not named keeps its own).
        """
        if users is not None:
            self.users = dict(users)
            self._write_config()
        assert self._process is not None, "the broker is not running"
        self._process.send_signal(signal.SIGHUP)

    def log(self) -> str:
        """What the broker has logged so far (errors, warnings, notices)."""
        return self.log_file.read_text() if self.log_file.exists() else ""

    def close(self) -> None:
        """Stop the broker and delete its directory."""
        self.kill()
        self._tmp.cleanup()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MosquittoFactory:
    """Starts brokers on demand and closes every one of them at the end (a fixture's body)."""

    def __init__(self) -> None:
        self._brokers: list[Mosquitto] = []

    def __call__(
        self,
        *,
        persistence: bool = False,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        tls: tuple[Path, Path] | None = None,
        config: Path | None = None,
    ) -> Mosquitto:
        broker = Mosquitto(persistence=persistence, users=users, acl=acl, tls=tls, config=config)
        self._brokers.append(broker)
        broker.start()
        return broker

    def close(self) -> None:
        for broker in self._brokers:
            broker.close()
        self._brokers.clear()


def _listener_port(config: Path) -> int:
    found = re.search(r"^listener\s+(\d+)", config.read_text(), re.MULTILINE)
    if found is None:
        raise ValueError(f"{config} has no listener line")
    return int(found.group(1))
