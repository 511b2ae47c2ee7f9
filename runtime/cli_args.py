"""The CLI's arguments: checked before a run starts, each problem one line (exit code 2)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NoReturn

from runtime.scenario import Scenario
from runtime.scenario_yaml import printable

EXIT_BAD_INPUT = 2


class ArgumentError(ValueError):
    """A command-line argument that cannot be used, e.g. an output path with no folder."""


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's error format: one line, no usage block, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {printable(message)}\n")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def output_file(option: str, path: Path | None) -> None:
    """ArgumentError unless the file `path` can be written; checked before a run, not after."""
    if path is None:
        return
    if path.is_dir():
        raise ArgumentError(f"{option} {path}: is a folder, not a file")
    if not path.parent.is_dir():
        raise ArgumentError(f"{option} {path}: folder {path.parent} does not exist")
    if not _writable(path.parent) or (path.exists() and not os.access(path, os.W_OK)):
        raise ArgumentError(f"{option} {path}: no permission to write it")


def output_folder(option: str, path: Path | None) -> None:
    """ArgumentError unless the folder `path` exists or can be made, and can be written in."""
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise ArgumentError(f"{option} {path}: is a file, not a folder")
    existing = path.absolute()
    while not existing.exists():  # the folder is made with its parents: the nearest that exists
        existing = existing.parent
    if not existing.is_dir():
        raise ArgumentError(f"{option} {path}: cannot be made, {existing} is a file")
    if not _writable(existing):
        raise ArgumentError(f"{option} {path}: no permission to write in {existing}")


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def input_folder(option: str, path: str | Path | None) -> None:
    """ArgumentError unless `path` is an existing folder."""
    if path is not None and not Path(path).is_dir():
        raise ArgumentError(f"{option} {path}: no such folder")


def add_adapters(parser: argparse.ArgumentParser) -> None:
    """`--adapters DIR` or `--untrained`: what LLM agents play instead of the scenario's
    own adapters (its `adapters:`), if it has any."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--adapters", help="folder of trained LoRA adapters to play "
                       "(default: the scenario's `adapters:`, if any)")
    which.add_argument("--untrained", action="store_true",
                       help="play the base model, not the scenario's trained adapters")


def played_adapters(scenario: Scenario, args: argparse.Namespace) -> str | None:
    """The adapters LLM agents play: `--adapters`, else the scenario's unless `--untrained`;
    ArgumentError when that folder does not exist."""
    if args.untrained:
        return None
    if args.adapters is not None:
        input_folder("--adapters", args.adapters)
        return str(args.adapters)
    shipped = scenario.shipped_adapters()
    if shipped is not None and not Path(shipped).is_dir():
        raise ArgumentError(f"{scenario.where('adapters')}: {shipped}: no such folder")
    return shipped
