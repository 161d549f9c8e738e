"""shapeworld shapes: SDF signs, determinism, jitter, captions and splits."""

import pytest
import torch

from shapeworld import sdf as S
from shapeworld.captions import (HELDOUT_PROMPT_PAIRS, HELDOUT_TEMPLATES, TRAIN_TEMPLATES, all_captions, caption,
                                 colour_shifted_pairs, heldout_prompts, pair_index)
from shapeworld.shapes import (CANONICAL_RADIUS, COLOUR_NAMES, COMPOSITE_KINDS, KINDS, ShapeSpec, object_spec,
                               object_specs)


def test_counts():
    assert len(KINDS) >= 8 and len(COLOUR_NAMES) >= 6
    assert set(COMPOSITE_KINDS) <= set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_sdf_sign(kind):
    """Inside negative: the centre region of every kind is inside, far points outside, and the
    SDF is 1-Lipschitz (a bound on the distance), for jittered objects too."""
    spec = object_spec("train", KINDS.index(kind))
    far = torch.tensor([[3.0, 0, 0], [0, 0, -3.0], [2.0, 2.0, 2.0]])
    assert (spec.sdf(far) > 0).all()
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(4096, 3, generator=g) * 2.4 - 1.2
    d = spec.sdf(pts)
    inside = pts[d < 0]
    assert inside.shape[0] > 5, "shape has (almost) no volume"
    assert inside.norm(dim=-1).max() <= spec.bounding_radius + 1e-4
    # Lipschitz: |d(x) - d(y)| <= |x - y|
    q = pts + 0.01 * torch.randn(pts.shape, generator=g)
    assert ((spec.sdf(q) - d).abs() <= (q - pts).norm(dim=-1) + 1e-5).all()


INTERIOR = {"sphere": (0, 0, 0), "cube": (0.3, 0.3, 0.3), "cylinder": (0.35, 0, 0.4), "cone": (0, 0, 0.4),
            "torus": (0.38, 0, 0), "pyramid": (0, 0, 0.3), "capsule": (0, 0, 0.45), "table": (0.45, 0.3, -0.35),
            "chair": (0, -0.26, 0.5), "mug": (0.5, 0, 0), "lamp": (0, 0, -0.47)}
EXTERIOR = {"mug": (0, 0, 0.1), "torus": (0, 0, 0), "table": (0, 0, -0.2), "chair": (0, 0.2, 0.2), "lamp": (0.3, 0, -0.2)}


@pytest.mark.parametrize("kind", KINDS)
def test_canonical_inside_outside(kind):
    """Known interior points are negative (also of thin parts: legs, handle, pole); known holes positive."""
    from shapeworld.shapes import CANONICAL_SDFS

    assert CANONICAL_SDFS[kind](torch.tensor([INTERIOR[kind]], dtype=torch.float32)) < 0
    if kind in EXTERIOR:
        assert CANONICAL_SDFS[kind](torch.tensor([EXTERIOR[kind]], dtype=torch.float32)) > 0


def test_primitive_known_values():
    o = torch.zeros(1, 3, dtype=torch.float64)
    assert torch.allclose(S.sdf_sphere(o, 0.5), torch.tensor([-0.5], dtype=torch.float64))
    assert torch.allclose(S.sdf_box(torch.tensor([[1.0, 0, 0]]), (0.4, 0.4, 0.4)), torch.tensor([0.6]))
    assert torch.allclose(S.sdf_cylinder(torch.tensor([[0.0, 0, 1.0]]), 0.4, 0.45), torch.tensor([0.55]))
    assert torch.allclose(S.sdf_torus(torch.tensor([[0.38, 0, 0]]), 0.38, 0.15), torch.tensor([-0.15]))
    assert torch.allclose(S.sdf_capsule(torch.tensor([[0.0, 0, 1.0]]), 0.25, 0.25), torch.tensor([0.5]))
    # cone apex at z=+h, base radius r at z=-h: a point straight above the apex
    assert torch.allclose(S.sdf_capped_cone(torch.tensor([[0.0, 0, 1.0]]), 0.45, 0.5, 0.0), torch.tensor([0.55]), atol=1e-6)
    assert S.sdf_pyramid(torch.tensor([[0.0, 0, 0.0]]), 0.4, 0.38) < 0
    assert S.sdf_pyramid(torch.tensor([[0.39, 0.39, 0.3]]), 0.4, 0.38) > 0  # corner region above the slope


def test_deterministic_and_split_disjoint():
    a, b = object_specs("train", 30, seed=3), object_specs("train", 30, seed=3)
    assert a == b
    c = object_specs("heldout", 30, seed=3)
    assert all(x != y for x, y in zip(a, c))
    assert object_specs("train", 30, seed=4) != a
    assert object_spec("train", 7, seed=3) == a[7]  # random access equals sequential


def test_jitter_and_balance():
    specs = object_specs("train", len(KINDS) * len(COLOUR_NAMES))
    assert {(s.kind, s.colour) for s in specs} == {(k, c) for k in KINDS for c in COLOUR_NAMES}
    scales = torch.tensor([s.scale for s in specs])
    assert scales.std() > 0.02
    assert max(s.bounding_radius for s in specs) <= CANONICAL_RADIUS * 1.3 * 1.15 + 1e-6


def test_bad_names():
    with pytest.raises(ValueError, match="unknown shape kind"):
        ShapeSpec("dodecahedron", "red", (1, 0, 0))
    with pytest.raises(ValueError, match="unknown colour"):
        ShapeSpec("cube", "mauve", (1, 0, 0))
    with pytest.raises(ValueError, match="unknown split"):
        object_spec("test", 0)


def test_captions():
    assert caption("cube", "red", "a {colour} {shape}") == "a red cube"
    assert caption("cube", "orange", "a photo of a {colour} {shape}") == "a photo of an orange cube"
    assert caption("cube", "red", "a {shape} that is {colour}") == "a cube that is red"
    assert caption("mug", None, "a {shape}") == "a mug"
    assert not set(TRAIN_TEMPLATES) & set(HELDOUT_TEMPLATES)
    caps = all_captions()
    assert len(caps) == len(set(caps)) == len(KINDS) * len(COLOUR_NAMES)
    assert caps[pair_index("chair", "blue")] == "a blue chair"
    prompts = heldout_prompts()
    assert len(prompts) == 10 and len(set(prompts)) == 10


def test_colour_shifted_validation_prompts_share_kinds_but_no_pair_with_the_bar():
    assert colour_shifted_pairs(0) == list(HELDOUT_PROMPT_PAIRS)
    for shift in range(1, len(COLOUR_NAMES)):
        shifted = colour_shifted_pairs(shift)
        assert [k for k, _ in shifted] == [k for k, _ in HELDOUT_PROMPT_PAIRS]
        assert all(c != c0 for (_, c), (_, c0) in zip(shifted, HELDOUT_PROMPT_PAIRS))
        assert not set(shifted) & set(HELDOUT_PROMPT_PAIRS)  # validation prompts never are bar prompts
    assert colour_shifted_pairs(len(COLOUR_NAMES)) == list(HELDOUT_PROMPT_PAIRS)
    assert heldout_prompts(pairs=colour_shifted_pairs(1))[0] == "an image of a green cube"
