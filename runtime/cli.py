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
from runtime.broker_config import load_credentials
from runtime.broker_config import register as register_broker_config
from runtime.cli_args import (
    EXIT_BAD_INPUT,
    ArgumentError,
    Parser,
    add_adapters,
    output_file,
    played_adapters,
    positive,
)
from runtime.console import ConversationView, summary_lines, summary_table
from runtime.envs import EnvError
from runtime.logs import configure_logging
from runtime.play import play
from runtime.play_settings import PlaySettings, Tap
from runtime.preflight import preflight
from runtime.recorder import Recording, RecordingError, read_recording
from runtime.scenario import load_scenario
from runtime.scenario_yaml import ScenarioError, printable

COMMAND_GROUP = "parley.commands"
BENCHMARK_GROUP = "parley.benchmarks"
USER_ERRORS = (ScenarioError, EnvError, AgentLoadError, RecordingError, ImportPathError,
               ValueError, TimeoutError, OSError)


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="parley", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-json", action="store_true", help="JSON logs even in a terminal")
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check a scenario file")
    validate.add_argument("scenario", type=Path)
    _register_run(commands)
    _register_agent(commands)
    replay = commands.add_parser("replay", help="show a recorded run")
    replay.add_argument("recording", type=Path)
    replay.add_argument("--scenario", type=Path,
                        help="the run's scenario, to check its messages (else shown unchecked)")
    replay.add_argument("--verbose", action="store_true",
                        help="observations whole and each agent's options")
    _register_bench(commands)
    register_broker_config(commands)
    for plugin in entry_points(group=COMMAND_GROUP):
        plugin.load()(commands)
    return parser


def _register_run(commands: Any) -> None:
    run = commands.add_parser("run", help="run a scenario live")
    run.add_argument("scenario", type=Path)
    run.add_argument("--episodes", type=positive)
    run.add_argument("--seed", type=int)
    run.add_argument("--bus", default="memory", help="memory (default) or mqtt://HOST:PORT")
    run.add_argument("--run-id", help="run id on the bus (default: the scenario name)")
    run.add_argument("--record", type=Path, help="write every envelope to FILE.jsonl")
    run.add_argument("--summary", type=Path, help="write the run summary as JSON")
    add_adapters(run)
    shown = run.add_mutually_exclusive_group()
    shown.add_argument("--quiet", action="store_true", help="no live view: the results only")
    shown.add_argument("--verbose", action="store_true",
                       help="observations whole and each agent's options")
    run.add_argument("--credentials", type=Path, help="logins from `parley broker-config`")


def _register_agent(commands: Any) -> None:
    agent = commands.add_parser("agent", help="run one agent in this process")
    agent.add_argument("scenario", type=Path)
    agent.add_argument("--agent", required=True)
    agent.add_argument("--bus", required=True, help="mqtt://HOST:PORT")
    agent.add_argument("--run-id")
    agent.add_argument("--seed", type=int)
    add_adapters(agent)
    agent.add_argument("--credentials", type=Path, help="logins from `parley broker-config`")
    agent.add_argument("--training", action="store_true",
                       help="play every rollout `parley train --bus` orders, with the "
                       "adapters it hands over, until training ends")


def _register_bench(commands: Any) -> None:
    bench = commands.add_parser("bench", help="benchmarks against same-run baselines")
    bench.add_argument("target", choices=sorted(_benchmarks()))
    bench.add_argument("--bus", default="mqtt://127.0.0.1:1883", help="broker for the MQTT part")
    bench.add_argument("--messages", type=positive, default=5000)
    bench.add_argument("--agents", type=positive, default=8)
    bench.add_argument("--restarts", type=positive, default=20, help="broker restarts (restarts)")
    bench.add_argument("--dtype", action="append", choices=["float32", "bfloat16", "float16"],
                       help="precision, repeatable: each side by side (inference, train; "
                       "default float32 and bfloat16)")
    bench.add_argument("--json", action="store_true")


def _view(verbose: bool = False) -> ConversationView:
    # Names and returns' keys come from envs and recordings: data, never rich markup
    # (a `[/x]` in them would otherwise raise MarkupError).
    return ConversationView(Console(highlight=False, markup=False), verbose=verbose)


def _validate(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    preflight(scenario)  # the env and every agent build, as `run` would build them
    print(f"{args.scenario}: ok ({len(scenario.agents)} agents, env "
          f"{scenario.env.game or scenario.env.pettingzoo})")
    return 0


def _run(args: argparse.Namespace) -> int:
    output_file("--record", args.record)
    output_file("--summary", args.summary)
    scenario = load_scenario(args.scenario)
    adapters = played_adapters(scenario, args)
    preflight(scenario, adapters)
    view = [] if args.quiet else [_view(args.verbose)]
    with ExitStack() as stack:
        taps: list[Tap] = [*view]
        if args.record is not None:
            taps.append(stack.enter_context(Recording(args.record)))
        settings = PlaySettings(
            episodes=args.episodes or scenario.episodes,
            seed=scenario.seed if args.seed is None else args.seed,
            bus=args.bus, run_id=args.run_id, adapters=adapters, taps=taps,
            credentials=_credentials(args))
        summary = asyncio.run(play(scenario, settings))
    console = Console(markup=False)  # the table's agent names are the env's, not markup
    if not args.quiet:
        console.print(summary_table(summary))
    for line in summary_lines(summary):
        console.print(line)
    if args.summary:
        args.summary.write_text(summary.to_json() + "\n")
    return 0


def _credentials(args: argparse.Namespace) -> dict[str, str] | None:
    """The logins of `--credentials` (a file `parley broker-config` wrote), if given."""
    return dict(load_credentials(args.credentials)) if args.credentials else None


def _agent(args: argparse.Namespace) -> int:
    if not args.bus.startswith(("mqtt://", "mqtts://")):  # memory would wait for nobody
        raise ArgumentError(f"--bus {args.bus}: an agent process needs a broker: "
                            "use mqtt://HOST:PORT")
    if args.training and (args.credentials or args.adapters):
        raise ArgumentError("--training: the trainer hands over the adapters; "
                            "--credentials and --adapters do not apply")
    scenario = load_scenario(args.scenario)
    adapters = played_adapters(scenario, args)
    preflight(scenario, adapters, serve=args.agent)
    structlog.contextvars.bind_contextvars(agent=args.agent)
    if args.training:
        from runtime.follow import follow

        asyncio.run(follow(scenario, args.agent, args.bus, args.run_id))
        return 0
    settings = PlaySettings(episodes=0, seed=scenario.seed if args.seed is None else args.seed,
                            bus=args.bus, run_id=args.run_id, adapters=adapters,
                            serve_only=args.agent, credentials=_credentials(args))
    asyncio.run(play(scenario, settings))
    return 0


def replay(recording: Path, scenario: Path | None = None, verbose: bool = False) -> None:
    """Show a recorded run; RecordingError names the file and its first bad line."""
    registry = load_scenario(scenario).registry() if scenario else None
    _view(verbose).replay(read_recording(recording, registry))


def _replay(args: argparse.Namespace) -> int:
    replay(args.recording, args.scenario, args.verbose)
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


def bench_restarts_command(args: argparse.Namespace) -> tuple[Any, str]:
    """`parley bench restarts`: a run with a remote agent through broker restarts."""
    from runtime.bench_restarts import bench_restarts, render_restarts

    result = bench_restarts(args.restarts)
    return result.as_dict(), render_restarts(result)


def bench_inference_command(args: argparse.Namespace) -> tuple[Any, str]:
    """`parley bench inference`: the engine against naive and offline batched generate."""
    from agents.llm.bench import bench_inference_dtypes, render_inference_dtypes
    from agents.model import ModelConfig

    results = bench_inference_dtypes(ModelConfig(), bench_dtypes(args), agents=args.agents)
    return results, render_inference_dtypes(results)


def bench_dtypes(args: argparse.Namespace) -> list[str]:
    """The precisions `--dtype` asked for, in order, once each: float32 and bfloat16 if none."""
    return list(dict.fromkeys(args.dtype or ["float32", "bfloat16"]))


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
        print(f"error: {printable(str(error) or type(error).__name__)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
