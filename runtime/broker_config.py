"""`parley broker-config`: a Mosquitto setup in which no client can speak for another.

Writes into `--out`:

- `mosquitto.conf`: a listener, no anonymous clients, persistence, the two files below,
  and commented TLS lines that say how to turn TLS on.
- `passwords`: one user per agent and one, `runner`, for the runner; random passwords,
  hashed by `mosquitto_passwd`.
- `acl`: each agent publishes only `parley/<run>/+/<agent>/+` (as itself) and reads only
  `parley/<run>/+/+/<agent>` and `parley/<run>/+/+/all`; the runner publishes only as
  `runner`. The topic's sender level is what receivers trust, so with this ACL a `stop`
  from `runner`, an agent's `offline` (last wills are checked too) or its actions and
  messages come from that login and from no one else.
- `credentials/`: owner-only JSON files, name -> `mqtt://user:pass@host:port`:
  `run.json` for `parley run` (the runner and the agents it hosts in its process, each
  of which logs in as itself), `<agent>.json` for each `parley agent`.
- `data/`: the broker's persistence database.

Broker settings a run needs, and why (all in the generated file):

- `persistence true` with a `persistence_location`: sessions (subscriptions and the QoS 1
  messages queued for a client that is away) survive a broker restart. Without it a
  restart loses what was queued for an agent or the runner: an action, an observation.
- `autosave_interval 30`: a clean stop saves everything; a crash loses what came after
  the last save and was not delivered yet, which is why a bus resends what the broker
  acknowledged in its last 2 s after a lost connection (`runtime.mqtt_outbox`). Saving
  on every change (`autosave_on_changes`) instead is too slow to keep up with a run.
- `max_queued_messages 10000`: what the broker keeps for a client that is away (the
  default 1000 can drop envelopes of a long outage).
- `allow_anonymous false`, `password_file`, `acl_file`: who may connect, publish and read.
- `retain_available false`: Parley never retains, and a retained forgery would greet
  every later subscriber.

Trade-off: the runner reads the whole run (`parley/<run>/#`), so that `--record` and
the live view see the agents' messages to each other. It hosts the environment and
sees every observation anyway; `--runner-reads own` limits it to its own inbox and
broadcasts, and taps then record only those.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog

from protocols import BROADCAST, RUNNER
from runtime.mqtt_address import BrokerAddress
from runtime.scenario import Scenario, load_scenario

log = structlog.get_logger()

_NAME = re.compile(r"^[\w.-]+$")
"""Names that are safe as a topic level, a user name, and in ACL and password files."""
_SEARCH_PATH = "/usr/sbin:/usr/local/sbin:/usr/bin:/usr/local/bin"


def register(commands: Any) -> None:
    """Add `broker-config` to `parley`'s sub-command parser."""
    config = commands.add_parser(
        "broker-config", help="a locked-down Mosquitto config: per-agent logins and an ACL")
    config.add_argument("scenario", type=Path)
    config.add_argument("--out", type=Path, required=True, help="folder to write into")
    config.add_argument("--run-id", help="the run id the ACL allows (default: scenario name)")
    config.add_argument("--host", default="127.0.0.1", help="broker host in the written URLs")
    config.add_argument("--port", type=int, default=1883)
    config.add_argument("--bind", default="127.0.0.1",
                        help="address the listener binds (0.0.0.0: all; then turn on TLS)")
    config.add_argument("--runner-reads", choices=["all", "own"], default="all",
                        help="all: the run's every topic (recording, live view); own: its inbox")
    config.set_defaults(handler=broker_config_command)


def broker_config_command(args: argparse.Namespace) -> int:
    """Write the files, then say how to start the broker, the runner and each agent."""
    scenario = load_scenario(args.scenario)
    run = args.run_id or scenario.name
    out: Path = args.out.resolve()
    write_broker_config(scenario, out, run=run, host=args.host, port=args.port,
                        bind=args.bind, runner_reads_all=args.runner_reads == "all")
    bus = f"--bus mqtt://{_host(args.host)}:{args.port} --run-id {run}"
    print(f"wrote {out}/mosquitto.conf, passwords, acl; logins (owner-only) in {out}/credentials")
    print(f"broker:  mosquitto -c {out}/mosquitto.conf")
    print(f"runner:  parley run {args.scenario} {bus} --credentials {out}/credentials/run.json")
    for name, spec in scenario.agents.items():
        if spec.remote:
            print(f"{name}:  parley agent {args.scenario} --agent {name} {bus} "
                  f"--credentials {out}/credentials/{name}.json")
    return 0


def write_broker_config(scenario: Scenario, out: Path, *, run: str, host: str = "127.0.0.1",
                        port: int = 1883, bind: str = "127.0.0.1",
                        runner_reads_all: bool = True) -> dict[str, str]:
    """Write config, passwords, ACL and credential files for one run of `scenario`.

    Returns:
        Every login: name (agents and `runner`) -> `mqtt://user:pass@host:port`.

    Raises:
        ValueError: a name that cannot be a user name, or one Parley reserves.
        FileNotFoundError: `mosquitto_passwd` is not installed.
    """
    agents = list(scenario.agents)
    _check_names(run, agents)
    out = out.resolve()
    for folder in (out, out / "credentials", out / "data"):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)  # the broker's database and the logins are nobody else's
    passwords = {name: secrets.token_urlsafe(24) for name in [RUNNER, *agents]}
    _hash_passwords(out / "passwords", passwords)
    (out / "acl").write_text(acl_text(run, agents, runner_reads_all=runner_reads_all))
    (out / "mosquitto.conf").write_text(config_text(out, port=port, bind=bind, host=host))
    urls = {name: login_url(name, password, host, port) for name, password in passwords.items()}
    local = [RUNNER, *(n for n, spec in scenario.agents.items() if not spec.remote)]
    _write_private(out / "credentials" / "run.json", _json({n: urls[n] for n in local}))
    for name in agents:
        _write_private(out / "credentials" / f"{name}.json", _json({name: urls[name]}))
    return urls


def acl_text(run: str, agents: Sequence[str], *, runner_reads_all: bool = True) -> str:
    """Mosquitto ACL: each login publishes only as itself and reads only what is its own."""
    root = f"parley/{run}"
    runner_reads = [f"{root}/#"] if runner_reads_all else [f"{root}/+/+/{RUNNER}",
                                                           f"{root}/+/+/{BROADCAST}"]
    lines = [f"# Parley run {run!r}: written by `parley broker-config`.",
             "# A topic's sender level is the publisher's login: no one speaks for another.",
             "", f"user {RUNNER}", f"topic write {root}/+/{RUNNER}/+"]
    lines += [f"topic read {topic}" for topic in runner_reads]
    for agent in agents:
        lines += ["", f"user {agent}", f"topic write {root}/+/{agent}/+",
                  f"topic read {root}/+/+/{agent}", f"topic read {root}/+/+/{BROADCAST}"]
    return "\n".join(lines) + "\n"


def config_text(out: Path, *, port: int, bind: str, host: str) -> str:
    """mosquitto.conf for the files in `out`; every path absolute (mosquitto reads from its cwd)."""
    tls = out / "tls"
    return f"""\
# Mosquitto for Parley, written by `parley broker-config`. Start: mosquitto -c {out}/mosquitto.conf
listener {port} {bind}
allow_anonymous false
password_file {out}/passwords
acl_file {out}/acl
# Started as root, mosquitto would become `mosquitto`, who cannot read these owner-only files.
user {getpass.getuser()}

# Sessions and queued QoS 1 messages survive a broker restart (see runtime/broker_config.py).
persistence true
persistence_location {out}/data/
autosave_interval 30
max_queued_messages 10000
retain_available false

# TLS, so that passwords do not cross a network in clear. Make a key and a certificate
# (or use your CA's), uncomment the three lines below, restart mosquitto, and give
# clients mqtts://{_host(host)}:8883; with a self-signed certificate they must trust it:
# SSL_CERT_FILE={tls}/cert.pem parley run ...
#   mkdir -m 700 {tls} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \\
#     -nodes -days 365 -keyout {tls}/key.pem -out {tls}/cert.pem -subj /CN={host} \\
#     -addext subjectAltName={'IP' if _is_ip(host) else 'DNS'}:{host}
# listener 8883 0.0.0.0
# certfile {tls}/cert.pem
# keyfile {tls}/key.pem
# Then bind the plain listener above to 127.0.0.1 only (or remove it).
"""


def login_url(user: str, password: str, host: str, port: int) -> str:
    """`mqtt://user:pass@host:port`, each part quoted as a URL needs."""
    return f"mqtt://{quote(user, safe='')}:{quote(password, safe='')}@{_host(host)}:{port}"


def load_credentials(path: Path) -> dict[str, str]:
    """name -> login URL, from a file `parley broker-config` wrote (`--credentials FILE`).

    Raises:
        ValueError: not a JSON object of `mqtt://USER:PASS@HOST:PORT` URLs (the message
            never shows a password).
    """
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON: {error}") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a JSON object of name -> mqtt://USER:PASS@HOST:PORT")
    for name, url in data.items():
        if not _is_login(url):
            raise ValueError(f"{path}: {name}: not an mqtt://USER:PASS@HOST:PORT url")
    if path.stat().st_mode & 0o077:
        log.warning("credentials_readable_by_others", path=str(path), hint="chmod 600")
    return data


def _is_login(url: object) -> bool:
    try:
        address = BrokerAddress.parse(url) if isinstance(url, str) else None
    except ValueError:  # its message holds the url, password and all: not for the user
        return False
    return address is not None and None not in (address.username, address.password)


def _check_names(run: str, agents: Sequence[str]) -> None:
    bad = [name for name in [run, *agents] if not _NAME.match(name)]
    if bad:
        raise ValueError(f"names must be letters, digits, '_', '.' or '-' to be logins and "
                         f"topic levels: {', '.join(map(repr, bad))}")
    reserved = sorted({RUNNER, BROADCAST} & set(agents))
    if reserved:
        raise ValueError(f"agent names {', '.join(reserved)} are reserved on the bus")


def _hash_passwords(path: Path, passwords: Mapping[str, str]) -> None:
    """A mosquitto password file: written in clear, owner-only, then hashed in place.

    `mosquitto_passwd -U` hashes a whole file, so no password shows on a command line.
    """
    tool = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path=_SEARCH_PATH)
    if tool is None:
        raise FileNotFoundError("mosquitto_passwd not found: install mosquitto")
    _write_private(path, "".join(f"{user}:{password}\n" for user, password in passwords.items()))
    done = subprocess.run([tool, "-U", str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        path.unlink()  # still in clear
        raise RuntimeError(f"mosquitto_passwd -U failed: {done.stderr.strip() or done.stdout}")
    path.chmod(0o600)


def _write_private(path: Path, text: str) -> None:
    """Write `text` into a file only its owner can read, even for a moment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as file:
        file.write(text)


def _json(data: Mapping[str, str]) -> str:
    return json.dumps(data, indent=2) + "\n"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
