"""Evaluation prompt sets of ISS.

* :func:`shapenet_eval_prompts` — the paper's 52 ShapeNet texts (13 categories × 4), shipped in
  ``iss/prompts/iss_eval_prompts.txt`` (source and attribution: ``iss/prompts/README.md``).
* :func:`shapeworld_eval_prompts` — shapeworld's held-out prompts (held-out phrasing, never seen by the
  CLIPs in training) with their retrieval captions among the 66 kind × colour captions.
"""

from pathlib import Path
from typing import List, Optional, Tuple

__all__ = ["PROMPT_FILE", "SHAPENET_PROMPT_CATEGORIES", "read_prompt_file", "shapenet_eval_prompts",
           "shapeworld_eval_prompts", "PromptSet"]

PROMPT_FILE = Path(__file__).parent / "prompts" / "iss_eval_prompts.txt"

#: category of each of the 52 lines, in file order (data README: from the code's generate.sh)
SHAPENET_PROMPT_CATEGORIES: Tuple[str, ...] = (
    ("cabinet",) * 4 + ("lamp",) * 4 + ("telephone",) * 4 + ("loudspeaker",) * 4 + ("display",)
    + ("table",) * 4 + ("chair",) * 4 + ("car",) * 4 + ("airplane",) * 4 + ("watercraft",) * 4
    + ("sofa",) * 4 + ("bench",) * 4 + ("rifle",) * 4 + ("display",) * 3
)


class PromptSet:
    """Prompts with a retrieval pool for R-precision.

    Attributes:
        prompts: the texts fed to stage 2.
        pool: the caption pool retrieved against.
        true_index: per prompt, the index of its true caption in ``pool``.
        labels: per prompt, a label (category, or ``kind colour``).
    """

    def __init__(self, prompts: List[str], pool: List[str], true_index: List[int], labels: Optional[List[str]] = None) -> None:
        if len(prompts) != len(true_index):
            raise ValueError(f"{len(prompts)} prompts but {len(true_index)} true indices")
        if any(not (0 <= i < len(pool)) for i in true_index):
            raise ValueError("a true caption index is outside the retrieval pool")
        self.prompts, self.pool, self.true_index = list(prompts), list(pool), list(true_index)
        self.labels = list(labels) if labels is not None else list(prompts)

    def __len__(self) -> int:
        return len(self.prompts)


def read_prompt_file(path: str) -> List[str]:
    """Non-empty lines of a UTF-8 prompt file (one prompt per line, kept as written)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"prompt file not found: {file} (one prompt per line)")
    prompts = [line.rstrip("\n") for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"prompt file {file} has no prompts")
    return prompts


def shapenet_eval_prompts() -> PromptSet:
    """The 52 ShapeNet prompts of the paper; R-precision retrieves among the 52 themselves (§10.1 (b))."""
    prompts = read_prompt_file(str(PROMPT_FILE))
    if len(prompts) != len(SHAPENET_PROMPT_CATEGORIES):
        raise RuntimeError(f"{PROMPT_FILE} has {len(prompts)} prompts, expected {len(SHAPENET_PROMPT_CATEGORIES)}")
    return PromptSet(prompts, prompts, list(range(len(prompts))), list(SHAPENET_PROMPT_CATEGORIES))


def shapeworld_eval_prompts(which: str = "heldout") -> PromptSet:
    """shapeworld evaluation prompts in the held-out phrasing ``"an image of a {colour} {shape}"``.

    Args:
        which: ``heldout`` — the 10 held-out (kind, colour) pairs of shapeworld's quality bars; ``all`` — all 66 pairs.

    The pool is ``all_captions("a {colour} {shape}")`` (66 captions); the true caption is the prompt's pair.
    """
    from shapeworld.captions import HELDOUT_PROMPT_PAIRS, HELDOUT_TEMPLATES, RETRIEVAL_TEMPLATE, all_captions, caption, pair_index
    from shapeworld.shapes import COLOUR_NAMES, KINDS

    if which == "heldout":
        pairs = list(HELDOUT_PROMPT_PAIRS)
    elif which == "all":
        pairs = [(k, c) for k in KINDS for c in COLOUR_NAMES]
    else:
        raise ValueError(f"which must be 'heldout' or 'all', got {which!r}")
    prompts = [caption(k, c, HELDOUT_TEMPLATES[0]) for k, c in pairs]
    return PromptSet(prompts, all_captions(RETRIEVAL_TEMPLATE), [pair_index(k, c) for k, c in pairs],
                     [f"{k} {c}" for k, c in pairs])
