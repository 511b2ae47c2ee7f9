"""`parley train`, `parley eval`, `parley plot` and `parley bench train`.

Registered through the `parley.commands` entry point, so that the runtime's CLI never
imports training (dependencies point from training to runtime).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from runtime.cli import positive


def register(commands: Any) -> None:
    """Add the training commands to `parley`'s sub-command parser."""
    train = commands.add_parser("train", help="train the LLM agents with CTDE PPO")
    train.add_argument("scenario", type=Path)
    train.add_argument("--iterations", type=positive, help="default: the scenario's setting")
    train.add_argument("--out", type=Path, help="run folder (default: runs/<scenario name>)")
    train.add_argument("--resume", type=Path, help="continue the run in this folder")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("eval", help="success rate and return with 95%% intervals")
    evaluate.add_argument("scenario", type=Path)
    evaluate.add_argument("--adapters", help="trained adapters (default: untrained agents)")
    evaluate.add_argument("--episodes", type=positive, default=200)
    evaluate.add_argument("--seed", type=int, default=10_000,
                          help="episodes seeds start here; kept apart from training seeds")
    evaluate.add_argument("--summary", type=Path, help="write the evaluation as JSON")
    evaluate.set_defaults(handler=_eval)

    plot = commands.add_parser("plot", help="PNG learning curves of a training run")
    plot.add_argument("run", type=Path)
    plot.set_defaults(handler=_plot)


def _train(args: argparse.Namespace) -> int:
    from training.train_scenario import load_train_scenario
    from training.trainer import train

    scenario = load_train_scenario(args.scenario)
    out = args.resume or args.out or Path("runs") / scenario.name
    adapters = train(scenario, out, iterations=args.iterations, resume=args.resume is not None,
                     progress=not args.no_progress)
    print(f"adapters: {adapters}  (play them: parley run {args.scenario} --adapters {adapters})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from runtime.scenario import load_scenario
    from training.evaluate import evaluate, render_eval

    scenario = load_scenario(args.scenario)
    summary = asyncio.run(evaluate(scenario, args.episodes, args.seed, args.adapters))
    print(render_eval(summary))
    if args.summary:
        args.summary.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from training.plot import plot_run

    if not (args.run / "metrics.csv").is_file():
        raise FileNotFoundError(f"{args.run}: no metrics.csv (not a `parley train` folder?)")
    for path in plot_run(args.run):
        print(path)
    return 0


def bench_train_command(args: argparse.Namespace) -> tuple[Any, str]:
    """`parley bench train`: the PPO update against a bare forward and backward."""
    from training.bench import bench_train, render_train_bench

    result = bench_train()
    return result, render_train_bench(result)
