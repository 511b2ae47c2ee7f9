"""What messages carry, in bits: the measures of the emergent-communication literature.

Plug-in estimates from counts (no bias correction): with few samples per value they
overstate mutual information, so reports give the sample count beside every figure.

- positive signalling: I(meaning; message), the speaker's message depends on what it
  alone knows (Lowe et al. 2019, "On the pitfalls of measuring emergent communication");
- topographic similarity: how far the structure of meanings is kept in the messages,
  Spearman's rho between pairwise meaning distances (attributes that differ) and
  message distances (edits) (Brighton & Kirby 2006; Lazaridou et al. 2018).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist
from scipy.stats import spearmanr

TOPOGRAPHY_SAMPLE = 400
"""Pairs grow as n^2: topographic similarity uses at most this many exchanges (seeded)."""


def entropy(values: Sequence[Hashable]) -> float:
    """Shannon entropy of the empirical distribution of `values`, in bits (0 when empty)."""
    counts = Counter(values)
    total = len(values)
    return -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0


def mutual_information(xs: Sequence[Hashable], ys: Sequence[Hashable]) -> float:
    """I(X; Y) = H(X) + H(Y) - H(X, Y) of paired samples, in bits (never below 0)."""
    if len(xs) != len(ys):
        raise ValueError(f"paired samples differ in length: {len(xs)} and {len(ys)}")
    joint = entropy(list(zip(xs, ys, strict=True)))
    return max(0.0, entropy(xs) + entropy(ys) - joint)


def topographic_similarity(meanings: Sequence[str], messages: Sequence[str],
                           seed: int = 0) -> float | None:
    """Spearman's rho of meaning distance vs message edit distance over all pairs.

    A meaning is a phrase of attribute words (`red circle`); its distance to another is
    the number of positions whose words differ. None where it is undefined: fewer than
    three exchanges, meanings of different lengths, or a distance that never varies.
    """
    if len(meanings) != len(messages):
        raise ValueError(f"paired samples differ in length: {len(meanings)} and {len(messages)}")
    words = [meaning.split() for meaning in meanings]
    if len(words) < 3 or len({len(w) for w in words}) != 1:
        return None
    chosen = sorted(random.Random(seed).sample(range(len(words)), min(len(words),
                                                                      TOPOGRAPHY_SAMPLE)))
    attributes = np.array([words[i] for i in chosen])
    meaning_distance = (attributes[:, None, :] != attributes[None, :, :]).sum(axis=-1)
    message_distance = cdist([messages[i] for i in chosen], [messages[i] for i in chosen],
                             scorer=Levenshtein.distance)
    upper = np.triu_indices(len(chosen), k=1)
    x, y = meaning_distance[upper], message_distance[upper]
    if x.min() == x.max() or y.min() == y.max():
        return None
    return float(spearmanr(x, y).statistic)
