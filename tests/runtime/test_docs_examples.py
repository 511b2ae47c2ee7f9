"""The documentation's examples run as the pages say they do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from runtime.recorder import read_recording

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "docs" / "examples"


def test_the_custom_agent_tutorial_grudger_defects_once_cheated(tmp_path: Path) -> None:
    summary, recording = tmp_path / "summary.json", tmp_path / "run.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "run", str(EXAMPLES / "grudger.yaml"), "--quiet",
         "--summary", str(summary), "--record", str(recording)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(EXAMPLES)})
    assert done.returncode == 0, done.stderr
    envelopes = list(read_recording(recording))
    moves = [e.payload.model_dump()["action"] for e in envelopes
             if e.kind == "action" and e.sender == "player_0"]
    intents = [e.payload.model_dump()["intent"] for e in envelopes if e.kind == "say"]
    assert moves == [0, 0, 1, 1, 1]  # cooperate, cheated in round 2, then defect
    assert intents == ["cooperate", "cooperate", "defect", "defect", "defect"]
    assert json.loads(summary.read_text())["returns"] == {"player_0": 18.0, "player_1": 8.0}
