"""SVG export, parsing and atomic writes (spec §7.3 test 19)."""

import io
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

from vectorfusion.paths import Scene, Shape
from vectorfusion.pixelart import pixel_scene, random_pixel_colors
from vectorfusion.rasterizer import render_image
from vectorfusion.styles import icon_scene, random_circles, random_strokes, sketch_scene
from vectorfusion.svg import parse_svg, read_svg, scene_to_svg, write_svg

PROMPT = 'a <b>"cat"</b> & dog\'s </title><script>x</script>\x00'


def _scene() -> Scene:
    g = torch.Generator().manual_seed(0)
    pts, rgba = random_circles(8, 64, 64, radius=10.0, generator=g)
    sc = icon_scene(pts, rgba, background=torch.tensor([0.9, 0.95, 1.0]), canvas_w=64, canvas_h=64)
    sc.shapes[2].fill_rule = "nonzero"
    stroke = sketch_scene(random_strokes(1, 5, 64, 64, generator=g), width=3.0, canvas_w=64,
                          canvas_h=64)
    sc.shapes += stroke.shapes
    return sc


def test_round_trip_preserves_scene():
    sc = _scene()
    text = scene_to_svg(sc, title=PROMPT)
    back, title = parse_svg(text)
    assert title == PROMPT.replace("\x00", "")  # escaped, invalid XML character dropped
    assert len(back.shapes) == len(sc.shapes)
    for a, b in zip(sc.shapes, back.shapes):
        assert torch.allclose(a.points, b.points, atol=1e-3)
        assert (a.closed, a.fill_rule if a.fill is not None else None) == (
            b.closed, b.fill_rule if b.fill is not None else None)
        if a.fill is not None:
            assert torch.allclose(a.fill[:3], b.fill[:3], atol=1 / 255)
            assert abs(float(a.fill[3] - b.fill[3])) < 1e-3
        assert abs(float(a.width_tensor()) - float(b.width_tensor())) < 1e-3
    assert torch.allclose(sc.background, back.background, atol=1 / 255)
    diff = (render_image(sc) - render_image(back)).abs().max()
    assert diff <= 2 / 255


def test_svg_is_valid_svg11():
    root = ET.fromstring(scene_to_svg(_scene(), title=PROMPT))
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("version") == "1.1"
    assert root.get("viewBox") == "0 0 64 64"
    assert [el.tag.split("}")[-1] for el in root][:2] == ["title", "rect"]


@pytest.mark.parametrize("kind", ["icon", "pixel"])
def test_cairosvg_renders_like_the_rasterizer(kind):
    cairosvg = pytest.importorskip("cairosvg")
    from PIL import Image

    if kind == "icon":
        sc = _scene()
    else:
        sc = pixel_scene(random_pixel_colors(8, 8, generator=torch.Generator().manual_seed(0)),
                         torch.ones(3), 64.0, 64.0)
    png = cairosvg.svg2png(bytestring=scene_to_svg(sc, PROMPT).encode(), output_width=64,
                           output_height=64)
    cairo = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32) / 255
    ours = render_image(sc, 64, 64)[0].permute(1, 2, 0).numpy()
    assert np.abs(cairo - ours).mean() < 0.02


def test_write_is_atomic_and_refuses_nan(tmp_path):
    sc = _scene()
    path = write_svg(sc, tmp_path / "out" / "icon.svg", title=PROMPT)
    good = path.read_text()
    back, _ = read_svg(path)
    assert len(back.shapes) == len(sc.shapes)
    sc.shapes[3].points = sc.shapes[3].points.clone()
    sc.shapes[3].points[0, 0] = float("nan")
    with pytest.raises(ValueError, match="refusing to write an SVG"):
        write_svg(sc, path)
    assert path.read_text() == good  # the old file is untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["icon.svg"]  # no temp left


def test_write_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    import os

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_svg(_scene(), tmp_path / "x.svg")
    assert list(tmp_path.iterdir()) == []


def test_open_filled_linear_and_rect_parse():
    text = ('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            '<rect x="1" y="2" width="3" height="4" fill="#ff0000"/>'
            '<path d="M 0 0 L 5 0 L 5 5 Z" fill="rgb(0,0,255)" fill-opacity="0.5"/></svg>')
    sc, title = parse_svg(text)
    assert title is None and sc.background is None and len(sc.shapes) == 2
    assert sc.shapes[0].kind == "linear" and torch.allclose(sc.shapes[0].fill, torch.tensor([1.0, 0, 0, 1]))
    assert sc.shapes[1].points.shape == (3, 2) and sc.shapes[1].fill_rule == "nonzero"
    with pytest.raises(ValueError, match="relative path command"):
        parse_svg('<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"><path d="M 0 0 l 1 1"/></svg>')
    shape = Shape(torch.zeros(4, 2), closed=False, stroke=torch.tensor([0.0, 0, 0, 1]), stroke_width=0.0)
    assert 'stroke="none"' in scene_to_svg(Scene(4.0, 4.0, [shape]))
