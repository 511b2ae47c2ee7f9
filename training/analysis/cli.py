"""`parley analyze messages|game|policies` (registered by `training.cli`)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.cli_args import input_folder, output_file, output_folder
from training.cli import add_settings

if TYPE_CHECKING:
    from protocols import Envelope
    from runtime.scenario import Scenario


def register_analyze(commands: Any) -> None:
    """Add `analyze` and its analyses to `parley`'s sub-command parser."""
    analyze = commands.add_parser("analyze", help="what a run's messages carried; a game's "
                                  "equilibria; what trained agents play")
    analyses = analyze.add_subparsers(dest="analysis", required=True,
                                      metavar="{messages,game,policies}")
    messages = analyses.add_parser("messages", help="signalling, listening, entropy, "
                                   "topographic similarity and heatmaps per channel")
    messages.add_argument("recording", type=Path)
    messages.add_argument("--scenario", type=Path, help="the run's scenario: checks the "
                          "messages and asks its LLM agents for causal listening")
    messages.add_argument("--adapters", help="trained adapters the recipients played with")
    messages.add_argument("--out", type=Path, default=Path("runs/messages"),
                          help="folder for messages.json and the heatmaps")
    messages.set_defaults(handler=_analyze_messages)
    game = analyses.add_parser("game", help="Nash equilibria (pygambit), best responses, "
                               "welfare and Pareto optimality of a normal-form game")
    game.add_argument("scenario", type=Path)
    game.add_argument("--json", type=Path, metavar="FILE", help="write the analysis as JSON")
    add_settings(game)
    game.set_defaults(handler=_analyze_game)
    _register_policies(analyses)


def _register_policies(analyses: Any) -> None:
    policies = analyses.add_parser(
        "policies", help="empirical strategies, NashConv / exploitability and cross-play "
        "against scripted baselines, for an iterated matrix game")
    policies.add_argument("scenario", type=Path)
    source = policies.add_mutually_exclusive_group()
    source.add_argument("--adapters", type=Path, nargs="+", default=[], metavar="DIR",
                        help="trained populations (adapters folders, e.g. one per seed)")
    source.add_argument("--recording", type=Path, help="judge this recording's agents "
                        "instead of playing (no cross-play)")
    policies.add_argument("--episodes", type=int, default=20, help="per pairing (default 20)")
    policies.add_argument("--seed", type=int, default=0)
    policies.add_argument("--concurrency", type=int, default=1,
                          help="episodes at once, their model calls batched")
    policies.add_argument("--describe", action="store_true", help="the scenario's model "
                          "describes each policy's strategy in words (stored in the JSON)")
    policies.add_argument("--no-progress", action="store_true", help="no progress bar")
    policies.add_argument("--out", type=Path, default=Path("runs/policies"),
                          help="folder for policies.json and crossplay.png")
    add_settings(policies)
    policies.set_defaults(handler=_analyze_policies)


def _analyze_messages(args: argparse.Namespace) -> int:
    from runtime.recorder import read_recording
    from runtime.scenario import load_scenario

    input_folder("--adapters", args.adapters)
    output_folder("--out", args.out)
    if not args.recording.is_file():
        raise FileNotFoundError(f"{args.recording}: no such recording")
    scenario = load_scenario(args.scenario) if args.scenario else None
    registry = scenario.registry() if scenario else None
    envelopes = list(read_recording(args.recording, registry))
    message_analysis(envelopes, scenario, args.adapters, args.out)
    return 0


def _analyze_game(args: argparse.Namespace) -> int:
    from runtime.scenario import load_scenario
    from training.analysis.game import analyze_game, normal_form, render_game

    output_file("--json", args.json)
    analysis = analyze_game(normal_form(load_scenario(args.scenario, dict(args.settings))))
    print(render_game(analysis))
    if args.json:
        args.json.write_text(analysis.model_dump_json(indent=2) + "\n")
    return 0


def _analyze_policies(args: argparse.Namespace) -> int:
    from runtime.recorder import read_recording
    from runtime.scenario import load_scenario
    from training.analysis.policy_report import (
        analyze_policies,
        recorded_policies,
        render_policies,
        write_policies,
    )

    for folder in args.adapters:
        input_folder("--adapters", folder)
    output_folder("--out", args.out)
    if args.episodes < 1 or args.concurrency < 1:
        raise ValueError("--episodes and --concurrency must be at least 1")
    scenario = load_scenario(args.scenario, dict(args.settings))
    if args.recording is not None:
        if not args.recording.is_file():
            raise FileNotFoundError(f"{args.recording}: no such recording")
        envelopes = list(read_recording(args.recording, scenario.registry()))
        analysis = asyncio.run(recorded_policies(scenario, envelopes, args.recording.stem,
                                                 args.describe))
    else:
        analysis = asyncio.run(analyze_policies(scenario, args.adapters, args.episodes,
                                                args.seed, args.concurrency, args.describe,
                                                progress=not args.no_progress))
    print(render_policies(analysis))
    for path in write_policies(analysis, args.out):
        print(path)
    return 0


def message_analysis(envelopes: list[Envelope], scenario: Scenario | None,
                      adapters: str | None, out: Path) -> None:
    """Print the channels' measures and write them with their heatmaps into `out`."""
    from training.analysis.report import (
        analyze_messages,
        listeners,
        render_reports,
        write_analysis,
    )

    recipients = listeners(scenario, adapters) if scenario else None
    reports = asyncio.run(analyze_messages(envelopes, recipients))
    print(render_reports(reports))
    for path in write_analysis(reports, out):
        print(path)
