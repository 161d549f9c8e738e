"""ISS networks and loss terms (specs/iss.md §15.1, §15.3, §15.4 #20, #22)."""

import pytest
import torch
from torch import nn

from iss.analytic import SphereField
from iss.cameras import ViewSampler, pixel_grid
from iss.clip_features import embed_renders, perturb, stage1_mapper_input, unit_noise
from iss.losses import (augment_background, bg_loss, clip_loss, dvr_losses, mapper_loss, prior_loss,
                        random_backgrounds)
from iss.models import CLIP2ShapeMapper, DVRDecoder, ResNetEncoder, SplitDecoder
from iss.renderer import DVRRenderer


def test_mapper_structure():
    torch.manual_seed(0)
    m = CLIP2ShapeMapper()
    lins = [x for x in m.modules() if isinstance(x, nn.Linear)]
    assert [(x.in_features, x.out_features) for x in lins] == [(512, 512)] * 8 + [(512, 256)] + [(256, 256)] * 3
    acts = [x for x in m.net if isinstance(x, nn.LeakyReLU)]
    assert len(acts) == 11 and all(a.negative_slope == 0.02 for a in acts)
    assert isinstance(m.net[-1], nn.Linear)  # no activation after the last layer
    assert sum(p.numel() for p in m.parameters()) == 2_429_952
    w = torch.cat([x.weight.flatten() for x in lins])
    assert abs(w.std().item() - 0.02) < 0.002 and all((x.bias == 0).all() for x in lins)
    assert m(torch.randn(3, 512)).shape == (3, 256)
    with torch.no_grad():  # the output can be negative
        lins[-1].bias.fill_(-1.0)
    assert (m(torch.randn(2, 512)) < 0).any()


def test_decoder_structure():
    torch.manual_seed(0)
    d = DVRDecoder()
    assert sum(p.numel() for p in d.parameters()) == 3_288_580
    p, c = torch.rand(2, 5, 3) - 0.5, torch.randn(2, 256)
    assert d(p, c).shape == (2, 5, 4)
    assert d(p, c, only_occupancy=True).shape == (2, 5)
    rgb = d(p, c, only_texture=True)
    assert rgb.shape == (2, 5, 3) and rgb.min() > 0 and rgb.max() < 1
    for block in d.blocks:  # zero-initialised fc_1.weight: the residual branch is input-independent (= fc_1.bias)
        assert (block.fc_1.weight == 0).all()
        x = torch.randn(4, 512)
        assert torch.allclose(block(x) - x, block.fc_1.bias.expand(4, -1), atol=1e-6)
    with pytest.raises(ValueError, match="c_dim"):
        d(p, torch.randn(2, 128))


def test_encoder_output():
    torch.manual_seed(0)
    enc = ResNetEncoder(8, widths=(4, 4, 8, 8), blocks=(1, 1, 1, 1), image_size=224).eval()
    assert enc(torch.rand(2, 3, 224, 224)).shape == (2, 8)
    assert enc(torch.rand(2, 3, 64, 64)).shape == (2, 8)  # resized to 224 inside
    full = ResNetEncoder()  # torchvision ResNet-18 layout + Linear(512, 256)
    assert sum(p.numel() for p in full.parameters()) == 11_176_512 + 512 * 256 + 256


def test_bg_loss_semantics():
    rgb = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 0.0], [0.2, 0.3, 0.4], [0.0, 0.0, 0.0]], requires_grad=True)
    hit = torch.tensor([False, False, True, True])
    lam = 30.0
    assert torch.isclose(lam * bg_loss(rgb, hit), torch.tensor(lam * (0.5 * 3 + 1) / (4 * 3)))
    assert torch.isclose(bg_loss(rgb, hit, "l2_sum"), torch.tensor(0.25 * 3 + 1.0))
    assert bg_loss(torch.ones(4, 3), hit) == 0
    other = rgb.detach().clone()
    other[hit] = 0.9  # hits never contribute
    assert torch.isclose(bg_loss(other, hit), bg_loss(rgb, hit))
    bg_loss(rgb, hit).backward()
    assert (rgb.grad[hit] == 0).all() and (rgb.grad[~hit] != 0).any()


def test_mapper_loss_forms():
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    assert torch.isclose(2000 * mapper_loss(a, b, "l1"), 2000 * (a - b).abs().mean())
    assert torch.isclose(mapper_loss(a, b, "mse"), ((a - b) ** 2).sum(-1).mean())
    assert mapper_loss(a, a, "l1") == 0 and mapper_loss(a, a, "mse") == 0
    assert mapper_loss(a, b, "l1") > 0 and mapper_loss(a, b, "mse") > 0


def test_clip_loss(tiny_clip_model):
    imgs = torch.rand(3, 3, 8, 8)
    emb = embed_renders(tiny_clip_model, imgs)
    target = tiny_clip_model.encode_text(["a red cube"])
    lam = 4.0
    assert torch.isclose(lam * clip_loss(emb, target), lam * clip_loss(emb, 7.3 * target), atol=1e-5)
    assert clip_loss(emb, emb).abs() < 1e-5
    v = clip_loss(emb, target)
    assert 0 <= v <= 2 * emb.shape[0]
    # ISS's preprocessing flags: nearest resize + CLIP normalisation, or the code's approx norm / transpose
    assert not torch.allclose(embed_renders(tiny_clip_model, imgs, norm="approx"), emb)
    assert embed_renders(tiny_clip_model, imgs, resize_mode="bilinear", transpose=True).shape == emb.shape


def test_dvr_losses_masks(make_cams):
    torch.manual_seed(0)
    gt_field = SphereField(0.3, 50.0, rgb=(0.7, 0.2, 0.1))
    ren = DVRRenderer(bound=0.5, n_steps=64)
    cams = make_cams([[0.0, 0.4, 1.4], [0.9, 0.3, 1.1]])
    uv = pixel_grid(12, 12)[None].expand(2, -1, -1)
    with torch.no_grad():
        gt = ren.render_rays(gt_field, None, cams, uv)
    mask, depth = gt.hit, gt.depth
    rgb = torch.where(mask[..., None], gt.rgb, torch.ones_like(gt.rgb))

    def terms(field):
        t, out = dvr_losses(field, None, cams, uv, rgb, mask, depth, ren, generator=torch.Generator().manual_seed(0))
        return {k: float(v.detach()) for k, v in t.items()}, out

    exact, out = terms(gt_field)
    assert exact["rgb"] < 1e-5 and exact["depth"] < 1e-3 and exact["occupancy"] < 1e-5 and exact["normal"] < 0.05
    n_free = (~mask).sum().item() / 2  # freespace sums BCE(k·(r − |p|), 0) over ¬m rays ÷ B: small per ray for large k
    assert exact["freespace"] < 0.02 * n_free
    bigger, out_b = terms(SphereField(0.36, 50.0, rgb=(0.7, 0.2, 0.1)))
    smaller, out_s = terms(SphereField(0.24, 50.0, rgb=(0.7, 0.2, 0.1)))
    assert bigger["depth"] > exact["depth"] + 0.1 and bigger["freespace"] > exact["freespace"]
    assert smaller["occupancy"] > exact["occupancy"] + 1.0  # GT-mask pixels the smaller sphere misses
    # index sets: occupancy only on m ∧ ¬h, freespace only on ¬m
    assert ((mask & ~out_s.hit).sum() > 0) and ((mask & ~out_b.hit).sum() == 0)
    assert abs(bigger["occupancy"] - exact["occupancy"]) < 1e-6  # no m ∧ ¬h pixels when the sphere grows
    recoloured, _ = terms(SphereField(0.3, 50.0, rgb=(0.1, 0.2, 0.7)))
    assert recoloured["rgb"] > exact["rgb"] + 1.0 and abs(recoloured["freespace"] - exact["freespace"]) < 1e-6


def test_prior_loss(tiny_parts):
    _, dec0, _, _ = tiny_parts()
    dec0.requires_grad_(False)
    dec = SplitDecoder(dec0).occ.requires_grad_(True)  # a deep copy
    p, c = torch.rand(1, 64, 3) - 0.5, torch.zeros(1, dec0.c_dim)
    assert prior_loss(dec(p, c, only_occupancy=True), dec0(p, c, only_occupancy=True)) == 0
    opt = torch.optim.SGD(dec.parameters(), lr=0.1)
    dec(p, c, only_occupancy=True).sum().backward()
    opt.step()
    assert prior_loss(dec(p, c, only_occupancy=True), dec0(p, c, only_occupancy=True)) > 0
    assert all(q.grad is None and not q.requires_grad for q in dec0.parameters())


def test_diversity_perturbation():
    f = torch.nn.functional.normalize(torch.randn(1, 32), dim=-1)
    assert torch.equal(perturb(f, 1.0), f)
    a = torch.nn.functional.normalize(perturb(f, 0.75, torch.Generator().manual_seed(1)), dim=-1)
    b = torch.nn.functional.normalize(perturb(f, 0.75, torch.Generator().manual_seed(2)), dim=-1)
    assert torch.nn.functional.cosine_similarity(a, b).item() < 1 - 1e-4
    z = unit_noise(100, 32, torch.Generator().manual_seed(0))
    assert torch.allclose(z.norm(dim=-1), torch.ones(100), atol=1e-6)


def test_stage1_noise_variant():
    f_raw = torch.randn(4, 16) * 10
    x1, x2 = stage1_mapper_input(f_raw), stage1_mapper_input(f_raw)
    assert torch.allclose(x1.norm(dim=-1), torch.ones(4), atol=1e-6) and not torch.allclose(x1, x2)
    assert torch.allclose(stage1_mapper_input(f_raw, noise=False), torch.nn.functional.normalize(f_raw, dim=-1))


def test_background_augmentation():
    rgb = torch.rand(2, 4, 4, 3, requires_grad=True)
    hit = torch.rand(2, 4, 4) > 0.5
    bg = torch.rand(2, 3)
    out = augment_background(rgb, hit, bg)
    assert torch.equal(out[hit], rgb[hit]) and torch.allclose(out[~hit], bg[:, None, None].expand(2, 4, 4, 3)[~hit])
    out.sum().backward()
    assert (rgb.grad[hit] == 1).all() and (rgb.grad[~hit] == 0).all()  # the mask carries no gradient
    g = torch.Generator().manual_seed(0)
    tex = random_backgrounds(2000, "code_texture", g)
    black = (tex == 0).all(-1)
    assert abs(black.float().mean().item() - 0.2) < 0.03
    assert ((tex[~black] == 1).any(-1)).all()  # one channel is 1, the other two share one value
    shp = random_backgrounds(2000, "code_shape", g)
    assert abs((shp == 0).all(-1).float().mean().item() - 0.2) < 0.03 and set(shp.unique().tolist()) <= {0.0, 1.0}
    u = random_backgrounds(500, "uniform", g)
    assert u.min() >= 0 and u.max() <= 1 and u.std() > 0.2


def test_texture_split_equivalence(tiny_parts):
    _, dec, _, _ = tiny_parts()
    split = SplitDecoder(dec)
    p, c = torch.rand(1, 1000, 3) - 0.5, torch.randn(1, dec.c_dim)
    assert torch.allclose(split(p, c), dec(p, c), atol=1e-6)


def test_view_sampler_pool(tmp_path):
    import numpy as np

    cams = ViewSampler().sample(3, torch.Generator().manual_seed(0))
    w2c = cams.world_mat.numpy()
    k = np.diag([2.1875, 2.1875, 1.0, 1.0]).astype(np.float32)
    np.savez(tmp_path / "cameras.npz", **{f"world_mat_{i}": w2c[i] for i in range(3)}, **{f"camera_mat_{i}": k for i in range(3)})
    pool = ViewSampler(camera_files=[str(tmp_path / "cameras.npz")])
    got = pool.sample(5, torch.Generator().manual_seed(0))
    dists = torch.cdist(got.origins, cams.origins).min(-1).values
    assert dists.max() < 1e-4  # every sample is one of the stored training cameras
