"""shapeworld's objects: analytic SDF shapes with a colour, size/aspect/yaw jitter, deterministic by seed.

A :class:`ShapeSpec` is one object: a kind (one of :data:`KINDS`: seven primitives and four composite
objects built from them, so that category-level methods have categories), a colour name (one of
:data:`COLOURS`) with a slightly jittered RGB, and a similarity-plus-aspect transform. Objects are
centred at the origin of the world frame (z-up) and lie within :attr:`ShapeSpec.bounding_radius`
(at most ``0.7·1.3·1.15 ≈ 1.05``; in practice inside the ``[-1, 1]^3`` scene box of Dream Fields,
specs/dreamfields.md §2.2).

Object splits (:func:`object_spec`): the jitter of object ``i`` of split ``s`` is drawn from
``numpy.random.SeedSequence([seed, split_id, i])``, so the ``train`` and ``heldout`` splits are
disjoint random streams and every object is reproducible from ``(split, i, seed)`` alone.
"""

import math
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
from torch import Tensor

from shapeworld import sdf as S

# Canonical shapes (object frame, z-up, roughly within [-0.5, 0.5]^3) ----------------------------


def _table(p: Tensor) -> Tensor:
    top = S.sdf_box(S.translate(p, (0.0, 0.0, 0.1)), (0.5, 0.35, 0.04))
    legs = [S.sdf_box(S.translate(p, (sx * 0.42, sy * 0.27, -0.17)), (0.04, 0.04, 0.23)) for sx in (-1, 1) for sy in (-1, 1)]
    return S.union(top, *legs)


def _chair(p: Tensor) -> Tensor:
    seat = S.sdf_box(S.translate(p, (0.0, 0.0, -0.1)), (0.3, 0.3, 0.04))
    back = S.sdf_box(S.translate(p, (0.0, -0.26, 0.24)), (0.3, 0.04, 0.3))
    legs = [S.sdf_box(S.translate(p, (sx * 0.25, sy * 0.25, -0.34)), (0.035, 0.035, 0.2)) for sx in (-1, 1) for sy in (-1, 1)]
    return S.union(seat, back, *legs)


def _mug(p: Tensor) -> Tensor:
    outer = S.sdf_cylinder(p, 0.3, 0.35)
    inner = S.sdf_cylinder(S.translate(p, (0.0, 0.0, 0.07)), 0.24, 0.35)  # open top, 0.07 floor
    handle = S.sdf_torus_xz(S.translate(p, (0.3, 0.0, 0.0)), 0.17, 0.05)
    handle = S.intersect(handle, 0.28 - p[..., 0])  # keep the outer half of the ring
    return S.union(S.subtract(outer, inner), handle)


def _lamp(p: Tensor) -> Tensor:
    base = S.sdf_cylinder(S.translate(p, (0.0, 0.0, -0.46)), 0.3, 0.04)
    pole = S.sdf_cylinder(S.translate(p, (0.0, 0.0, -0.15)), 0.035, 0.3)
    shade = S.sdf_capped_cone(S.translate(p, (0.0, 0.0, 0.3)), 0.18, 0.38, 0.18)
    return S.union(base, pole, shade)


#: kind name -> canonical SDF in the object frame
CANONICAL_SDFS: dict[str, Callable[[Tensor], Tensor]] = {
    "sphere": lambda p: S.sdf_sphere(p, 0.5),
    "cube": lambda p: S.sdf_box(p, (0.4, 0.4, 0.4)),
    "cylinder": lambda p: S.sdf_cylinder(p, 0.4, 0.45),
    "cone": lambda p: S.sdf_capped_cone(p, 0.45, 0.5, 0.0),
    "torus": lambda p: S.sdf_torus(p, 0.38, 0.15),
    "pyramid": lambda p: S.sdf_pyramid(p, 0.4, 0.38),
    "capsule": lambda p: S.sdf_capsule(p, 0.25, 0.25),
    "table": _table,
    "chair": _chair,
    "mug": _mug,
    "lamp": _lamp,
}
#: every object kind, in caption/label order
KINDS: tuple[str, ...] = tuple(CANONICAL_SDFS)
#: the composite kinds (categories for ZeroForge / ISS)
COMPOSITE_KINDS: tuple[str, ...] = ("table", "chair", "mug", "lamp")
#: radius of a sphere around the origin that contains every canonical shape
CANONICAL_RADIUS = 0.7
#: colour name -> base linear RGB in [0, 1]
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.10),
    "green": (0.15, 0.70, 0.20),
    "blue": (0.15, 0.30, 0.90),
    "yellow": (0.95, 0.85, 0.15),
    "purple": (0.55, 0.20, 0.75),
    "orange": (1.00, 0.55, 0.05),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SPLITS: dict[str, int] = {"train": 0, "heldout": 1}
Split = Literal["train", "heldout"]


@dataclass(frozen=True)
class ShapeSpec:
    """One shapeworld object.

    Attributes:
        kind: one of :data:`KINDS`.
        colour: one of :data:`COLOUR_NAMES`.
        rgb: jittered RGB in ``[0, 1]``.
        scale: overall size multiplier.
        aspect: per-axis stretch ``(ax, ay, az)`` applied in the object frame.
        yaw_deg: rotation about the world z axis, degrees.
    """

    kind: str
    colour: str
    rgb: tuple[float, float, float]
    scale: float = 1.0
    aspect: tuple[float, float, float] = (1.0, 1.0, 1.0)
    yaw_deg: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in CANONICAL_SDFS:
            raise ValueError(f"unknown shape kind {self.kind!r}; choose one of {list(KINDS)}")
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; choose one of {list(COLOUR_NAMES)}")

    @property
    def kind_index(self) -> int:
        return KINDS.index(self.kind)

    @property
    def colour_index(self) -> int:
        return COLOUR_NAMES.index(self.colour)

    def sdf(self, x: Tensor) -> Tensor:
        """Signed distance ``[...]`` at world points ``x`` ``[..., 3]`` (negative inside).

        The object frame is ``p = R_z(−yaw) x / (scale·aspect)``; the canonical SDF times
        ``scale·min(aspect)`` is a 1-Lipschitz lower bound of the true distance with the exact sign.
        """
        yaw = math.radians(self.yaw_deg)
        c, s = math.cos(yaw), math.sin(yaw)
        px = c * x[..., 0] + s * x[..., 1]
        py = -s * x[..., 0] + c * x[..., 1]
        stretch = torch.tensor([self.scale * a for a in self.aspect], dtype=x.dtype, device=x.device)
        p = torch.stack([px, py, x[..., 2]], dim=-1) / stretch  # [..., 3] object frame
        return CANONICAL_SDFS[self.kind](p) * float(stretch.min())

    @property
    def bounding_radius(self) -> float:
        """Radius of a sphere around the origin containing the object."""
        return CANONICAL_RADIUS * self.scale * max(self.aspect)

    def rgb_tensor(self, device=None, dtype=torch.float32) -> Tensor:
        """``[3]`` colour in ``[0, 1]``."""
        return torch.tensor(self.rgb, dtype=dtype, device=device)


def jittered_spec(kind: str, colour: str, rng: np.random.Generator, scale_range=(1.0, 1.3), aspect_range=(0.85, 1.15), colour_jitter: float = 0.05) -> ShapeSpec:
    """A :class:`ShapeSpec` of ``kind`` and ``colour`` with jitter drawn from ``rng``."""
    scale = float(rng.uniform(*scale_range))
    aspect = tuple(float(a) for a in rng.uniform(*aspect_range, size=3))
    yaw = float(rng.uniform(0.0, 360.0))
    rgb = np.clip(np.asarray(COLOURS[colour]) + rng.uniform(-colour_jitter, colour_jitter, size=3), 0.0, 1.0)
    return ShapeSpec(kind, colour, tuple(float(v) for v in rgb), scale, aspect, yaw)


def object_seed(split: Split, index: int, seed: int = 0) -> np.random.Generator:
    """The random stream of object ``index`` of ``split`` (disjoint across splits)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], index]))


def object_spec(split: Split, index: int, seed: int = 0, kinds: tuple[str, ...] = KINDS, colours: tuple[str, ...] = COLOUR_NAMES) -> ShapeSpec:
    """Object ``index`` of ``split``: kinds and colours cycle so every (kind, colour) pair is equally common.

    Object ``i`` has kind ``kinds[i mod K]`` and colour ``colours[(i div K) mod C]``; its jitter comes
    from :func:`object_seed`.
    """
    kind = kinds[index % len(kinds)]
    colour = colours[(index // len(kinds)) % len(colours)]
    return jittered_spec(kind, colour, object_seed(split, index, seed))


def object_specs(split: Split, n: int, seed: int = 0, kinds: tuple[str, ...] = KINDS, colours: tuple[str, ...] = COLOUR_NAMES) -> list[ShapeSpec]:
    """The first ``n`` objects of ``split``."""
    return [object_spec(split, i, seed, kinds, colours) for i in range(n)]
