"""LLM agents from a scenario file, end to end on the in-process bus (tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

from runtime.cli import main
from runtime.recorder import read_recording
from runtime.scenario import load_scenario

ROOT = Path(__file__).parents[2]


def test_nested_schema_scenario_runs_without_code(tiny_model_dir: Path, tmp_path: Path) -> None:
    scenario_path = tmp_path / "nested.yaml"
    text = (ROOT / "scenarios" / "referential_nested.yaml").read_text()
    scenario_path.write_text(text + f"model: {{name: {json.dumps(str(tiny_model_dir))}}}\n")
    summary_path, recording = tmp_path / "summary.json", tmp_path / "run.jsonl"
    code = main(["run", str(scenario_path), "--episodes", "2", "--quiet",
                 "--summary", str(summary_path), "--record", str(recording)])
    assert code == 0
    summary = json.loads(summary_path.read_text())
    assert summary["messages"]["rejected"] == 0
    assert summary["llm"]["rejected"] == 0 and summary["llm"]["valid"] == 2
    registry = load_scenario(scenario_path).registry()
    said = [e for e in read_recording(recording) if e.kind == "say"]
    assert len(said) == 2
    for envelope in said:
        registry.validate(envelope.schema_id, envelope.payload)
        assert envelope.trace is not None and envelope.trace.token_ids
        assert len(envelope.trace.logprobs) == len(envelope.trace.token_ids)
    actions = [e for e in read_recording(recording)
               if e.kind == "action" and e.sender == "listener"]
    assert all(e.trace is not None and e.trace.legal == [0, 1, 2] for e in actions)
