"""The optimised SVG of each style as an ``nn.Module`` of fixed-size parameters (spec §1.4, §2.1-2.4).

A primitives module plays the role of a *field*: it owns the trainable parameters and builds the
:class:`~vectorfusion.paths.Scene` that a rasterizer draws; it never owns the rasterizer.

| class | style | parameters (trainable) | background |
|---|---|---|---|
| :class:`IconPaths` | iconography | 64 closed 4-segment cubics: ``points [P, 12, 2]``, ``rgba [P, 4]`` | RGB, trained |
| :class:`PixelGrid` | pixel art | ``rgba [32, 32, 4]`` of a frozen grid of squares | white, fixed |
| :class:`SketchStrokes` | sketch | ``points [16, 16, 2]`` of open 5-segment cubics, black, width 6 | white, fixed |

Icon paths keep a draw-order permutation ``order [P]`` (a buffer) so that path reinitialisation can
move replaced paths on top without changing parameter identities (spec §2.9 [NS]); ``n_active``
limits drawing to the first rows in LIVE order (paths are added stage by stage).
"""

import torch
from torch import Tensor, nn

from vectorfusion.paths import Scene, validate_scene
from vectorfusion.pixelart import pixel_scene, random_pixel_colors, render_pixel_grid
from vectorfusion.rasterizer import RasterOutput
from vectorfusion.styles import icon_scene, random_circles, random_strokes, sketch_scene


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class VectorPrimitives(nn.Module):
    """Base class: a style's trainable SVG parameters.

    Attributes:
        style: key of :data:`vectorfusion.styles.STYLE_SUFFIX`.
        canvas: canvas side in px (600 in the paper).
    """

    style: str = ""

    def __init__(self, canvas: float = 600.0) -> None:
        super().__init__()
        self.canvas = float(canvas)

    def scene(self, n_active: int | None = None) -> Scene:  # pragma: no cover - abstract
        """The scene to draw (``n_active``: only the first rows, icons only)."""
        raise NotImplementedError

    def param_groups(self) -> dict[str, list[nn.Parameter]]:  # pragma: no cover - abstract
        """Parameters by lr group: ``points``, ``colors``, ``background``, ``pixels``."""
        raise NotImplementedError

    def rasterize(self, rasterizer: nn.Module, size: int, n_active: int | None = None) -> RasterOutput:
        """Premultiplied render at ``size x size`` (the canvas scaled to the output)."""
        return rasterizer(self.scene(n_active), size, size)

    def background_color(self) -> Tensor:
        """``[3]`` background RGB in [0, 1]."""
        return self.background

    def render(self, rasterizer: nn.Module, size: int, n_active: int | None = None) -> Tensor:
        """Render composited on the background: ``[1, 3, size, size]`` in [0, 1], differentiable."""
        return self.rasterize(rasterizer, size, n_active).over(self.background_color())

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp colours and background to [0, 1] after an optimiser step (spec §3.1)."""
        for name in ("rgba", "background"):
            p = getattr(self, name, None)
            if isinstance(p, nn.Parameter):
                p.clamp_(0, 1)

    def finite(self) -> bool:
        """Whether every parameter is finite (NaN/Inf after a bad step makes this False)."""
        return all(bool(torch.isfinite(p).all()) for p in self.parameters())

    def validate(self) -> None:
        """Raise ``ValueError`` naming the shape if any parameter is NaN/Inf."""
        validate_scene(self.scene())


class IconPaths(VectorPrimitives):
    """Iconography: closed filled cubic Bézier paths, no stroke, trainable background (spec §2.1, §2.4).

    Args:
        num_paths: P (64 [S]; ablations 16, 128).
        num_segments: cubic segments per path (4 [S]).
        radius: init circle radius in canvas px (20 [S]).
        canvas: canvas side in px (600 [S]).
        train_background: optimise the background colour (True [S], lr / 200).
        seed: seed of the random init (uniform centres, RGB ~ U(0, 1), α ~ U(0.7, 1) [S]).
    """

    style = "iconography"

    def __init__(self, num_paths: int = 64, num_segments: int = 4, radius: float = 20.0, canvas: float = 600.0,
                 train_background: bool = True, seed: int = 0) -> None:
        super().__init__(canvas)
        if num_paths < 1 or num_segments < 1:
            raise ValueError(f"need num_paths >= 1 and num_segments >= 1, got {num_paths}, {num_segments}")
        self.num_segments, self.radius, self.train_background = num_segments, float(radius), train_background
        points, rgba = random_circles(num_paths, self.canvas, self.canvas, radius, num_segments, _generator(seed))
        self.points = nn.Parameter(points)  # [P, 3S, 2]
        self.rgba = nn.Parameter(rgba)  # [P, 4]
        self.background = nn.Parameter(torch.ones(3), requires_grad=train_background)
        self.register_buffer("order", torch.arange(num_paths))

    @property
    def num_paths(self) -> int:
        return int(self.points.shape[0])

    def draw_order(self, n_active: int | None = None) -> Tensor:
        """Row indices back to front, restricted to rows ``< n_active``."""
        order = self.order
        return order if n_active is None else order[order < n_active]

    def scene(self, n_active: int | None = None) -> Scene:
        return icon_scene(self.points, self.rgba, self.draw_order(n_active), self.background,
                          self.canvas, self.canvas)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {"points": [self.points], "colors": [self.rgba]}
        if self.train_background:
            groups["background"] = [self.background]
        return groups


class PixelGrid(VectorPrimitives):
    """Pixel art: a frozen grid of squares with trainable RGBA (spec §2.2); white background.

    Rendered by the exact grid renderer (:func:`~vectorfusion.pixelart.render_pixel_grid`).

    Args:
        rows: grid rows (32 [S]).
        cols: grid columns (32 [S]).
        canvas: canvas side in px.
        seed: seed of the random colours (RGB ~ U(0, 1), α ~ U(0.7, 1) [S]).
    """

    style = "pixelart"

    def __init__(self, rows: int = 32, cols: int = 32, canvas: float = 600.0, seed: int = 0) -> None:
        super().__init__(canvas)
        self.rgba = nn.Parameter(random_pixel_colors(rows, cols, _generator(seed)))  # [rows, cols, 4]
        self.register_buffer("background", torch.ones(3), persistent=False)

    def scene(self, n_active: int | None = None) -> Scene:
        return pixel_scene(self.rgba, self.background, self.canvas, self.canvas)

    def rasterize(self, rasterizer: nn.Module, size: int, n_active: int | None = None) -> RasterOutput:
        return render_pixel_grid(self.rgba, size, size)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"pixels": [self.rgba]}


class SketchStrokes(VectorPrimitives):
    """Sketch: open cubic strokes, solid black, fixed width, no fill; points only (spec §2.3).

    Args:
        num_paths: strokes (16 [S]).
        num_segments: cubic segments per stroke (5 [S]).
        width: stroke width in canvas px (6 [S]).
        stroke_width_is_diffvg_halfwidth: draw ``2 x width`` (the other reading of "6 pixels", AMB-9).
        canvas: canvas side in px.
        seed: seed of the CLIPDraw-style random init.
    """

    style = "sketch"

    def __init__(self, num_paths: int = 16, num_segments: int = 5, width: float = 6.0,
                 stroke_width_is_diffvg_halfwidth: bool = False, canvas: float = 600.0, seed: int = 0) -> None:
        super().__init__(canvas)
        self.width, self.halfwidth = float(width), stroke_width_is_diffvg_halfwidth
        self.points = nn.Parameter(random_strokes(num_paths, num_segments, self.canvas, self.canvas,
                                                  _generator(seed)))  # [P, 3S + 1, 2]
        self.register_buffer("background", torch.ones(3), persistent=False)

    def scene(self, n_active: int | None = None) -> Scene:
        return sketch_scene(self.points, self.width, self.halfwidth, self.background, self.canvas, self.canvas)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"points": [self.points]}
