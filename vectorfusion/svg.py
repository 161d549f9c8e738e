"""SVG 1.1 export and parsing of scenes (specs/vectorfusion.md §2.10, §7.3 test 19).

The writer emits exactly what the rasterizer draws: a full-canvas background ``<rect>``, then one
``<path>`` per shape in drawing order (closed cubics ``M P0 C A0 B0 P1 ... C A B P0 Z``, polygons
``M v0 L v1 ... Z``, strokes with round caps and joins, since diffvg and our rasterizer draw
strokes as distance bands). Text (the prompt) goes in ``<title>``, XML-escaped and with characters
that XML 1.0 forbids removed. NaN/Inf parameters are refused before any file is touched, and files
are written to a temporary file in the same folder and renamed, so no partial SVG is ever left.

The parser reads back the subset the writer produces (absolute ``M``/``C``/``L``/``Z`` paths and
``rect``s, ``rgb()``/``#rrggbb`` colours), which is enough for round trips.
"""

import contextlib
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape

import torch
from torch import Tensor

from vectorfusion.paths import Scene, Shape, validate_scene

_SVG_NS = "http://www.w3.org/2000/svg"
_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _num(v: float, decimals: int) -> str:
    s = f"{v:.{decimals}f}"
    return "0" if float(s) == 0 else s


def _rgb(c: Tensor) -> str:
    r, g, b = (int(round(min(max(x, 0.0), 1.0) * 255)) for x in c.detach()[:3].tolist())
    return f"rgb({r},{g},{b})"


def _alpha(a: Tensor | float) -> str:
    a = float(a.detach()) if isinstance(a, Tensor) else float(a)
    return f"{min(max(a, 0.0), 1.0):.4f}"


def path_data(shape: Shape, decimals: int = 4) -> str:
    """The ``d`` attribute of a shape (absolute commands only)."""
    pts = [(_num(x, decimals), _num(y, decimals)) for x, y in shape.points.detach().tolist()]
    fmt = [f"{x} {y}" for x, y in pts]
    if shape.kind == "linear":
        d = f"M {fmt[0]} " + " ".join(f"L {p}" for p in fmt[1:])
    else:
        ends = fmt[3::3] + ([fmt[0]] if shape.closed else [])
        d = f"M {fmt[0]} " + " ".join(f"C {fmt[3 * k + 1]} {fmt[3 * k + 2]} {e}"
                                      for k, e in enumerate(ends))
    return d + (" Z" if shape.closed else "")


def scene_to_svg(scene: Scene, title: str | None = None, decimals: int = 4) -> str:
    """Serialise a scene as an SVG 1.1 document.

    Args:
        scene: the scene (drawing order = document order).
        title: optional text (e.g. the prompt), escaped into ``<title>``.
        decimals: decimals written per coordinate (>= 3, spec §2.10).

    Returns:
        The SVG document as a string.

    Raises:
        ValueError: a parameter is NaN/Inf (nothing is written).
    """
    try:
        validate_scene(scene)
    except ValueError as err:
        raise ValueError(f"refusing to write an SVG with invalid parameters: {err}") from err
    w, h = (_num(v, decimals).rstrip("0").rstrip(".") for v in (scene.canvas_w, scene.canvas_h))
    lines = ['<?xml version="1.0" encoding="UTF-8" standalone="no"?>',
             f'<svg xmlns="{_SVG_NS}" version="1.1" width="{w}" height="{h}" '
             f'viewBox="0 0 {w} {h}">']
    if title is not None:
        lines.append(f"<title>{escape(_XML_INVALID.sub('', title))}</title>")
    if scene.background is not None:
        bg = _rgb(scene.background)
        lines.append(f'<rect x="0" y="0" width="{w}" height="{h}" fill="{bg}"/>')
    for s in scene.shapes:
        attrs = [f'd="{path_data(s, decimals)}"']
        if s.fill is not None:
            attrs += [f'fill="{_rgb(s.fill)}"', f'fill-opacity="{_alpha(s.fill[3])}"',
                      f'fill-rule="{s.fill_rule}"']
        else:
            attrs.append('fill="none"')
        width = float(s.width_tensor().detach())
        if s.stroke is not None and width > 0:
            attrs += [f'stroke="{_rgb(s.stroke)}"', f'stroke-opacity="{_alpha(s.stroke[3])}"',
                      f'stroke-width="{_num(width, decimals)}"', 'stroke-linecap="round"',
                      'stroke-linejoin="round"']
        else:
            attrs.append('stroke="none"')
        lines.append(f"<path {' '.join(attrs)}/>")
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def write_svg(scene: Scene, path: str | os.PathLike, title: str | None = None,
              decimals: int = 4) -> Path:
    """Write a scene to ``path`` atomically (temporary file in the same folder, then rename).

    Args:
        scene: the scene.
        path: destination file; its folder is created if needed.
        title: optional text (e.g. the prompt), escaped.
        decimals: decimals per coordinate.

    Returns:
        The written path.

    Raises:
        ValueError: NaN/Inf parameters; an existing file at ``path`` is left untouched.
    """
    text = scene_to_svg(scene, title, decimals)  # validates before touching the disk
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _parse_color(value: str | None) -> Tensor | None:
    """``rgb(r,g,b)`` / ``#rrggbb`` / ``#rgb`` / ``none`` -> ``[3]`` in [0, 1] or None."""
    if value is None or value.strip() == "none":
        return None
    v = value.strip()
    if m := re.fullmatch(r"rgb\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*\)", v):
        return torch.tensor([float(g) / 255 for g in m.groups()])
    if re.fullmatch(r"#[0-9a-fA-F]{6}", v):
        return torch.tensor([int(v[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    if re.fullmatch(r"#[0-9a-fA-F]{3}", v):
        return torch.tensor([int(c * 2, 16) / 255 for c in v[1:]])
    if v == "black":
        return torch.zeros(3)
    if v == "white":
        return torch.ones(3)
    raise ValueError(f"unsupported colour {value!r}; use rgb(r,g,b) or #rrggbb")


def _parse_d(d: str) -> tuple[Tensor, bool, str]:
    """Parse absolute M/C/L/Z path data into ``(points [N, 2], closed, kind)``."""
    tokens = re.findall(r"[MCLZmclz]|-?\d*\.?\d+(?:[eE][-+]?\d+)?", d)
    if not tokens or tokens[0] != "M":
        raise ValueError(f"path data must start with an absolute M: {d[:40]!r}")
    segs: list[list[list[float]]] = []  # each: [ctrl1, ctrl2, end] or [end] for L
    start, closed, i, cmd = None, False, 0, None
    while i < len(tokens):
        tok = tokens[i]
        if tok in "MCLZmclz":
            if tok.islower() and tok != "z":
                raise ValueError(f"relative path command {tok!r} is not supported")
            cmd, i = tok.upper(), i + 1
            if cmd == "Z":
                closed = True
            continue
        arity = {"M": 1, "L": 1, "C": 3}[cmd]
        xy = [float(t) for t in tokens[i:i + 2 * arity]]
        pts = [xy[k:k + 2] for k in range(0, 2 * arity, 2)]
        if cmd == "M":
            start, cmd = pts[0], "L"  # implicit lineto after moveto
        else:
            segs.append(pts)
        i += 2 * arity
    if all(len(s) == 1 for s in segs):
        verts = [start] + [s[0] for s in segs]
        if closed and len(verts) > 1 and verts[-1] == verts[0]:
            verts = verts[:-1]
        return torch.tensor(verts), closed, "linear"
    pts, prev = [start], start
    for s in segs:  # lines become cubics with controls at the thirds
        if len(s) == 1:
            e = s[0]
            s = [[prev[j] + (e[j] - prev[j]) / 3 for j in (0, 1)],
                 [prev[j] + 2 * (e[j] - prev[j]) / 3 for j in (0, 1)], e]
        pts += s
        prev = s[-1]
    if closed:
        if pts[-1] != pts[0]:  # close with a straight cubic
            e, p = pts[0], pts[-1]
            pts += [[p[j] + (e[j] - p[j]) / 3 for j in (0, 1)],
                    [p[j] + 2 * (e[j] - p[j]) / 3 for j in (0, 1)], e]
        pts = pts[:-1]
    return torch.tensor(pts), closed, "cubic"


def parse_svg(text: str) -> tuple[Scene, str | None]:
    """Parse an SVG written by :func:`scene_to_svg` back into a scene.

    Args:
        text: SVG document.

    Returns:
        ``(scene, title)``; a full-canvas ``<rect>`` first in the document is the background.
    """
    root = ET.fromstring(text)
    vb = root.get("viewBox")
    if vb:
        _, _, cw, ch = (float(v) for v in vb.replace(",", " ").split())
    else:
        cw, ch = float(root.get("width")), float(root.get("height"))
    scene, title = Scene(cw, ch), None
    for el in root:
        tag = el.tag.split("}")[-1]
        if tag == "title":
            title = el.text or ""
        elif tag in ("rect", "path"):
            if tag == "rect":
                x, y = float(el.get("x", 0)), float(el.get("y", 0))
                rw, rh = float(el.get("width")), float(el.get("height"))
                full = (x, y, rw, rh) == (0, 0, cw, ch)
                if full and not scene.shapes and scene.background is None:
                    scene.background = _parse_color(el.get("fill"))
                    continue
                pts = torch.tensor([[x, y], [x + rw, y], [x + rw, y + rh], [x, y + rh]])
                closed, kind = True, "linear"
            else:
                pts, closed, kind = _parse_d(el.get("d", ""))
            fill_rgb = _parse_color(el.get("fill", "black"))
            stroke_rgb = _parse_color(el.get("stroke", "none"))
            fill = stroke = None
            if fill_rgb is not None:
                fill = torch.cat([fill_rgb, torch.tensor([float(el.get("fill-opacity", 1))])])
            if stroke_rgb is not None:
                stroke = torch.cat([stroke_rgb, torch.tensor([float(el.get("stroke-opacity", 1))])])
            width = float(el.get("stroke-width", 1.0)) if stroke is not None else 0.0
            scene.shapes.append(Shape(pts.float(), closed=closed, fill=fill, stroke=stroke,
                                      stroke_width=width, fill_rule=el.get("fill-rule", "nonzero"),
                                      kind=kind))
    return scene, title


def read_svg(path: str | os.PathLike) -> tuple[Scene, str | None]:
    """Read and parse an SVG file (see :func:`parse_svg`)."""
    return parse_svg(Path(path).read_text(encoding="utf-8"))
