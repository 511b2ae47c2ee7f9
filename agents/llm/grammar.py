"""JSON-Schema constrained decoding with xgrammar, for transformers models on CPU.

One `SchemaGrammar` per (tokenizer, vocabulary width) compiles each schema
once; every sequence gets its own `GrammarMatcher`. The same code serves the
sampler (mask the next-token logits) and the trainer (replay a matcher over
tokens already generated, to rebuild each step's mask), so that both see the
very same constraint.
"""

from __future__ import annotations

import threading

import structlog
import torch
import xgrammar as xgr
from transformers import PreTrainedTokenizerBase

log = structlog.get_logger()

_BITS = torch.arange(32, dtype=torch.int32)


class SchemaGrammar:
    """Compiles JSON Schemas for one tokenizer and builds matchers and masks.

    Args:
        tokenizer: the model's tokenizer.
        vocab_size: the model's logits width (may exceed the tokenizer's vocabulary).
        stop_token_ids: tokens that end generation once the JSON is complete.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, vocab_size: int, stop_token_ids: list[int]
    ) -> None:
        self.vocab_size = vocab_size
        self.stop_token_ids = list(stop_token_ids)
        self._tokenizer = tokenizer
        self._compiler = xgr.GrammarCompiler(_tokenizer_info(tokenizer, vocab_size, stop_token_ids))
        self._compiled: dict[str, xgr.CompiledGrammar] = {}
        self._lock = threading.Lock()

    def compiled(self, schema: str) -> xgr.CompiledGrammar:
        """The compiled grammar of `schema` (a JSON Schema string), compiled once.

        Raises:
            ValueError: if `schema` is not a JSON Schema xgrammar can compile.
        """
        with self._lock:
            grammar = self._compiled.get(schema)
            if grammar is None:
                try:
                    # No free whitespace: a small model otherwise pads JSON with newlines.
                    grammar = self._compiler.compile_json_schema(schema, any_whitespace=False)
                except RuntimeError as error:  # xgrammar reports bad schemas this way
                    raise ValueError(f"cannot compile JSON schema: {error}") from error
                self._compiled[schema] = grammar
                log.debug("schema_compiled", schemas=len(self._compiled))
            return grammar

    def matcher(self, schema: str) -> xgr.GrammarMatcher:
        """A fresh matcher for one sequence constrained to `schema`."""
        return xgr.GrammarMatcher(self.compiled(schema))

    def new_bitmask(self, rows: int) -> torch.Tensor:
        """An all-allowed packed bitmask for `rows` sequences."""
        return xgr.allocate_token_bitmask(rows, self.vocab_size)

    def forced_stop(self, matcher: xgr.GrammarMatcher) -> int | None:
        """The stop token when the grammar is complete and allows nothing else, else None.

        Such a step is deterministic (log-prob 0), so the sampler may append the
        token without running the model.
        """
        if not matcher.is_completed() or matcher.is_terminated():
            return None
        bitmask = self.new_bitmask(1)
        matcher.fill_next_token_bitmask(bitmask)
        allowed = unpack_bitmask(bitmask, self.vocab_size)[0].nonzero().flatten().tolist()
        if len(allowed) == 1 and allowed[0] in self.stop_token_ids:
            return int(allowed[0])
        return None

    def forced_tokens(self, matcher: xgr.GrammarMatcher) -> list[int]:
        """Tokens of the text the schema allows as the only continuation, else [].

        Where the schema leaves one way to go on (`{"code": "` before an enum
        value), the sampler writes it in the tokenizer's own tokens, without
        sampling (log-prob 0): the message's randomness and its entropy are then
        in the choices the schema leaves open, not in how `{"` is spelled.
        """
        if matcher.is_terminated():
            return []
        text = matcher.find_jump_forward_string()
        if not text:
            return []
        tokens = [int(t) for t in self._tokenizer.encode(text, add_special_tokens=False)]
        probe = matcher.fork()
        return tokens if all(probe.accept_token(token) for token in tokens) else []

    def replay_masks(self, schema: str, token_ids: list[int]) -> torch.Tensor:
        """The allowed-token mask before each of `token_ids`, shape (len, vocab), bool.

        Replays the sampler: a forced token's mask allows that token alone.

        Raises:
            ValueError: if the tokens break the schema.
        """
        matcher = self.matcher(schema)
        bitmask = self.new_bitmask(len(token_ids))
        forced = self.forced_tokens(matcher)
        only = torch.zeros((len(token_ids), self.vocab_size), dtype=torch.bool)
        for step, token in enumerate(token_ids):
            if forced:
                only[step, forced.pop(0)] = True
            else:
                matcher.fill_next_token_bitmask(bitmask, step)
            if not matcher.accept_token(token):
                raise ValueError(f"token {token} at step {step} breaks the JSON schema")
            if not forced:
                forced = self.forced_tokens(matcher)
        masks = unpack_bitmask(bitmask, self.vocab_size)
        pinned = only.any(dim=-1)
        masks[pinned] = only[pinned]
        return masks


def unpack_bitmask(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Packed int32 bitmask (rows, ceil(V/32)) to a bool mask (rows, V); True = allowed."""
    bits = (bitmask.unsqueeze(-1) >> _BITS) & 1
    return bits.reshape(bitmask.shape[0], -1)[:, :vocab_size].bool()


def _tokenizer_info(
    tokenizer: PreTrainedTokenizerBase, vocab_size: int, stop_token_ids: list[int]
) -> xgr.TokenizerInfo:
    """xgrammar's view of the tokenizer, with special tokens (other than stops) banned.

    xgrammar treats a special token by its text, so `<|im_start|>` would be legal
    inside a JSON string; an empty entry marks it special, which xgrammar never allows.
    """
    detected = xgr.TokenizerInfo.from_huggingface(
        tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids
    )
    special = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    special -= set(stop_token_ids)
    vocab = [""] * vocab_size
    for token, index in tokenizer.get_vocab().items():
        if index < vocab_size and index not in special:
            vocab[index] = token
    return xgr.TokenizerInfo(
        vocab,
        detected.vocab_type,
        vocab_size=vocab_size,
        stop_token_ids=stop_token_ids,
        add_prefix_space=detected.add_prefix_space,
    )


_GRAMMARS: dict[
    tuple[int, int, tuple[int, ...]], tuple[PreTrainedTokenizerBase, SchemaGrammar]
] = {}
_GRAMMARS_LOCK = threading.Lock()


def schema_grammar(
    tokenizer: PreTrainedTokenizerBase, vocab_size: int, stop_token_ids: list[int]
) -> SchemaGrammar:
    """The shared `SchemaGrammar` of a tokenizer (built once: it scans the vocabulary)."""
    key = (id(tokenizer), vocab_size, tuple(stop_token_ids))
    with _GRAMMARS_LOCK:
        entry = _GRAMMARS.get(key)
        # The entry keeps the tokenizer alive, so its id cannot be reused meanwhile.
        if entry is None or entry[0] is not tokenizer:
            entry = (tokenizer, SchemaGrammar(tokenizer, vocab_size, stop_token_ids))
            _GRAMMARS[key] = entry
        return entry[1]
