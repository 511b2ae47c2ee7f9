"""`parley`: validate, run, agent, replay, bench, and the commands packages plug in.

Bad input gets one line on stderr saying where and what, and exit code 2; no traceback.
Other packages add commands through the entry-point group `parley.commands` (training
adds train, eval and plot) and benchmarks through `parley.benchmarks`, so the runtime
never imports them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console

from agents.plugins import AgentLoadError
from protocols import ImportPathError
from runtime.console import ConversationView, summary_table
from runtime.envs import EnvError
from runtime.logs import configure_logging
from runtime.play import PlaySettings, Tap, play
from runtime.recorder import Recording, RecordingError, read_recording
from runtime.scenario import load_scenario
from runtime.scenario_yaml import ScenarioError

EXIT_BAD_INPUT = 2
COMMAND_GROUP = "parley.commands"
BENCHMARK_GROUP = "parley.benchmarks"
USER_ERRORS = (ScenarioError, EnvError, AgentLoadError, RecordingError, ImportPathError,
               ValueError, TimeoutError, FileNotFoundError, ConnectionError)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-json", action="store_true", help="JSON logs even in a terminal")
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check a scenario file")
    validate.add_argument("scenario", type=Path)

    run = commands.add_parser("run", help="run a scenario live")
    run.add_argument("scenario", type=Path)
    run.add_argument("--episodes", type=positive)
    run.add_argument("--seed", type=int)
    run.add_argument("--bus", default="memory", help="memory (default) or mqtt://HOST:PORT")
    run.add_argument("--run-id", help="run id on the bus (default: the scenario name)")
    run.add_argument("--record", type=Path, help="write every envelope to FILE.jsonl")
    run.add_argument("--summary", type=Path, help="write the run summary as JSON")
    run.add_argument("--adapters", help="folder of trained LoRA adapters to play")
    run.add_argument("--quiet", action="store_true", help="no live conversation")

    agent = commands.add_parser("agent", help="run one agent in this process")
    agent.add_argument("scenario", type=Path)
    agent.add_argument("--agent", required=True)
    agent.add_argument("--bus", required=True, help="mqtt://HOST:PORT")
    agent.add_argument("--run-id")
    agent.add_argument("--seed", type=int)
    agent.add_argument("--adapters")

    replay = commands.add_parser("replay", help="show a recorded run")
    replay.add_argument("recording", type=Path)
    replay.add_argument("--scenario", type=Path,
                        help="the run's scenario, to check its messages (else shown unchecked)")

    bench = commands.add_parser("bench", help="benchmarks against same-run baselines")
    bench.add_argument("target", choices=sorted(_benchmarks()))
    bench.add_argument("--bus", default="mqtt://127.0.0.1:1883", help="broker for the MQTT part")
    bench.add_argument("--messages", type=positive, default=5000)
    bench.add_argument("--agents", type=positive, default=8)
    bench.add_argument("--json", action="store_true")
    for plugin in entry_points(group=COMMAND_GROUP):
        plugin.load()(commands)
    return parser


def _validate(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    scenario.registry()  # message models must build too
    print(f"{args.scenario}: ok ({len(scenario.agents)} agents, env "
          f"{scenario.env.game or scenario.env.pettingzoo})")
    return 0


def _run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    view = [] if args.quiet else [ConversationView()]
    with ExitStack() as stack:
        taps: list[Tap] = [*view]
        if args.record is not None:
            taps.append(stack.enter_context(Recording(args.record)))
        settings = PlaySettings(
            episodes=args.episodes or scenario.episodes,
            seed=scenario.seed if args.seed is None else args.seed,
            bus=args.bus, run_id=args.run_id, adapters=args.adapters, taps=taps)
        summary = asyncio.run(play(scenario, settings))
    if not args.quiet:
        console = Console()
        console.print(summary_table(summary))
        counts = summary.messages
        success = "" if summary.success_rate is None else f"  success: {summary.success_rate:.0%}"
        console.print(f"messages: {counts.published} published, {counts.delivered} delivered, "
                      f"{counts.rejected} rejected  wall: {summary.wall_s} s{success}")
    if args.summary:
        args.summary.write_text(summary.to_json() + "\n")
    return 0


def _agent(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    settings = PlaySettings(episodes=0, seed=scenario.seed if args.seed is None else args.seed,
                            bus=args.bus, run_id=args.run_id, adapters=args.adapters,
                            serve_only=args.agent)
    structlog.contextvars.bind_contextvars(agent=args.agent)
    asyncio.run(play(scenario, settings))
    return 0


def _replay(args: argparse.Namespace) -> int:
    registry = load_scenario(args.scenario).registry() if args.scenario else None
    ConversationView().replay(read_recording(args.recording, registry))
    return 0


Benchmark = Callable[[argparse.Namespace], tuple[Any, str]]


def _benchmarks() -> dict[str, Callable[[], Benchmark]]:
    """Benchmarks by name, loaded only when run; each returns its result and a text for people."""
    return {ep.name: ep.load for ep in entry_points(group=BENCHMARK_GROUP)}


def _bench(args: argparse.Namespace) -> int:
    benchmark = _benchmarks()[args.target]()
    result, text = benchmark(args)
    print(json.dumps(result, indent=2) if args.json else text)
    return 0


def bench_bus_command(args: argparse.Namespace) -> tuple[Any, str]:
    """`parley bench bus`: LocalBus and MqttBus against their bare baselines."""
    from runtime.bench_bus import bench_bus, render_bench

    result = asyncio.run(bench_bus(args.bus, args.messages))
    return result.as_dict(), render_bench(result)


def bench_inference_command(args: argparse.Namespace) -> tuple[Any, str]:
    """`parley bench inference`: the engine against naive and offline batched generate."""
    from agents.llm.bench import bench_inference, render_inference_bench
    from agents.model import ModelConfig

    result = bench_inference(ModelConfig(), agents=args.agents)
    return result, render_inference_bench(result)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "validate": _validate, "run": _run, "agent": _agent, "replay": _replay, "bench": _bench,
}



def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, json=True if args.log_json else None)
    try:
        handler = COMMANDS.get(args.command) or args.handler
        return int(handler(args))
    except ScenarioError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except USER_ERRORS as error:
        print(f"error: {error or type(error).__name__}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
