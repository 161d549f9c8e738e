"""Optional pydiffvg backend behind the same interface as the soft rasterizer (spec §5.4).

pydiffvg (Li et al. 2020, "Differentiable Vector Graphics Rasterization") is the thesis' renderer,
but it is not on the package registries and must be built from source; it could not be built in
our environment, so this adapter is untested here and the agreement tolerance between the two
backends has not been measured (see vectorfusion/README.md). A config selects it with
``make_rasterizer("diffvg")`` (or ``"auto"``: diffvg when importable, else soft).

Mapping: ``Path(num_control_points=[2]*S, points, is_closed, stroke_width=w/2)`` (diffvg's
``stroke_width`` is the *half* width), linear shapes as ``Polygon``, one ``ShapeGroup`` per shape
with ``use_even_odd_rule`` from the fill rule. Points are scaled to the output size and the canvas
set to it, so diffvg draws at the requested resolution. diffvg returns un-premultiplied RGBA with
2x2 jittered samples per pixel and boundary-sampled geometry gradients.
"""

import importlib.util

import torch
from torch import Tensor, nn

from vectorfusion.paths import Scene, validate_scene
from vectorfusion.rasterizer import RasterOutput


def diffvg_available() -> bool:
    """Whether ``import pydiffvg`` can succeed."""
    return importlib.util.find_spec("pydiffvg") is not None


class DiffvgRasterizer(nn.Module):
    """pydiffvg adapter: ``scene, out_h, out_w -> RasterOutput`` (premultiplied, no background).

    Args:
        samples: jittered samples per pixel side (diffvg's ``num_samples_x/y``; 2 in the paper).

    Raises:
        ImportError: pydiffvg is not importable (build it from https://github.com/BachiLi/diffvg
            or use ``backend: soft``).
    """

    def __init__(self, samples: int = 2):
        super().__init__()
        if not diffvg_available():
            raise ImportError(
                "pydiffvg is not installed: it must be built from source "
                "(https://github.com/BachiLi/diffvg). Use the pure-PyTorch backend instead: "
                "make_rasterizer('soft') or backend: soft in the config.")
        self.samples = samples
        self.step = 0

    def forward(self, scene: Scene, out_h: int, out_w: int) -> RasterOutput:
        import pydiffvg

        validate_scene(scene)
        sx, sy = out_w / scene.canvas_w, out_h / scene.canvas_h
        shapes, groups = [], []
        for i, s in enumerate(scene.shapes):
            pts = s.points * torch.tensor([sx, sy], dtype=s.points.dtype, device=s.points.device)
            half = s.width_tensor() * (sx * sy) ** 0.5 / 2  # diffvg width is the half width
            if s.kind == "linear":
                shape = pydiffvg.Polygon(points=pts, is_closed=s.closed, stroke_width=half)
            else:
                ncp = torch.full((s.num_segments,), 2, dtype=torch.int32)
                shape = pydiffvg.Path(num_control_points=ncp, points=pts, is_closed=s.closed,
                                      stroke_width=half)
            shapes.append(shape)
            groups.append(pydiffvg.ShapeGroup(
                shape_ids=torch.tensor([i]), fill_color=s.fill, stroke_color=s.stroke,
                use_even_odd_rule=s.fill_rule == "evenodd"))
        args = pydiffvg.RenderFunction.serialize_scene(out_w, out_h, shapes, groups)
        img: Tensor = pydiffvg.RenderFunction.apply(out_w, out_h, self.samples, self.samples,
                                                    self.step, None, *args)  # [H, W, 4]
        self.step += 1
        alpha = img[..., 3]
        return RasterOutput(color=img[..., :3] * alpha[..., None], alpha=alpha)
