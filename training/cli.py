"""`parley train`, `parley eval`, `parley plot` and `parley bench train`.

Registered through the `parley.commands` entry point, so that the runtime's CLI never
imports training (dependencies point from training to runtime).
"""

from __future__ import annotations

import argparse
import asyncio
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from runtime.cli_args import (
    add_adapters,
    input_folder,
    output_file,
    output_folder,
    played_adapters,
    positive,
)

if TYPE_CHECKING:
    from protocols import Envelope
    from runtime.play_settings import Tap

SET_HELP = ("override a scenario setting, e.g. --set training.critic=none "
            "(the value is read as YAML; repeat for several)")


def setting(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` of `--set`: a dotted scenario path and a YAML value."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise argparse.ArgumentTypeError(f"{key}: value is not YAML: {error}") from None


def add_settings(parser: argparse.ArgumentParser) -> None:
    """`--set KEY=VALUE`, repeatable: overrides of the scenario's settings."""
    parser.add_argument("--set", type=setting, action="append", default=[], dest="settings",
                        metavar="KEY=VALUE", help=SET_HELP)


def register(commands: Any) -> None:
    """Add the training commands to `parley`'s sub-command parser."""
    train = commands.add_parser("train", help="train the LLM agents with CTDE PPO")
    train.add_argument("scenario", type=Path)
    train.add_argument("--iterations", type=positive, help="default: the scenario's setting")
    train.add_argument("--out", type=Path, help="run folder (default: runs/<scenario name>)")
    train.add_argument("--resume", type=Path, help="continue the run in this folder")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--ray-address", help="a Ray cluster for the rollout workers "
                       "(training.workers), e.g. ray://HEAD:10001; default: a local one")
    train.add_argument("--bus", help="a broker, mqtt://HOST:PORT, for agents marked remote "
                       "(each served by `parley agent SCENARIO --agent NAME --bus URL --training`)")
    train.add_argument("--run-id", help="the run id the remote agents follow "
                       "(default: the scenario's name)")
    add_settings(train)
    train.set_defaults(handler=_train)

    from training.analysis.cli import register_analyze  # it imports this module

    _register_eval(commands)
    register_analyze(commands)
    _register_ablate(commands)
    _register_distill(commands)
    _register_view(commands)

    plot = commands.add_parser("plot", help="PNG learning curves of a training run")
    plot.add_argument("run", type=Path)
    plot.set_defaults(handler=_plot)


def _register_eval(commands: Any) -> None:
    evaluate = commands.add_parser("eval", help="success rate and return with 95%% intervals")
    evaluate.add_argument("scenario", type=Path)
    add_adapters(evaluate)
    evaluate.add_argument("--episodes", type=positive, default=200)
    evaluate.add_argument("--seed", type=int, default=10_000,
                          help="episodes seeds start here; kept apart from training seeds")
    evaluate.add_argument("--summary", type=Path, help="write the evaluation as JSON")
    evaluate.add_argument("--concurrency", type=positive, default=1,
                          help="episodes at once, their model calls batched (default 1)")
    add_settings(evaluate)
    evaluate.add_argument("--record", type=Path, help="write every envelope to FILE.jsonl")
    evaluate.add_argument("--messages", type=Path, metavar="DIR",
                          help="analyse the episodes' messages into DIR (as `analyze messages`)")
    evaluate.set_defaults(handler=_eval)


def _register_ablate(commands: Any) -> None:
    ablation = commands.add_parser("ablate", help="train and evaluate variants over seeds")
    ablation.add_argument("scenario", type=Path)
    ablation.add_argument("--variants", type=Path, required=True,
                          help="YAML: `variants:` mapping names to --set overrides")
    ablation.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ablation.add_argument("--iterations", type=positive, help="default: the scenario's setting")
    ablation.add_argument("--episodes", type=positive, default=200, help="evaluation episodes")
    ablation.add_argument("--jobs", type=positive, default=1, help="runs at once")
    ablation.add_argument("--threads", type=positive, default=1, help="torch threads per run")
    ablation.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ablation.add_argument("--threshold", type=float, default=0.8,
                          help="training success whose first iteration the table reports")
    ablation.set_defaults(handler=_ablate)


def _register_distill(commands: Any) -> None:
    distill = commands.add_parser("distill", help="distil a trained teacher into a student, "
                                  "by KL and by a description in words")
    distill.add_argument("scenario", type=Path)
    distill.add_argument("--teacher", type=Path, required=True,
                         help="a training run folder, or its adapters folder")
    distill.add_argument("--out", type=Path, required=True)
    distill.add_argument("--student-model", help="another model with the teacher's tokenizer "
                         "(a hub id or folder; default: the scenario's model)")
    distill.add_argument("--episodes", type=positive, default=64,
                         help="teacher episodes to learn from")
    distill.add_argument("--epochs", type=positive, default=4)
    distill.add_argument("--eval-episodes", type=positive, default=200)
    distill.add_argument("--concurrency", type=positive, default=12)
    distill.add_argument("--no-progress", action="store_true")
    add_settings(distill)
    distill.set_defaults(handler=_distill)


def _train(args: argparse.Namespace) -> int:
    from runtime.preflight import preflight
    from training.train_scenario import load_train_scenario
    from training.trainer import train

    input_folder("--resume", args.resume)
    scenario = load_train_scenario(args.scenario, dict(args.settings))
    out = args.resume or args.out or Path("runs") / scenario.name
    output_folder("--out", out)  # also the default, runs/<scenario name>
    preflight(scenario)
    adapters = train(scenario, out, iterations=args.iterations, resume=args.resume is not None,
                     progress=not args.no_progress, ray_address=args.ray_address,
                     bus=args.bus, run_id=args.run_id)
    print(f"adapters: {adapters}  (play them: parley run {args.scenario} --adapters {adapters})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from runtime.preflight import preflight
    from runtime.recorder import Recording
    from runtime.scenario import load_scenario
    from training.evaluate import evaluate, render_eval

    output_file("--summary", args.summary)
    output_file("--record", args.record)
    output_folder("--messages", args.messages)
    scenario = load_scenario(args.scenario, dict(args.settings))
    adapters = played_adapters(scenario, args)
    preflight(scenario, adapters)
    envelopes: list[Envelope] = []
    with ExitStack() as stack:
        taps: list[Tap] = [envelopes.append] if args.messages else []
        if args.record:
            taps.append(stack.enter_context(Recording(args.record)))
        summary = asyncio.run(evaluate(scenario, args.episodes, args.seed, adapters,
                                       args.concurrency, taps))
    print(render_eval(summary))
    if args.summary:
        args.summary.write_text(summary.to_json() + "\n")
    if args.messages:
        from training.analysis.cli import message_analysis

        message_analysis(envelopes, scenario, adapters, args.messages)
    return 0


def _distill(args: argparse.Namespace) -> int:
    from runtime.preflight import preflight
    from training.distill_run import DistillSettings, distill, render_distill, teacher_adapters
    from training.train_scenario import load_train_scenario

    input_folder("--teacher", args.teacher)
    output_folder("--out", args.out)
    teacher_adapters(args.teacher)  # before loading the model: a wrong folder fails fast
    scenario = load_train_scenario(args.scenario, dict(args.settings))
    preflight(scenario)
    report = distill(scenario, DistillSettings(
        args.teacher, args.out, args.episodes, args.epochs, eval_episodes=args.eval_episodes,
        concurrency=args.concurrency, progress=not args.no_progress,
        student_model=args.student_model))
    print(render_distill(report))
    return 0


def _ablate(args: argparse.Namespace) -> int:
    from runtime.scenario_yaml import read_yaml
    from training.ablation import ablate, load_variants

    output_folder("--out", args.out)
    read_yaml(args.variants)  # a missing file or bad YAML: one line with its line number
    table = ablate(args.scenario, load_variants(args.variants), args.seeds, args.out,
                   args.iterations, args.episodes, args.jobs, args.threads, args.threshold)
    print(table.read_text(), end="")
    print(f"plot: {args.out / 'ablation.png'}")
    return 0


def _register_view(commands: Any) -> None:
    view = commands.add_parser("view", help="a recording or a training run as one HTML page")
    view.add_argument("source", type=Path, help="a recording (FILE.jsonl) or a `parley train` "
                      "folder")
    view.add_argument("--out", type=Path, help="the page (default: SOURCE.html, or "
                      "RUN_DIR/view.html)")
    view.add_argument("--scenario", type=Path,
                      help="the run's scenario, to check its messages (else shown unchecked)")
    view.set_defaults(handler=_view)


def _view(args: argparse.Namespace) -> int:
    from runtime.scenario import load_scenario
    from runtime.viewer import recording_page
    from training.run_view import run_page

    registry = load_scenario(args.scenario).registry() if args.scenario else None
    source: Path = args.source
    if source.is_dir():
        if not (source / "metrics.csv").is_file():
            raise FileNotFoundError(f"{source}: no metrics.csv (not a `parley train` folder?)")
        out = args.out or source / "view.html"
        output_file("--out", out)
        page = run_page(source, registry)
    else:
        from runtime.recorder import read_recording

        out = args.out or source.with_suffix(".html")
        output_file("--out", out)
        page = recording_page(source.stem, read_recording(source, registry), registry is not None)
    out.write_text(page, encoding="utf-8")
    print(out)
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
    from runtime.cli import bench_dtypes
    from training.bench import bench_train_dtypes, render_train_dtypes

    results = bench_train_dtypes(bench_dtypes(args))
    return results, render_train_dtypes(results)
