"""`parley bench inference`: the engine beside its baselines, once per precision."""

from __future__ import annotations

from pathlib import Path

import torch

from agents.llm import load_model
from agents.llm.bench import (
    bench_inference_dtypes,
    forward_flops_per_token,
    matmul_ceiling,
    render_inference_dtypes,
)
from agents.model import ModelConfig


def test_matmul_ceiling_is_a_positive_rate_per_precision() -> None:
    for dtype in (torch.float32, torch.bfloat16):
        assert matmul_ceiling(dtype, shape=(64, 64, 64), repeats=3) > 0


def test_forward_flops_count_the_body_without_embedding_and_output_layer(
        tiny_model_dir: Path) -> None:
    model, _ = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))
    weights = sum(p.numel() for p in model.parameters())  # the tied embedding counted once
    embedding = model.get_input_embeddings().weight.numel()
    assert forward_flops_per_token(model) == 2 * (weights - embedding)


def test_inference_bench_runs_each_precision_beside_its_ceiling(tiny_model_dir: Path) -> None:
    config = ModelConfig(name=str(tiny_model_dir), device="cpu")
    results = bench_inference_dtypes(config, ["float32", "bfloat16"], agents=2, new_tokens=4)
    assert [r["dtype"] for r in results] == ["float32", "bfloat16"]
    for result in results:
        assert float(result["engine_tok_s"]) > 0 and float(result["ceiling_gflops"]) > 0
        expected = float(result["engine_tok_s"]) * int(result["flops_per_token"]) / 1e9
        assert float(result["engine_gflops"]) == round(expected, 1)
    text = render_inference_dtypes(results)
    assert "[bfloat16]" in text and "engine bfloat16 = " in text and "x engine float32" in text
