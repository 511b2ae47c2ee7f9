"""`parley bench restarts`: what broker restarts cost a run with a remote agent.

A reliability benchmark, not a speed one. On a broker set up by `parley broker-config`
(persistence and all), a two-player matrix game with `player_1` in its own process
(`parley agent`) is played twice with the same seed: once undisturbed (the baseline),
once while the broker is stopped and started again every `interval_s` seconds, by
SIGTERM and SIGKILL in turn. Both runs are recorded and compared:

- lost / extra: envelopes of the baseline missing from the disturbed run, and the
  reverse. An envelope is compared by what it says (episode, step, kind, sender,
  recipient, payload), ids and times aside; presence controls (`hello`, `bye`,
  `offline`) are left out, since reconnecting says hello again. Each sender's
  envelopes are compared in the order it sent them; how different senders interleave
  is the broker's and the scheduler's business, so it is not compared.
- every process's exit status and whether any printed a traceback;
- both runs' returns and incidents (a restart that outlasts a timeout costs defaults).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from protocols import Control, Envelope
from runtime.broker_config import write_broker_config
from runtime.mosquitto import Mosquitto, free_port
from runtime.recorder import read_recording
from runtime.scenario import load_scenario

PARLEY = [sys.executable, "-m", "runtime.cli"]
RUN_ID = "restarts"
PRESENCE = {"hello", "bye", "offline"}

SCENARIO = """\
name: restarts
seed: 11
episodes: {episodes}
env:
  game: matrix
  options: {{payoffs: {{preset: prisoners_dilemma}}, rounds: 20}}
agents:
  player_0:
    type: scripted
    options:
      actions: [0, 1, 1]
      delay_s: 0.03
      messages: [{{to: player_1, message: Note, payload: {{text: "I cooperate first."}}}}]
  player_1:
    type: scripted
    remote: true
    options: {{actions: [1, 0], delay_s: 0.03}}
protocol:
  messages: {{Note: {{fields: {{text: {{type: str, max_length: 40}}}}}}}}
  routes: [{{from: player_0, to: player_1, message: Note}}]
"""


@dataclass
class RunOutcome:
    """One run: how its processes ended and what it recorded."""

    wall_s: float
    exit_codes: dict[str, int]
    tracebacks: list[str]
    returns: dict[str, float]
    incidents: dict[str, int]
    envelopes: int
    restarts: list[str] = field(default_factory=list)


@dataclass
class RestartsResult:
    """The baseline, the disturbed run, and what differs between their recordings."""

    baseline: RunOutcome
    disturbed: RunOutcome
    lost: int
    extra: int
    examples: list[str]

    @property
    def holds(self) -> bool:
        """Every process exited 0, nothing lost or added, no traceback, same returns."""
        runs = (self.baseline, self.disturbed)
        return (self.lost == self.extra == 0 and not any(r.tracebacks for r in runs)
                and all(code == 0 for r in runs for code in r.exit_codes.values())
                and self.baseline.returns == self.disturbed.returns)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "holds": self.holds}


def bench_restarts(restarts: int = 20, interval_s: float = 1.0) -> RestartsResult:
    """Play the baseline, then the same seed through `restarts` broker restarts."""
    episodes = max(2, math.ceil(restarts * interval_s / 2.5))  # ~4 s an episode: room to spare
    with tempfile.TemporaryDirectory(prefix="parley-restarts-") as tmp:
        folder = Path(tmp)
        scenario = folder / "restarts.yaml"
        scenario.write_text(SCENARIO.format(episodes=episodes))
        write_broker_config(load_scenario(scenario), folder / "broker", run=RUN_ID,
                            port=free_port())
        broker = Mosquitto(config=folder / "broker" / "mosquitto.conf")
        try:
            broker.start()
            baseline = _play(scenario, folder, broker, "baseline", None)
            disturbed = _play(scenario, folder, broker, "disturbed", (restarts, interval_s))
        finally:
            broker.close()
        lost, extra, examples = compare(read_recording(folder / "baseline.jsonl"),
                                        read_recording(folder / "disturbed.jsonl"))
    return RestartsResult(baseline, disturbed, lost, extra, examples)


def _play(scenario: Path, folder: Path, broker: Mosquitto, name: str,
          restarts: tuple[int, float] | None) -> RunOutcome:
    """Start the remote agent and the runner, optionally restart the broker, wait for both."""
    credentials = folder / "broker" / "credentials"
    bus = ["--bus", f"mqtt://127.0.0.1:{broker.port}", "--run-id", RUN_ID]
    agent = _start([*PARLEY, "agent", str(scenario), "--agent", "player_1", *bus,
                    "--credentials", str(credentials / "player_1.json")], folder / f"{name}-agent")
    time.sleep(1.0)  # the agent subscribed before the runner asks for it (it waits anyway)
    recording, summary = folder / f"{name}.jsonl", folder / f"{name}.summary.json"
    started = time.monotonic()
    runner = _start([*PARLEY, "run", str(scenario), *bus, "--quiet", "--record", str(recording),
                     "--summary", str(summary), "--credentials", str(credentials / "run.json")],
                    folder / f"{name}-runner")
    done: list[str] = []
    restarter = None
    if restarts is not None:  # once the run is under way: its first envelope is recorded
        while runner.poll() is None and not (recording.exists() and recording.stat().st_size):
            time.sleep(0.05)
        count, interval = restarts
        restarter = threading.Thread(target=_restart_broker,
                                     args=(broker, runner, count, interval, done))
        restarter.start()
    codes = {"runner": runner.wait(timeout=600)}
    wall = time.monotonic() - started
    if restarter is not None:
        restarter.join()
    codes["agent"] = agent.wait(timeout=30)
    written = json.loads(summary.read_text()) if summary.exists() else {}
    return RunOutcome(
        wall_s=round(wall, 2), exit_codes=codes,
        tracebacks=_tracebacks(folder.glob(f"{name}-*.err")),
        returns=written.get("returns", {}), incidents=written.get("incidents", {}),
        envelopes=sum(1 for _ in read_recording(recording)) if recording.exists() else 0,
        restarts=done)


def _tracebacks(files: Iterable[Path]) -> list[str]:
    """`file: the traceback's last line`, for each process that printed one."""
    found = []
    for file in files:
        text = file.read_text(errors="replace")
        if "Traceback" in text:
            frames = text[text.rindex("Traceback"):].splitlines()[1:]
            error = next((line for line in frames if line and not line[0].isspace()), "")
            found.append(f"{file.name}: {error}")
    return found


def _start(command: list[str], stem: Path) -> subprocess.Popen[bytes]:
    with Path(f"{stem}.out").open("wb") as out, Path(f"{stem}.err").open("wb") as err:
        return subprocess.Popen(command, stdout=out, stderr=err)


def _restart_broker(broker: Mosquitto, runner: subprocess.Popen[bytes], count: int,
                    interval: float, done: list[str]) -> None:
    """Every `interval` s while the run goes on: stop the broker (SIGTERM, SIGKILL in turn)."""
    for number in range(count):
        time.sleep(interval)
        if runner.poll() is not None:
            return
        how = "SIGTERM" if number % 2 == 0 else "SIGKILL"
        broker.stop() if how == "SIGTERM" else broker.kill()
        broker.start()
        done.append(how)


def compare(baseline: Iterator[Envelope], disturbed: Iterator[Envelope]
            ) -> tuple[int, int, list[str]]:
    """(lost, extra, a few examples) between two recordings, sender by sender, in order."""
    expected, got = _by_sender(baseline), _by_sender(disturbed)
    lost = extra = 0
    examples: list[str] = []
    for sender in sorted(expected.keys() | got.keys()):
        want, have = expected.get(sender, []), got.get(sender, [])
        missing = [line for line in want if line not in have]
        added = [line for line in have if line not in want]
        if not missing and not added and want != have:  # same envelopes, another order
            missing, added = want, have
        lost, extra = lost + len(missing), extra + len(added)
        examples += [f"lost {line}" for line in missing[:3]]
        examples += [f"extra {line}" for line in added[:3]]
    return lost, extra, examples


def _by_sender(envelopes: Iterator[Envelope]) -> dict[str, list[str]]:
    lines: dict[str, list[str]] = defaultdict(list)
    for envelope in envelopes:
        payload = envelope.payload
        if isinstance(payload, Control) and payload.command in PRESENCE:
            continue
        lines[envelope.sender].append(json.dumps(
            [envelope.episode, envelope.step, envelope.kind, envelope.recipient,
             payload.model_dump(mode="json")], sort_keys=True))
    return dict(lines)


def render_restarts(result: RestartsResult) -> str:
    """The two runs side by side and the verdict."""
    rows = [("baseline", result.baseline), ("restarts", result.disturbed)]
    lines = ["run        wall_s  envelopes  exit codes              restarts"]
    for name, run in rows:
        kinds = ", ".join(f"{k} x{run.restarts.count(k)}" for k in ("SIGTERM", "SIGKILL")
                          if k in run.restarts) or "-"
        lines.append(f"{name:<10} {run.wall_s:>6}  {run.envelopes:>9}  "
                     f"{json.dumps(run.exit_codes):<22}  {kinds}")
    lines += [f"lost: {result.lost}  extra: {result.extra}  "
              f"tracebacks: {result.baseline.tracebacks + result.disturbed.tracebacks or 'none'}",
              f"returns equal: {result.baseline.returns == result.disturbed.returns}  "
              f"incidents with restarts: {result.disturbed.incidents}",
              *result.examples, f"holds: {result.holds}"]
    return "\n".join(lines)
