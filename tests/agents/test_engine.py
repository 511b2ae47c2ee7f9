"""InferenceEngine: batching, JSON constraint, scoring, adapters.

That the log-probs it records are those the trainer recomputes is tested with
the rest of `agents.llm.policy`, in test_actions.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from structlog.testing import capture_logs
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.llm import Generation, GenerationRequest, InferenceEngine, get_engine, load_model
from agents.llm.grammar import schema_grammar
from agents.model import ModelConfig

SCHEMA = json.dumps({"type": "object",
                     "properties": {"to": {"type": "string", "enum": ["alice", "bob"]},
                                    "word": {"type": "string", "maxLength": 6}},
                     "required": ["to", "word"]})
CODE_SCHEMA = json.dumps({"type": "object", "properties": {"code": {"enum": ["zub", "kep"]}},
                          "required": ["code"], "additionalProperties": False})

Tiny = tuple[PreTrainedModel, PreTrainedTokenizerBase]


@pytest.fixture(scope="session")
def tiny(tiny_model_dir: Path) -> Tiny:
    return load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))


@pytest.fixture
def engine(tiny: Tiny) -> InferenceEngine:
    return InferenceEngine(*tiny, seed=0)


def prompts(tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """Prompts of different lengths, so that batches need left padding."""
    texts = ["Hi.", "Tell bob the plan, briefly.", "Who goes first? Answer with a name and a word."]
    return [tokenizer.encode(text) for text in texts]


async def test_top_p_cuts_the_tail(engine: InferenceEngine, tiny: Tiny) -> None:
    _, tokenizer = tiny
    prompt = prompts(tokenizer)[1]
    full = await engine.generate(GenerationRequest(prompt, 8, 1.0, 1.0, seed=3))
    nucleus = await engine.generate(GenerationRequest(prompt, 8, 1.0, 0.5, seed=3))
    # A renormalised nucleus gives each kept token more mass than the full softmax.
    assert sum(nucleus.logprobs) / len(nucleus.logprobs) > sum(full.logprobs) / len(full.logprobs)


async def test_constrained_output_follows_the_schema(engine: InferenceEngine, tiny: Tiny) -> None:
    _, tokenizer = tiny
    requests = [GenerationRequest(p, 40, 1.0, json_schema=SCHEMA, seed=7)
                for p in prompts(tokenizer)]
    generations = await asyncio.gather(*(engine.generate(r) for r in requests))
    finished = [g for g in generations if g.finished]
    assert finished, "no constrained generation completed within 40 tokens"
    for generation in finished:
        payload = json.loads(generation.text)
        assert payload["to"] in {"alice", "bob"}
        assert len(payload["word"]) <= 6
        assert generation.token_ids[-1] == tokenizer.eos_token_id
        assert generation.logprobs[-1] == 0.0  # the stop token was the only legal one


async def test_text_the_schema_fixes_is_written_canonically_without_sampling(
    engine: InferenceEngine, tiny: Tiny) -> None:
    _, tokenizer = tiny
    prefix = tokenizer.encode('{"code": "', add_special_tokens=False)
    words = set()
    for seed in range(6):
        request = GenerationRequest(prompts(tokenizer)[0], 20, 2.0, json_schema=CODE_SCHEMA,
                                    seed=seed)
        generation = await engine.generate(request)
        words.add(json.loads(generation.text)["code"])
        assert generation.token_ids[: len(prefix)] == prefix  # never `{` `"` `c` `od` ...
        assert generation.logprobs[: len(prefix)] == [0.0] * len(prefix)
        # Only the choice between the two words is sampled (one or two positions).
        assert 1 <= sum(lp != 0.0 for lp in generation.logprobs) <= 2
    assert words == {"zub", "kep"}


def test_special_tokens_are_banned_inside_json_strings(tiny: Tiny) -> None:
    model, tokenizer = tiny
    grammar = schema_grammar(tokenizer, model.config.vocab_size, [tokenizer.eos_token_id])
    inside_string = tokenizer.encode('{"to": "alice", "word": "', add_special_tokens=False)
    mask = grammar.replay_masks(SCHEMA, [*inside_string, tokenizer.encode("a")[0]])
    assert mask[-1].sum() > 1000  # many ordinary tokens are legal here
    assert not mask[-1, tokenizer.convert_tokens_to_ids("<|im_start|>")]


async def test_greedy_batched_equals_greedy_alone(engine: InferenceEngine, tiny: Tiny) -> None:
    _, tokenizer = tiny
    requests = [GenerationRequest(p, 10, temperature=0.0) for p in prompts(tokenizer)]
    together = await asyncio.gather(*(engine.generate(r) for r in requests))
    alone = [await engine.generate(r) for r in requests]
    assert [g.token_ids for g in together] == [g.token_ids for g in alone]


async def test_same_seed_same_sample(engine: InferenceEngine, tiny: Tiny) -> None:
    _, tokenizer = tiny
    request = GenerationRequest(prompts(tokenizer)[0], 10, temperature=1.0, seed=42)
    first, second = await engine.generate(request), await engine.generate(request)
    other = await engine.generate(GenerationRequest(request.prompt_ids, 10, seed=43))
    assert first.token_ids == second.token_ids
    assert first.token_ids != other.token_ids


async def test_concurrent_requests_share_one_batch(engine: InferenceEngine, tiny: Tiny) -> None:
    _, tokenizer = tiny
    requests = [GenerationRequest(p, 5, seed=i) for i, p in enumerate(prompts(tokenizer) * 2)]
    with capture_logs() as logs:
        generations = await asyncio.gather(*(engine.generate(r) for r in requests))
        for _ in range(100):  # the batch is logged once it ends, just after callers resume
            if any(entry.get("size") == 6 for entry in logs):
                break
            await asyncio.sleep(0.01)
    # Only batches of 6: an engine of an earlier test may still log a batch it had begun
    # (all engines share the one torch thread); this engine's stats count its own.
    batches = [entry for entry in logs if entry["event"] == "engine_batch"
               and entry["size"] == 6]
    assert len(batches) == 1
    assert batches[0]["tokens_out"] == sum(len(g.token_ids) for g in generations)
    assert engine.stats.batches == 1
    assert engine.stats.calls == 6
    assert engine.stats.tokens_out == sum(len(g.token_ids) for g in generations)
    assert engine.stats.tokens_in == sum(len(r.prompt_ids) for r in requests)


async def test_rows_leave_the_batch_at_their_own_length(
    engine: InferenceEngine, tiny: Tiny) -> None:
    _, tokenizer = tiny
    lengths = [2, 9, 5]
    requests = [GenerationRequest(p, n, temperature=0.0)
                for p, n in zip(prompts(tokenizer), lengths, strict=True)]
    generations = await asyncio.gather(*(engine.generate(r) for r in requests))
    for generation, length in zip(generations, lengths, strict=True):
        assert len(generation.token_ids) == length or generation.finished
    alone = await engine.generate(requests[1])
    assert generations[1].token_ids == alone.token_ids


async def test_event_loop_stays_live_during_a_batch(engine: InferenceEngine, tiny: Tiny) -> None:
    _, tokenizer = tiny
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    beat = asyncio.create_task(heartbeat())
    await engine.generate(GenerationRequest(prompts(tokenizer)[2], 48, temperature=0.0))
    beat.cancel()
    assert ticks >= 5


async def test_a_cancelled_caller_does_not_disturb_the_others(
    engine: InferenceEngine, tiny: Tiny) -> None:
    _, tokenizer = tiny
    doomed = asyncio.create_task(engine.generate(GenerationRequest(prompts(tokenizer)[0], 30)))
    kept = asyncio.create_task(engine.generate(GenerationRequest(prompts(tokenizer)[1], 4)))
    await asyncio.sleep(0)
    doomed.cancel()
    assert len((await kept).token_ids) == 4
    assert len((await engine.generate(GenerationRequest(prompts(tokenizer)[2], 3))).token_ids) == 3


def reference_score(model: torch.nn.Module, prompt: list[int], option: list[int]) -> float:
    with torch.no_grad():
        logits = model(torch.tensor([prompt + option])).logits[0, len(prompt) - 1 : -1]
    picked = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(option)[:, None])
    return float(picked.sum())


async def test_score_options_equals_full_forward_per_option(
    engine: InferenceEngine, tiny: Tiny) -> None:
    model, tokenizer = tiny
    short, long = prompts(tokenizer)[0], prompts(tokenizer)[2]
    options = [tokenizer.encode(w, add_special_tokens=False) for w in [" up", " down left", " x"]]
    scores_short, scores_long = await asyncio.gather(
        engine.score_options(short, options), engine.score_options(long, options[:2])
    )
    assert engine.stats.batches == 1  # both callers shared one batch
    for prompt, scores in [(short, scores_short), (long, scores_long)]:
        expected = [reference_score(model, prompt, o) for o in options[: len(scores)]]
        assert scores == pytest.approx(expected, abs=1e-4)


async def test_empty_inputs_are_rejected(engine: InferenceEngine) -> None:
    with pytest.raises(ValueError):
        await engine.generate(GenerationRequest([]))
    with pytest.raises(ValueError):
        await engine.score_options([1, 2], [[3], []])


@pytest.fixture
def two_adapters(tiny_model_dir: Path) -> PeftModel:
    base, _ = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))
    # init_lora_weights=False: random B, so each adapter changes the outputs.
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(1)
    model = get_peft_model(base, config, adapter_name="alpha")
    model.add_adapter("beta", config)
    return model


async def test_mixed_adapter_batch_matches_each_adapter_alone(
    two_adapters: PeftModel, tiny: Tiny) -> None:
    _, tokenizer = tiny
    engine = InferenceEngine(two_adapters, tokenizer)
    flags = {n: p.requires_grad for n, p in two_adapters.named_parameters()}
    prompt = prompts(tokenizer)[1]
    requests = [GenerationRequest(prompt, 6, 0.0, adapter=a)
                for a in ["alpha", "beta", None, "beta"]]
    together = await asyncio.gather(*(engine.generate(r) for r in requests))
    assert engine.stats.batches == 1
    assert len({tuple(g.token_ids) for g in together[:3]}) == 3  # adapters really differ
    assert together[1].token_ids == together[3].token_ids
    for request, generation in zip(requests, together, strict=True):
        alone = await engine.generate(request)
        assert alone.token_ids == generation.token_ids
    assert {n: p.requires_grad for n, p in two_adapters.named_parameters()} == flags
    assert two_adapters.active_adapter == "alpha"


async def test_score_options_uses_the_adapter(two_adapters: PeftModel, tiny: Tiny) -> None:
    _, tokenizer = tiny
    engine = InferenceEngine(two_adapters, tokenizer)
    prompt, options = prompts(tokenizer)[0], [[300], [400, 500]]
    with_a, with_b = await asyncio.gather(
        engine.score_options(prompt, options, adapter="alpha"),
        engine.score_options(prompt, options, adapter="beta"),
    )
    two_adapters.set_adapter("beta")
    expected_b = [reference_score(two_adapters, prompt, o) for o in options]
    two_adapters.set_adapter("alpha")
    assert with_b == pytest.approx(expected_b, abs=1e-4)
    assert with_a != pytest.approx(with_b, abs=1e-3)


def test_get_engine_is_one_per_model_config(tiny_model_dir: Path) -> None:
    config = ModelConfig(name=str(tiny_model_dir), device="cpu")
    engine = get_engine(config)
    assert get_engine(ModelConfig(name=str(tiny_model_dir), device="cpu")) is engine
    assert get_engine(config.model_copy(update={"dtype": "bfloat16"})) is not engine


@pytest.mark.slow
async def test_real_default_model_loads_offline_and_generates() -> None:
    engine = get_engine(ModelConfig(device="cpu"))
    tokenizer = engine.tokenizer
    prompt = tokenizer.encode("<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n")
    generation = await engine.generate(GenerationRequest(prompt, 8, temperature=0.0))
    assert len(generation.token_ids) > 0
    assert generation.text.strip()


async def test_a_bad_request_fails_alone(engine: InferenceEngine, tiny: Tiny) -> None:
    _, tokenizer = tiny
    good = asyncio.create_task(engine.generate(GenerationRequest(prompts(tokenizer)[0], 3)))
    with pytest.raises(ValueError):
        await engine.generate(GenerationRequest(prompts(tokenizer)[1], 3, json_schema="{not json"))
    with pytest.raises(ValueError):
        await engine.generate(GenerationRequest([1, 10**9], 3))
    assert len((await good).token_ids) == 3


async def test_unknown_adapter_fails_only_its_callers(two_adapters: PeftModel, tiny: Tiny) -> None:
    _, tokenizer = tiny
    engine = InferenceEngine(two_adapters, tokenizer)
    prompt = prompts(tokenizer)[0]
    bad, good = await asyncio.gather(
        engine.generate(GenerationRequest(prompt, 3, adapter="nobody")),
        engine.generate(GenerationRequest(prompt, 3, adapter="beta")),
        return_exceptions=True,
    )
    assert isinstance(bad, ValueError)
    assert isinstance(good, Generation) and len(good.token_ids) == 3
