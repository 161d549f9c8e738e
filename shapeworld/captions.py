"""Captions of shapeworld objects: templates, the fixed held-out caption split, held-out prompts.

Caption split: training draws from :data:`TRAIN_TEMPLATES`; :data:`HELDOUT_TEMPLATES` are phrasings
never seen in training (used for held-out prompts and evaluation). Retrieval ranks an image against
one caption per (kind, colour) pair written with one template (:func:`all_captions`); the quality
bars use :data:`RETRIEVAL_TEMPLATE`.

Example:
    >>> caption("cube", "orange", "a {colour} {shape}")
    'an orange cube'
"""

import random
from typing import Optional, Sequence

from shapeworld.shapes import COLOUR_NAMES, KINDS

#: phrasings used in training
TRAIN_TEMPLATES: tuple[str, ...] = (
    "a {colour} {shape}",
    "a photo of a {colour} {shape}",
    "a {shape} that is {colour}",
    "{colour} {shape}",
    "a render of a {colour} {shape}",
    "a 3d model of a {colour} {shape}",
)
#: phrasings held out from training
HELDOUT_TEMPLATES: tuple[str, ...] = (
    "an image of a {colour} {shape}",
    "a small {colour} {shape}",
)
#: the template of the retrieval captions in the quality bars
RETRIEVAL_TEMPLATE = "a {colour} {shape}"
#: shape-only phrasings (occupancy grids have no colour)
SHAPE_TEMPLATES: tuple[str, ...] = ("a {shape}", "a photo of a {shape}", "a 3d model of a {shape}", "{shape}")

#: (kind, colour) of the ten held-out prompts of the diffusion-prior quality bar
HELDOUT_PROMPT_PAIRS: tuple[tuple[str, str], ...] = (
    ("cube", "red"), ("sphere", "blue"), ("cylinder", "green"), ("cone", "yellow"), ("torus", "purple"),
    ("pyramid", "orange"), ("capsule", "red"), ("table", "blue"), ("chair", "green"), ("mug", "orange"),
)


def _article_fix(text: str) -> str:
    """``a orange`` -> ``an orange`` (only the indefinite article before a vowel)."""
    words = text.split(" ")
    for i in range(len(words) - 1):
        if words[i] == "a" and words[i + 1][:1] in "aeiou":
            words[i] = "an"
    return " ".join(words)


def caption(kind: str, colour: Optional[str], template: str) -> str:
    """Fill ``template`` (fields ``{shape}`` and ``{colour}``) for one object."""
    return _article_fix(template.format(shape=kind, colour=colour or "").replace("  ", " ").strip())


def random_caption(kind: str, colour: str, rng: random.Random, templates: tuple[str, ...] = TRAIN_TEMPLATES) -> str:
    """A caption with a template drawn uniformly from ``templates``."""
    return caption(kind, colour, rng.choice(templates))


def all_captions(template: str = RETRIEVAL_TEMPLATE, kinds: tuple[str, ...] = KINDS, colours: tuple[str, ...] = COLOUR_NAMES) -> list[str]:
    """One caption per (kind, colour) pair, index ``k·C + c`` for kind ``k`` and colour ``c``."""
    return [caption(k, c, template) for k in kinds for c in colours]


def pair_index(kind: str, colour: str, kinds: tuple[str, ...] = KINDS, colours: tuple[str, ...] = COLOUR_NAMES) -> int:
    """Index of ``(kind, colour)`` in :func:`all_captions`."""
    return kinds.index(kind) * len(colours) + colours.index(colour)


def heldout_prompts(template: str = HELDOUT_TEMPLATES[0], pairs: Optional[Sequence[tuple[str, str]]] = None) -> list[str]:
    """The ten held-out prompts (held-out phrasing) of the diffusion-prior quality bar (or of ``pairs``)."""
    return [caption(k, c, template) for k, c in (HELDOUT_PROMPT_PAIRS if pairs is None else pairs)]


def colour_shifted_pairs(shift: int, pairs: Sequence[tuple[str, str]] = HELDOUT_PROMPT_PAIRS) -> list[tuple[str, str]]:
    """``pairs`` with each colour moved ``shift`` places along :data:`COLOUR_NAMES` (same kinds).

    With ``shift`` 1–5 these are validation prompts for choosing a sampler without looking at the bar's
    own ten (shift 0 returns them unchanged).

    Example:
        >>> colour_shifted_pairs(1)[0]
        ('cube', 'green')
    """
    return [(k, COLOUR_NAMES[(COLOUR_NAMES.index(c) + shift) % len(COLOUR_NAMES)]) for k, c in pairs]
