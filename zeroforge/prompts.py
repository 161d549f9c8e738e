"""ZeroForge's prompt sets and the fixed prompt batch (specs/zeroforge.md §3.1, §5.1, A10).

The authors' named query arrays ship in ``zeroforge/queries/<name>.txt`` (see its README for the
source). A run's ``k`` queries are replicated ``copies`` times in the order ``[q_0..q_{k−1}] × copies``
(B = 3k in the paper); each batch slot gets a template drawn uniformly once at start
(``"a photo of a {}"`` or ``"a {}"``, [C]) and the prompts never change afterwards.
"""

import random
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import torch
from torch import Tensor

QUERY_DIR = Path(__file__).with_name("queries")
#: the released code's prefixes ("a photo of a " / "a ") as templates
DEFAULT_TEMPLATES = ("a photo of a {}", "a {}")

__all__ = ["QUERY_DIR", "DEFAULT_TEMPLATES", "PromptBatch", "available_query_sets", "load_query_set", "resolve_queries",
           "build_prompt_batch"]


@dataclass
class PromptBatch:
    """The fixed prompt layout of a ZeroForge run.

    Attributes:
        queries: the ``k`` unique queries.
        prompts: ``B = copies·k`` templated prompts, slot ``b`` holds query ``b mod k``.
        query_id: ``[B]`` long, ``b mod k``.
    """

    queries: List[str]
    prompts: List[str]
    query_id: Tensor


def available_query_sets() -> List[str]:
    """Names of the shipped query sets."""
    return sorted(p.stem for p in QUERY_DIR.glob("*.txt"))


def load_query_set(name: str) -> List[str]:
    """The queries of a shipped set (``object_five_with_original``, ``four``, ``paper_twelve``, ...)."""
    path = QUERY_DIR / f"{name}.txt"
    if not path.is_file():
        raise ValueError(f"unknown query set {name!r}; shipped sets: {available_query_sets()}. "
                         "Or list the queries yourself with queries: [...]")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def resolve_queries(queries: Optional[Sequence[str]] = None, query_set: Optional[str] = None) -> List[str]:
    """The run's unique queries from exactly one of ``queries`` / ``query_set``; clear errors on empty input."""
    if (queries is None) == (query_set is None):
        raise ValueError("give exactly one of queries: [...] or query_set: <name> "
                         f"(shipped sets: {available_query_sets()})")
    out = list(queries) if queries is not None else load_query_set(query_set)
    if len(out) == 0:
        raise ValueError("the prompt list is empty: ZeroForge needs at least one text query (queries: [chair, ...])")
    for q in out:
        if not isinstance(q, str) or not q.strip():
            raise ValueError(f"empty or non-string query {q!r} in the prompt list")
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate queries in {out}: each query must appear once (copies are made by copies_per_query)")
    return [q.strip() for q in out]


def build_prompt_batch(queries: Sequence[str], copies: int = 3, templates: Sequence[str] = DEFAULT_TEMPLATES,
                       seed: int = 0) -> PromptBatch:
    """Replicate ``queries`` ``copies`` times and draw one template per slot (fixed by ``seed``).

    Example:
        >>> build_prompt_batch(["cup", "fork"], copies=2, templates=["a {}"]).prompts
        ['a cup', 'a fork', 'a cup', 'a fork']
    """
    if copies < 1:
        raise ValueError(f"copies_per_query must be >= 1, got {copies}")
    if len(templates) == 0 or any("{}" not in t for t in templates):
        raise ValueError(f"templates must be a non-empty list of strings with one '{{}}', got {list(templates)}")
    rng = random.Random(seed)
    k = len(queries)
    prompts = [rng.choice(list(templates)).format(queries[b % k]) for b in range(copies * k)]
    return PromptBatch(list(queries), prompts, torch.arange(copies * k) % k)
