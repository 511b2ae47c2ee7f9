"""`parley view`: the page of a recording and of a training run, rendered by headless
Chromium (Debian's `chromium`); deselect with `-m 'not browser'` where it is missing."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from runtime.cli import main

from .test_console import NOTES

pytestmark = pytest.mark.browser
CHROMIUM = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking"]


class Elements(HTMLParser):
    """Every start tag of a page with its attributes, and the text of each `.bubble`."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.bubbles: list[str] = []
        self._in_bubble = False
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_bubble = dict(attrs).get("class") == "bubble"

    def handle_data(self, data: str) -> None:
        if self._in_bubble:
            self.bubbles.append(data)
            self._in_bubble = False

    def having(self, **wanted: str) -> list[dict[str, str | None]]:
        return [attrs for _, attrs in self.tags
                if all(attrs.get(key.replace("_", "-")) == value for key, value in wanted.items())]


def _chromium(*arguments: str) -> str:
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is needed (apt-get install chromium)"
    done = subprocess.run([binary, *CHROMIUM, *arguments], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_recording_page_shows_episodes_messages_and_hides_a_filtered_agent(
        tmp_path: Path) -> None:
    scenario = tmp_path / "notes.yaml"
    scenario.write_text(NOTES.replace("episodes: 1", "episodes: 3"))
    recording = tmp_path / "notes.jsonl"
    assert main(["run", str(scenario), "--record", str(recording), "--quiet"]) == 0
    assert main(["view", str(recording), "--scenario", str(scenario)]) == 0
    page = tmp_path / "notes.html"
    assert "<script src" not in page.read_text() and "http" not in page.read_text()
    dom = Elements(_chromium("--dump-dom", f"{page.as_uri()}#hide=player_1"))
    assert len(dom.having(**{"class": "episode"})) == 3
    assert len(dom.having(**{"class": "mark failure"})) + \
        len(dom.having(**{"class": "mark success"})) == 3
    assert dom.bubbles.count('{"text": "I cooperate first."}') == 6  # 3 episodes x 2 rounds
    hidden = dom.having(data_agent="player_1")
    shown = dom.having(data_agent="player_0")
    events = [a for a in hidden if "event" in (a.get("class") or "")]
    assert events and all("hidden" in a for a in events)
    assert all("hidden" not in a for a in shown if "event" in (a.get("class") or ""))
    shot = tmp_path / "notes.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,900", page.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_training_run_page_draws_curves_and_sampled_episodes(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    from tests.training.test_trainer import _scenario  # the trainer tests' tiny code game
    from training.trainer import train

    run = tmp_path / "run"
    train(_scenario(tmp_path, tiny_model_dir), run, iterations=2, progress=False)
    assert sorted(p.name for p in (run / "episodes").iterdir()) == \
        ["iteration_0000.jsonl", "iteration_0001.jsonl"]
    assert main(["view", str(run)]) == 0
    dom = Elements(_chromium("--dump-dom", (run / "view.html").as_uri()))
    assert dom.having(data_metric="success_rate") and dom.having(data_metric="return_mean")
    assert len(dom.having(**{"class": "episode"})) == 2  # the last iteration's sample
    options = [attrs.get("value") for tag, attrs in dom.tags if tag == "option"]
    assert dom.having(id="iteration-filter") and options.count("1") == 2  # iteration, episode


def test_a_run_without_success_still_gives_a_page_javascript_can_read(tmp_path: Path) -> None:
    """A game that reports no success writes `nan` in metrics.csv; JSON has no NaN."""
    import json
    import re

    from training.run_view import run_page

    (tmp_path / "metrics.csv").write_text("iteration,success_rate,return_mean\n0,nan,1.5\n"
                                          "1,nan,2.0\n")
    page = run_page(tmp_path)
    text = re.search(r'<script type="application/json" id="data">(.*?)</script>', page,
                     re.S)
    assert text is not None

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    data = json.loads(text.group(1), parse_constant=refuse)
    assert data["summary"]["success_rate"] is None
    assert data["curves"]["metrics"] == {"return_mean": [1.5, 2.0]}
