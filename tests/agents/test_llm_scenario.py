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
    said = [e for e in read_recording(recording, registry) if e.kind == "say"]
    assert len(said) == 2
    for envelope in said:
        assert isinstance(envelope.payload, registry[envelope.schema_id])
        assert envelope.trace is not None and envelope.trace.token_ids
        assert len(envelope.trace.logprobs) == len(envelope.trace.token_ids)
    actions = [e for e in read_recording(recording)
               if e.kind == "action" and e.sender == "listener"]
    assert all(e.trace is not None and e.trace.legal == [0, 1, 2] for e in actions)


def _save_perturbed_adapters(model_dir: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from agents.llm.adapters import attach_adapters, save_adapters

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft_model = attach_adapters(model, ["speaker", "listener"], rank=4, alpha=8)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:  # fresh adapters are the identity: make them do something
                parameter.normal_(0.0, 0.5)
    save_adapters(peft_model, out)


def test_run_plays_trained_adapters(tiny_model_dir: Path, tmp_path: Path) -> None:
    adapters = tmp_path / "adapters"
    _save_perturbed_adapters(tiny_model_dir, adapters)
    scenario_path = tmp_path / "nested.yaml"
    text = (ROOT / "scenarios" / "referential_nested.yaml").read_text()
    scenario_path.write_text(text + f"model: {{name: {json.dumps(str(tiny_model_dir))}}}\n")
    logprobs = {}
    for label, extra in (("base", []), ("trained", ["--adapters", str(adapters)])):
        recording = tmp_path / f"{label}.jsonl"
        assert main(["run", str(scenario_path), "--episodes", "1", "--quiet",
                     "--record", str(recording), *extra]) == 0
        (pick,) = [e for e in read_recording(recording)
                   if e.kind == "action" and e.sender == "listener"]
        assert pick.trace is not None
        assert pick.trace.adapter == (None if label == "base" else "listener")
        logprobs[label] = pick.trace.logprobs
    assert logprobs["base"] != logprobs["trained"]
