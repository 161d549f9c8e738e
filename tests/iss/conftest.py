"""Shared fixtures of the ISS tests: tiny parts (specs/iss.md §15.0), analytic scenes, checkpoint writing."""

from typing import Optional

import pytest
import torch

from common.cameras import look_at
from common.testing.fixtures import tiny_clip_model  # noqa: F401  (session fixture)
from iss.cameras import OPENGL_TO_OPENCV, DVRCameras, ViewSampler
from iss.models import CLIP2ShapeMapper, DVRDecoder, ResNetEncoder
from iss.renderer import DVRRenderer

C_DIM, CLIP_DIM = 8, 16  # tiny test CLIP embeds in 16 dims


def cam_at(eye, up=(0.0, 1.0, 0.0), focal: float = 2.1875) -> DVRCameras:
    """DVR camera(s) at ``eye`` ``[B, 3]`` looking at the origin (spec's ``look_at`` helper, K = diag(f, f, 1, 1))."""
    eye = torch.as_tensor(eye, dtype=torch.float32).reshape(-1, 3)
    c2w = look_at(eye, torch.zeros_like(eye), torch.tensor(up)) @ OPENGL_TO_OPENCV
    return DVRCameras(c2w, focal)


@pytest.fixture
def make_cams():
    return cam_at


@pytest.fixture
def tiny_parts():
    """Factory: fresh tiny ``(encoder, decoder, mapper, renderer)`` (c_dim 8, hidden 16 × 2 blocks, mapper 16×8 → 8×4)."""

    def build(seed: int = 0, hidden: int = 16, c_dim: int = C_DIM, n_steps: int = 16):
        torch.manual_seed(seed)
        enc = ResNetEncoder(c_dim, widths=(4, 4, 8, 8), blocks=(1, 1, 1, 1), image_size=None)
        dec = DVRDecoder(c_dim, hidden, 2)
        mapper = CLIP2ShapeMapper(CLIP_DIM, 16, c_dim)
        ren = DVRRenderer(bound=0.5, n_steps=n_steps, n_secant=8)
        return enc, dec, mapper, ren

    return build


def centre_occupancy(decoder: DVRDecoder, c_dim: int = C_DIM, seed: int = 0) -> DVRDecoder:
    """Shift a random decoder's occupancy bias so that its logit is 0 at the median of a small ball: a surface exists."""
    g = torch.Generator().manual_seed(seed)
    p = (torch.rand(1, 2000, 3, generator=g) - 0.5) * 0.6
    with torch.no_grad():
        logits = decoder(p, torch.zeros(1, c_dim), only_occupancy=True)
        decoder.fc_out.bias[0] -= logits.median()
    return decoder


@pytest.fixture
def surface_decoder():
    return centre_occupancy


def render_scene_batch(fields, views: int, size: int, seed: int = 0, input_size: Optional[int] = None):
    """Multi-view batch (``input``, ``image``, ``mask``, ``depth``, ``c2w``, ``focal``) of analytic fields, rendered with
    the DVR renderer itself (white background); one item per field."""
    ren = DVRRenderer(bound=0.5, n_steps=48, n_secant=8)
    sampler = ViewSampler(radius=(1.4, 1.6))
    g = torch.Generator().manual_seed(seed)
    items = []
    with torch.no_grad():
        for f in fields:
            cams = sampler.sample(views, g)
            out = ren.render_image(f, None, cams, size)
            img = torch.where(out.hit[..., None], out.rgb, torch.ones_like(out.rgb)).permute(0, 3, 1, 2)
            for v in range(views):
                items.append({"input": img[v], "image": img[(v + 1) % views], "mask": out.hit[(v + 1) % views].float(),
                              "depth": out.depth[(v + 1) % views], "c2w": cams.c2w[(v + 1) % views],
                              "focal": cams.focal[(v + 1) % views], "caption": "a sphere"})
    return items


@pytest.fixture
def scene_items():
    return render_scene_batch


def collate(items):
    return torch.utils.data.default_collate(items)


@pytest.fixture
def collate_items():
    return collate


def save_system_ckpt(system, path) -> str:
    """Write a checkpoint the way Lightning does for our purposes: ``state_dict`` + the system's ``on_save_checkpoint``."""
    ckpt = {"state_dict": dict(system.state_dict())}
    system.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return str(path)


@pytest.fixture
def save_ckpt():
    return save_system_ckpt
