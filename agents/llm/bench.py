"""`parley bench inference`: the engine against same-run baselines.

N agents each ask for one sampled completion of a short chat prompt. The same
requests run three ways in one process, on one model:

- engine: N concurrent `InferenceEngine.generate` calls (dynamic batching);
- naive: one `model.generate` call per request, one after the other;
- batched: one offline `model.generate` call over all requests (the ceiling).

Every request produces exactly `new_tokens` tokens (EOS ignored), so the three
do the same work. With several dtypes (`--dtype float32 --dtype bfloat16`) the three
run once per precision, each beside the machine's matmul ceiling in that precision
(a fixed-size product timed in the same run), so a figure reads as a share of the limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from agents.llm.compute import on_torch_thread
from agents.llm.decoding import left_pad
from agents.llm.engine import GenerationRequest, InferenceEngine
from agents.llm.loading import load_model, resolve_dtype
from agents.model import ModelConfig

log = structlog.get_logger()

BenchResult = dict[str, float | int | str]

# One linear layer of SmolLM2's MLP at a batch of 512 tokens: large enough to be bound by
# arithmetic, small enough to time in a fraction of a second.
CEILING_SHAPE = (512, 576, 1536)


def matmul_ceiling(dtype: torch.dtype, shape: tuple[int, int, int] = CEILING_SHAPE,
                   repeats: int = 20) -> float:
    """GFLOP/s of one (m x k) @ (k x n) product in `dtype` on the CPU, best of `repeats`."""
    m, k, n = shape
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    torch.mm(a, b)  # warm-up: kernel selection, packing buffers
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def forward_flops_per_token(model: nn.Module) -> int:
    """2 x the transformer body's weights: what every token's forward pass multiplies by.

    Left out: the input embedding (a lookup), the output layer (it runs only where
    logits are kept: one position per prompt when decoding, the scored tokens in an
    update) and attention over these short prompts.
    """
    embedding = model.get_input_embeddings().weight  # type: ignore[operator]
    output = model.get_output_embeddings()  # type: ignore[operator]
    outside = {id(embedding)} | ({id(output.weight)} if output is not None else set())
    return 2 * sum(p.numel() for p in model.parameters() if id(p) not in outside)


def beside_ceiling(result: dict[str, Any], dtype: str, work_gflops: dict[str, float]
                   ) -> dict[str, Any]:
    """`result` with its precision, that precision's matmul ceiling timed now (on the
    torch thread, as the benchmark ran) and, for each named rate of work in GFLOP/s, its
    share of the ceiling as `<name>_of_ceiling`."""
    ceiling = on_torch_thread(matmul_ceiling, resolve_dtype(dtype))
    shares = {f"{name}_of_ceiling": round(rate / ceiling, 4) for name, rate in work_gflops.items()}
    return {**result, "dtype": dtype, "ceiling_gflops": round(ceiling, 1), **shares}


def bench_inference_dtypes(config: ModelConfig, dtypes: list[str], agents: int = 8,
                           new_tokens: int = 32) -> list[BenchResult]:
    """`bench_inference` once per dtype, each with its matmul ceiling and share of it."""
    results = []
    for dtype in dtypes:
        result = bench_inference(config.model_copy(update={"dtype": dtype}), agents, new_tokens)
        achieved = float(result["engine_tok_s"]) * int(result["flops_per_token"]) / 1e9
        results.append(beside_ceiling({**result, "engine_gflops": round(achieved, 1)}, dtype,
                                      {"engine": achieved}))
    return results


def bench_inference(config: ModelConfig, agents: int = 8, new_tokens: int = 32) -> BenchResult:
    """Measure tokens/s of `agents` concurrent requests through the engine and two baselines.

    Returns:
        A JSON-ready dict: seconds and tokens/s of each way, and the engine's
        ratios to both baselines.
    """
    model, tokenizer = load_model(config)
    prompts = _prompts(tokenizer, agents)
    engine = InferenceEngine(model, tokenizer, max_batch=max(agents, 1), ignore_eos=True)
    asyncio.run(_engine_run(engine, prompts[:2], 2))  # warm-up: allocator, kernels
    # Engine and batched are short: take the best of two against a noisy shared CPU.
    engine_s = min(asyncio.run(_engine_run(engine, prompts, new_tokens)) for _ in range(2))
    # The baselines run on the engine's thread too: torch work on a second thread slows
    # both (agents.llm.compute).
    batched_s = min(on_torch_thread(_batched_run, model, tokenizer, prompts, new_tokens)
                    for _ in range(2))
    naive_s = sum(on_torch_thread(_batched_run, model, tokenizer, [p], new_tokens)
                  for p in prompts)
    tokens = agents * new_tokens
    result: BenchResult = {
        "model": config.name,
        "device": str(engine.device),
        "agents": agents,
        "new_tokens": new_tokens,
        "threads": torch.get_num_threads(),
        "engine_s": round(engine_s, 3),
        "naive_s": round(naive_s, 3),
        "batched_s": round(batched_s, 3),
        "engine_tok_s": round(tokens / engine_s, 1),
        "naive_tok_s": round(tokens / naive_s, 1),
        "batched_tok_s": round(tokens / batched_s, 1),
        "engine_vs_naive": round(naive_s / engine_s, 2),
        "engine_vs_batched": round(batched_s / engine_s, 3),
        "flops_per_token": forward_flops_per_token(model),
    }
    log.info("bench_inference", **result)
    return result


def render_inference_bench(result: BenchResult) -> str:
    """A small text table of `bench_inference`'s result."""
    header = (
        f"inference: {result['agents']} agents x {result['new_tokens']} tokens, "
        f"{result['model']} on {result['device']} ({result['threads']} threads), sampled"
    )
    rows = [
        ("engine (concurrent, dynamic batching)", "engine"),
        ("naive (one model.generate per request)", "naive"),
        ("batched (one offline model.generate)", "batched"),
    ]
    lines = [header, f"{'way':42}{'seconds':>10}{'tokens/s':>12}"]
    for label, key in rows:
        lines.append(f"{label:42}{result[f'{key}_s']:>10}{result[f'{key}_tok_s']:>12}")
    lines.append(
        f"engine = {result['engine_vs_naive']}x naive, "
        f"{float(result['engine_vs_batched']):.0%} of the offline batched ceiling"
    )
    return "\n".join(lines)


def render_side_by_side(results: Sequence[Mapping[str, Any]],
                        block: Callable[[Mapping[str, Any]], list[str]],
                        against_first: Callable[[Mapping[str, Any], Mapping[str, Any]], str]
                        ) -> str:
    """Per-precision bench results: each one's `block` of lines under its precision, then
    each later precision `against_first` (the comparison line)."""
    lines = []
    for result in results:
        lines += [f"[{result['dtype']}]", *block(result), ""]
    lines += [against_first(result, results[0]) for result in results[1:]]
    return "\n".join(lines).rstrip()


def render_inference_dtypes(results: list[BenchResult]) -> str:
    """Each precision's table, then the engine's tokens/s side by side against the first."""
    def block(result: Mapping[str, Any]) -> list[str]:
        return [render_inference_bench(dict(result)),
                f"matmul ceiling {result['ceiling_gflops']} GFLOP/s; the engine's forward "
                f"work {result['engine_gflops']} GFLOP/s = "
                f"{float(result['engine_of_ceiling']):.1%} of it"]

    def against_first(result: Mapping[str, Any], base: Mapping[str, Any]) -> str:
        speedup = float(result["engine_tok_s"]) / float(base["engine_tok_s"])
        return f"engine {result['dtype']} = {speedup:.2f}x engine {base['dtype']}"

    return render_side_by_side(results, block, against_first)


def _prompts(tokenizer: PreTrainedTokenizerBase, agents: int) -> list[list[int]]:
    """Similar short chat prompts, one per agent."""
    prompts = []
    for i in range(agents):
        messages = [
            {"role": "system", "content": f"You are agent_{i} in a cooperative game."},
            {"role": "user", "content": f"Tell agent_{(i + 1) % agents} which colour to pick."},
        ]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompts.append(tokenizer.encode(str(text), add_special_tokens=False))
    return prompts


async def _engine_run(engine: InferenceEngine, prompts: list[list[int]], new_tokens: int) -> float:
    requests = [
        GenerationRequest(p, new_tokens, temperature=1.0, seed=i) for i, p in enumerate(prompts)
    ]
    start = time.perf_counter()
    generations = await asyncio.gather(*(engine.generate(r) for r in requests))
    elapsed = time.perf_counter() - start
    assert all(len(g.token_ids) == new_tokens for g in generations)
    await engine.aclose()
    return elapsed


def _batched_run(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: list[list[int]], new_tokens: int
) -> float:
    """One `model.generate` call over `prompts`, sampling exactly `new_tokens` tokens each."""
    pad = tokenizer.pad_token_id
    ids, attention = left_pad(prompts, int(pad) if pad is not None else 0, _device(model))
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(  # type: ignore[operator]
            input_ids=ids,
            attention_mask=attention,
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            pad_token_id=pad,
        )
    elapsed = time.perf_counter() - start
    assert out.shape[1] == ids.shape[1] + new_tokens
    return elapsed


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
