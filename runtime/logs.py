"""Logging set-up: only the CLI calls this. Console lines in a terminal, JSON otherwise."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import TextIO

import structlog


def configure_logging(level: str = "warning", stream: TextIO | None = None,
                      json: bool | None = None) -> None:
    """Route structlog to stderr: pretty for people at a terminal, JSON lines for machines.

    Below `debug`, libraries keep quiet: Python warnings (transformers' FutureWarnings),
    transformers' own log lines and Hugging Face progress bars stay off the console.
    """
    if level != "debug":
        quiet_libraries()
    out = stream or sys.stderr
    # Looked up at each log call, not bound once: tests and embedders swap sys.stderr.
    factory = (lambda *_: structlog.PrintLogger(stream)) if stream else (
        lambda *_: structlog.PrintLogger(sys.stderr))
    as_json = not out.isatty() if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[
            level.upper()]),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )


def quiet_libraries() -> None:
    """Keep library warnings and progress bars off the console (the CLI's default)."""
    warnings.simplefilter("ignore")
    # Read when transformers and huggingface_hub are first imported, after this.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
