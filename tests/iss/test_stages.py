"""Stage logic: gradient isolation, mapper-only stage 2, stylisation, checkpoint chaining and its errors (§15.4)."""

import copy

import pytest
import torch
import torch.nn.functional as F

from iss.analytic import CodeSphereField, SphereField
from iss.cameras import ViewSampler
from iss.checkpoints import CheckpointMismatchError
from iss.models import CLIP2ShapeMapper, DVRDecoder
from iss.renderer import DVRRenderer
from iss.stage1 import Stage1System
from iss.stage2 import Stage2System
from iss.stylize import StylizeSystem
from iss.svr import SVRSystem


def _stage1(tiny_clip_model, tiny_parts, **kw):
    enc, dec, mapper, ren = tiny_parts(n_steps=12)
    s = Stage1System(tiny_clip_model, enc, dec, mapper, ren, allow_random_init=True, n_pixels=32, sample_milestones=[],
                     sample_counts=[12], **kw)
    s.load_pretrained()
    return s


def _grads(module):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in module.parameters()]


def test_stage1_gradient_isolation(tiny_clip_model, tiny_parts, scene_items, collate_items, surface_decoder):
    s = _stage1(tiny_clip_model, tiny_parts)
    surface_decoder(s.decoder)
    batch = collate_items(scene_items([SphereField(0.3), SphereField(0.2, rgb=(0.1, 0.8, 0.2))], 2, 16)[::2])
    s.train()
    assert not s.encoder.training  # E_S stays in eval mode (BN statistics frozen)

    def run(which):
        s.zero_grad(set_to_none=True)
        t = s.losses(batch, torch.Generator().manual_seed(0))
        loss = {"all": t["loss"], "mapper": s.lambda_mapper * t["loss_mapper"], "decoder": t["loss_decoder"]}[which]
        loss.backward()
        return _grads(s.mapper), _grads(s.decoder), t

    m_all, d_all, t = run("all")
    m_only, d_zero, _ = run("mapper")
    m_zero, d_only, _ = run("decoder")
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(m_all, m_only))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(d_all, d_only))
    assert all((g == 0).all() for g in d_zero) and all((g == 0).all() for g in m_zero)
    assert t["loss_bg"] > 0 and torch.isfinite(t["loss"])
    enc_before = copy.deepcopy(s.encoder.state_dict())
    clip_before = [p.clone() for p in tiny_clip_model.model.parameters()]
    opt = s.configure_optimizers()
    run("all")
    opt.step()
    assert all(torch.equal(v, s.encoder.state_dict()[k]) for k, v in enc_before.items())  # weights and BN buffers
    assert all(torch.equal(a, b) for a, b in zip(clip_before, tiny_clip_model.model.parameters()))
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in [*s.mapper.parameters(), *s.decoder.parameters()]}


class ToyCLIP:
    """Image encoder = mean RGB → fixed linear map; every text maps to the embedding of a reddish colour."""

    def __init__(self, dim: int = 16) -> None:
        self.A = torch.randn(3, dim, generator=torch.Generator().manual_seed(3))
        self.target = F.normalize(torch.tensor([[0.9, 0.1, 0.1]]) @ self.A, dim=-1)

    def load(self):
        return self

    def encode_image(self, images):
        return F.normalize(images.mean(dim=(2, 3)) @ self.A, dim=-1)

    def encode_text(self, prompts):
        return self.target.expand(len(prompts), -1)


def test_stage1_mapper_only(tiny_clip_model, tiny_parts, scene_items, collate_items):
    """train_decoder=False: the loss is λ_M·L_M (the same L_M as the joint stage), D is frozen and not rendered."""
    batch = collate_items(scene_items([SphereField(0.3), SphereField(0.2, rgb=(0.1, 0.8, 0.2))], 2, 16)[::2])
    joint = _stage1(tiny_clip_model, tiny_parts)
    alone = _stage1(tiny_clip_model, tiny_parts, train_decoder=False)
    t_joint = joint.losses(batch, torch.Generator().manual_seed(0))
    t_alone = alone.losses(batch, torch.Generator().manual_seed(0))
    assert torch.allclose(t_alone["loss_mapper"], t_joint["loss_mapper"])
    assert torch.allclose(t_alone["loss"], alone.lambda_mapper * t_alone["loss_mapper"])
    opt = alone.configure_optimizers()
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in alone.mapper.parameters()}
    dec_before = copy.deepcopy(alone.decoder.state_dict())
    m_before = copy.deepcopy(alone.mapper.state_dict())
    t_alone["loss"].backward()
    opt.step()
    assert all(torch.equal(v, alone.decoder.state_dict()[k]) for k, v in dec_before.items())
    assert any(not torch.equal(v, alone.mapper.state_dict()[k]) for k, v in m_before.items())


def test_stage1_mapper_warmup_then_joint(tiny_clip_model, tiny_parts, scene_items, collate_items, surface_decoder):
    """mapper_warmup_steps=3: steps 0–2 train M alone (no rendering, D gets no gradient), step 3 on renders and trains D;
    validation's forced rendering reports L_bg in the warm-up too."""
    from types import SimpleNamespace

    batch = collate_items(scene_items([SphereField(0.3), SphereField(0.2, rgb=(0.1, 0.8, 0.2))], 2, 16)[::2])
    s = _stage1(tiny_clip_model, tiny_parts, mapper_warmup_steps=3)
    surface_decoder(s.decoder)  # a surface, so some rays miss and L_bg > 0
    s.train()
    seen = {}
    for step in (0, 2, 3):
        s._trainer = SimpleNamespace(global_step=step)
        s.zero_grad(set_to_none=True)
        t = s.losses(batch, torch.Generator().manual_seed(0))
        t["loss"].backward()
        seen[step] = ("loss_bg" in t, any(p.grad is not None and p.grad.abs().sum() > 0 for p in s.decoder.parameters()),
                      any(p.grad is not None and p.grad.abs().sum() > 0 for p in s.mapper.parameters()))
    s._trainer = SimpleNamespace(global_step=0)
    forced = s.losses(batch, torch.Generator().manual_seed(0), with_decoder=True)
    s._trainer = None
    assert seen == {0: (False, False, True), 2: (False, False, True), 3: (True, True, True)}
    assert forced["loss_bg"] > 0
    with pytest.raises(ValueError, match="mapper_warmup_steps"):
        _stage1(tiny_clip_model, tiny_parts, mapper_warmup_steps=-1)


def test_stage2_decreases_clip_loss():
    import time

    torch.manual_seed(0)
    dec = CodeSphereField(8)
    s = Stage2System(ToyCLIP(), dec, CLIP2ShapeMapper(16, 16, 8), DVRRenderer(bound=0.5, n_steps=16), ViewSampler(),
                     allow_random_init=True, n_iters=15, n_views=4, render_res=10, lr=3e-2, lambda_bg=3.0)
    s.load_pretrained()
    x, _ = s.text_features("a red ball")
    cams = ViewSampler().ring(4).scale_translation(1.5)

    def red(code):
        with torch.no_grad():
            out = s.renderer.render_image(dec, code.reshape(1, -1).expand(4, -1), cams, 10)
        return out.rgb[out.hit][:, 0].mean().item()

    red0 = red(s.stage1_code(x))
    start = time.perf_counter()
    res = s.optimise("a red ball", seed=0)
    assert time.perf_counter() - start < 60
    hist = res["history"]["loss_clip"]
    assert hist[-1] < 0.8 * hist[0], hist
    assert red(res["code"]) > red0


@pytest.mark.parametrize("background", ["field", "white"])
def test_stage2_clip_background(background):
    """``field`` (the code): CLIP sees the colour field where rays miss, so a shape-less code still gets a CLIP gradient
    through the off-surface colour; ``white``: misses are white, so it gets none."""
    torch.manual_seed(0)
    dec = CodeSphereField(8, r=-1.0)  # no surface anywhere: every ray misses
    s = Stage2System(ToyCLIP(), dec, CLIP2ShapeMapper(16, 16, 8), DVRRenderer(bound=0.5, n_steps=8), ViewSampler(),
                     allow_random_init=True, n_views=2, render_res=6, lambda_bg=0.0, clip_background=background)
    s.load_pretrained()
    x, target = s.text_features("a red ball")
    terms = s.step_losses(x, target, ViewSampler().ring(2).scale_translation(1.5))
    assert terms["hit_fraction"] == 0
    terms["loss"].backward()
    grad = sum(p.grad.abs().sum() for p in s.mapper.parameters() if p.grad is not None)
    if background == "white":  # an all-white image: the CLIP loss is a constant
        white = F.normalize(torch.ones(1, 3) @ ToyCLIP().A, dim=-1)
        assert torch.allclose(terms["loss_clip"], 2 * (1 - F.cosine_similarity(white, target)).sum(), atol=1e-5)
        assert grad == 0
    else:
        assert grad > 0
    with pytest.raises(ValueError, match="clip_background"):
        Stage2System(ToyCLIP(), dec, CLIP2ShapeMapper(16, 16, 8), clip_background="black")


def test_stage2_snapshots_are_the_shorter_runs():
    """The iteration-k snapshot (the code's intermediate checkpoints) is exactly the result of a k-iteration run."""
    torch.manual_seed(0)
    dec = CodeSphereField(8)
    kw = dict(allow_random_init=True, n_views=2, render_res=8, lr=3e-2, snapshot_iters=[2, 3])
    s = Stage2System(ToyCLIP(), dec, CLIP2ShapeMapper(16, 16, 8), DVRRenderer(bound=0.5, n_steps=8), ViewSampler(),
                     n_iters=4, **kw)
    s.load_pretrained()
    res = s.optimise("a red ball", seed=3)
    assert sorted(res["snapshots"]) == [2, 3]
    short = copy.deepcopy(s)
    short.hparams.n_iters = 2
    res2 = short.optimise("a red ball", seed=3)
    assert torch.allclose(res["snapshots"][2]["code"], res2["code"], atol=1e-6)
    assert not torch.allclose(res["snapshots"][2]["code"], res["code"])  # later iterations moved on
    assert all(torch.allclose(v, short.mapper.state_dict()[k], atol=1e-6) for k, v in res["snapshots"][2]["mapper"].items())
    with pytest.raises(ValueError, match="snapshot_iters"):
        Stage2System(ToyCLIP(), dec, CLIP2ShapeMapper(16, 16, 8), snapshot_iters=[0])


def test_stage2_only_mapper_changes(tiny_clip_model, tiny_parts, surface_decoder):
    _, dec, mapper, ren = tiny_parts(n_steps=8)
    surface_decoder(dec)
    s = Stage2System(tiny_clip_model, dec, mapper, ren, ViewSampler(), allow_random_init=True, n_iters=2, n_views=2, render_res=12)
    s.load_pretrained()
    dec_before = copy.deepcopy(dec.state_dict())
    m_before = copy.deepcopy(mapper.state_dict())
    clip_before = [p.clone() for p in tiny_clip_model.model.parameters()]

    class Counting(torch.optim.Adam):
        steps = 0

        def step(self, closure=None):
            Counting.steps += 1
            return super().step(closure)

    s.optimise("a red cube", 0, Counting(mapper.parameters(), lr=1e-3))
    assert Counting.steps == 2  # one optimiser step per iteration, not per view
    assert any(not torch.equal(v, mapper.state_dict()[k]) for k, v in m_before.items())
    assert all(torch.equal(v, dec.state_dict()[k]) for k, v in dec_before.items())
    assert all(torch.equal(a, b) for a, b in zip(clip_before, tiny_clip_model.model.parameters()))
    # the next prompt starts again from the stage-1 mapper
    s.mapper.load_state_dict(s._mapper_init)
    assert all(torch.equal(v, s.mapper.state_dict()[k]) for k, v in m_before.items())


def _stylizer(tiny_clip_model, tiny_parts, surface_decoder, mode, **kw):
    _, dec, _, ren = tiny_parts(n_steps=8)
    surface_decoder(dec)
    s = StylizeSystem(tiny_clip_model, dec, ren, ViewSampler(), style="wooden", mode=mode, allow_random_init=True, n_views=2,
                      render_res=10, **kw)
    s.load_pretrained()
    s.code.zero_()  # the code the surface decoder was centred for
    return s


def test_texture_stylize_keeps_occupancy(tiny_clip_model, tiny_parts, surface_decoder):
    s = _stylizer(tiny_clip_model, tiny_parts, surface_decoder, "texture", lr=1e-2)
    p = torch.rand(1, 500, 3) - 0.5
    c = s.code[None]
    occ0 = s.decoder(p, c, only_occupancy=True).detach().clone()
    tex0 = copy.deepcopy(s.decoder.tex.state_dict())
    cams = ViewSampler().ring(2)
    hit0 = s.renderer.render_image(s.decoder, c.expand(2, -1), cams, 10).hit
    opt = s.configure_optimizers()
    for _ in range(3):
        opt.zero_grad()
        s.losses()["loss"].backward()
        opt.step()
    assert torch.equal(s.decoder(p, c, only_occupancy=True), occ0)  # D_o bit-identical
    assert all(q.grad is None for q in s.decoder.occ.parameters())
    assert any(not torch.equal(v, s.decoder.tex.state_dict()[k]) for k, v in tex0.items())
    assert torch.equal(s.renderer.render_image(s.decoder, c.expand(2, -1), cams, 10).hit, hit0) and hit0.any()


def test_shape_texture_stylize_step(tiny_clip_model, tiny_parts, surface_decoder):
    s = _stylizer(tiny_clip_model, tiny_parts, surface_decoder, "shape_texture", lambda_prior=100.0)
    before = copy.deepcopy(s.decoder.state_dict())
    opt = s.configure_optimizers()
    opt.zero_grad()
    s.losses()["loss"].backward()
    opt.step()
    assert any(not torch.equal(v, s.decoder.state_dict()[k]) for k, v in before.items())
    # λ_C = 0 and D' = D_0: the loss is 0 and nothing moves
    s2 = _stylizer(tiny_clip_model, tiny_parts, surface_decoder, "shape_texture", lambda_clip=0.0)
    before = copy.deepcopy(s2.decoder.state_dict())
    opt = s2.configure_optimizers()
    opt.zero_grad()
    terms = s2.losses()
    assert terms["loss"].item() == 0.0
    terms["loss"].backward()
    assert all(q.grad is None or (q.grad == 0).all() for q in s2.decoder.parameters())
    opt.step()
    assert all(torch.equal(v, s2.decoder.state_dict()[k]) for k, v in before.items())
    assert all(not q.requires_grad for q in s2.decoder_ref.parameters())


def test_ei_plus_d_baseline(tmp_path, tiny_clip_model, tiny_parts, scene_items, collate_items, save_ckpt):
    """E_I + D: the frozen CLIP's normalised image embedding is the code; only D trains; stage 1 refuses it."""
    from iss.models import CLIPImageEncoder

    enc = CLIPImageEncoder(tiny_clip_model, c_dim=16)
    batch = collate_items(scene_items([SphereField(0.3), SphereField(0.2, rgb=(0.1, 0.8, 0.2))], 2, 16)[::2])
    c = enc(batch["input"])
    assert torch.allclose(c.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(c, F.normalize(tiny_clip_model.encode_image(batch["input"]).float(), dim=-1), atol=1e-5)
    with pytest.raises(ValueError, match="c_dim"):
        CLIPImageEncoder(tiny_clip_model, c_dim=8).load()
    _, _, _, ren = tiny_parts()
    svr = SVRSystem(enc, DVRDecoder(16, 16, 2), ren, n_pixels=32, sample_milestones=[], sample_counts=[8])
    assert not any(k.startswith("encoder.") for k in svr.state_dict())  # CLIP is never saved
    clip_before = [p.clone() for p in tiny_clip_model.model.parameters()]
    dec_before = copy.deepcopy(svr.decoder.state_dict())
    opt = svr.configure_optimizers()
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in svr.decoder.parameters()}
    svr.losses(batch, torch.Generator().manual_seed(0))["loss"].backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(clip_before, tiny_clip_model.model.parameters()))
    assert any(not torch.equal(v, svr.decoder.state_dict()[k]) for k, v in dec_before.items())
    path = save_ckpt(svr, tmp_path / "svr_clip.ckpt")
    assert torch.load(path, weights_only=True)["iss"]["encoder"] == "clip"
    with pytest.raises(CheckpointMismatchError, match="E_I \\+ D baseline"):
        Stage1System(tiny_clip_model, *tiny_parts(), svr_ckpt=path).load_pretrained()


# ------------------------------------------------------------------------------------------ checkpoint chaining
def test_stage_checkpoints_chain_and_refuse_mismatches(tmp_path, tiny_clip_model, tiny_parts, save_ckpt):
    enc, dec, mapper, ren = tiny_parts()
    svr = SVRSystem(enc, dec, ren, n_pixels=16)
    svr_path = save_ckpt(svr, tmp_path / "svr.ckpt")
    # stage 1 loads E_S and D from the SVR checkpoint
    enc1, dec1, mapper1, ren1 = tiny_parts(seed=1)
    s1 = Stage1System(tiny_clip_model, enc1, dec1, mapper1, ren1, svr_ckpt=svr_path)
    s1.load_pretrained()
    assert all(torch.equal(a, b) for a, b in zip(s1.decoder.parameters(), dec.parameters()))
    s1_path = save_ckpt(s1, tmp_path / "stage1.ckpt")
    assert not any(k.startswith("encoder.") for k in torch.load(s1_path, weights_only=True)["state_dict"])
    # stage 2 loads M and D from the stage-1 checkpoint
    _, dec2, mapper2, ren2 = tiny_parts(seed=2)
    s2 = Stage2System(tiny_clip_model, dec2, mapper2, ren2, ViewSampler(), stage1_ckpt=s1_path)
    s2.load_pretrained()
    assert all(torch.equal(a, b) for a, b in zip(s2.mapper.parameters(), mapper1.parameters()))
    # a stage-1 checkpoint of a different SVR model (decoder hidden 16 vs 24): clear error before any work
    _, dec_other, mapper_other, _ = tiny_parts(hidden=24)
    bad = Stage2System(tiny_clip_model, dec_other, mapper_other, ren2, ViewSampler(), stage1_ckpt=s1_path)
    with pytest.raises(CheckpointMismatchError, match="different SVR model"):
        bad.load_pretrained()
    # a mapper/decoder with another c_dim
    _, dec_c, mapper_c, _ = tiny_parts(c_dim=6)
    with pytest.raises(CheckpointMismatchError, match="different SVR model"):
        Stage2System(tiny_clip_model, dec_c, mapper_c, ren2, ViewSampler(), stage1_ckpt=s1_path).load_pretrained()
    # the SVR checkpoint where a stage-1 one is expected
    with pytest.raises(CheckpointMismatchError, match="SVR \\(stage-0\\) checkpoint"):
        Stage2System(tiny_clip_model, *tiny_parts()[1:4], ViewSampler(), stage1_ckpt=svr_path).load_pretrained()
    # a stage-1 checkpoint where the SVR one is expected
    with pytest.raises(CheckpointMismatchError, match="not an SVR one"):
        Stage1System(tiny_clip_model, *tiny_parts(), svr_ckpt=s1_path).load_pretrained()
    # an SVR model with other sizes than the configured stage 1
    with pytest.raises(CheckpointMismatchError, match="does not fit"):
        e, d, m, r = tiny_parts(hidden=24)
        Stage1System(tiny_clip_model, e, d, m, r, svr_ckpt=svr_path).load_pretrained()
    # no checkpoint and no test flag
    with pytest.raises(ValueError, match="allow_random_init"):
        Stage2System(tiny_clip_model, *tiny_parts()[1:4], ViewSampler()).load_pretrained()
    # the "w/o stage 1" ablation: D from the SVR checkpoint, M left at its initialisation
    _, dec3, mapper3, ren3 = tiny_parts(seed=3)
    m_init = copy.deepcopy(mapper3.state_dict())
    s3 = Stage2System(tiny_clip_model, dec3, mapper3, ren3, ViewSampler(), svr_ckpt=svr_path)
    s3.load_pretrained()
    assert all(torch.equal(a, b) for a, b in zip(s3.decoder.parameters(), dec.parameters()))
    assert all(torch.equal(v, s3.mapper.state_dict()[k]) for k, v in m_init.items())
    with pytest.raises(ValueError, match="not both"):
        Stage2System(tiny_clip_model, *tiny_parts()[1:4], ViewSampler(), stage1_ckpt=s1_path, svr_ckpt=svr_path)
    with pytest.raises(CheckpointMismatchError, match="not an SVR one"):  # a stage-1 checkpoint given as svr_ckpt
        Stage2System(tiny_clip_model, *tiny_parts()[1:4], ViewSampler(), svr_ckpt=s1_path).load_pretrained()
    with pytest.raises(FileNotFoundError, match="not found"):
        Stage2System(tiny_clip_model, *tiny_parts()[1:4], ViewSampler(), stage1_ckpt=str(tmp_path / "nope.ckpt")).load_pretrained()


def test_missing_masks_and_bad_cameras(tmp_path, tiny_parts, scene_items, collate_items):
    import numpy as np
    from PIL import Image

    from common.data import DatasetError
    from iss.data import DVRShapeNetDataset

    batch = collate_items(scene_items([SphereField(0.3)], 2, 8))
    del batch["mask"]
    with pytest.raises(DatasetError, match="without masks"):
        SVRSystem(*tiny_parts()[:2], n_pixels=8).losses(batch)
    # a DVR ShapeNet folder: 3 renders, masks, depth (.npy), cameras for only 2 views
    model = tmp_path / "02691156" / "m0"
    for sub in ("image", "mask", "depth", "img_choy2016"):
        (model / sub).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(model / "image" / f"{i:04d}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(model / "mask" / f"{i:04d}.png")
        np.save(model / "depth" / f"{i:04d}.npy", np.full((8, 8), np.inf, np.float32))
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(model / "img_choy2016" / f"{i:03d}.jpg")
    (tmp_path / "02691156" / "train.lst").write_text("m0\n")
    k, w = np.diag([2.1875, 2.1875, 1, 1]).astype(np.float32), np.eye(4, dtype=np.float32)
    w[2, 3] = 1.5
    np.savez(model / "cameras.npz", world_mat_0=w, camera_mat_0=k, world_mat_1=w, camera_mat_1=k)
    ds = DVRShapeNetDataset(str(tmp_path), "train", ["airplane"], depth_extension="npy", input_size=16)
    with pytest.raises(DatasetError, match="does not match the renders"):
        ds[0]
    np.savez(model / "cameras.npz", **{f"world_mat_{i}": w for i in range(3)}, **{f"camera_mat_{i}": k for i in range(3)})
    ds = DVRShapeNetDataset(str(tmp_path), "train", ["airplane"], depth_extension="npy", input_size=16)
    item = ds[0]
    assert item["input"].shape == (3, 16, 16) and item["mask"].shape == (8, 8) and torch.isinf(item["depth"]).all()
    assert torch.allclose(item["c2w"][:3, 3], torch.tensor([0.0, 0.0, -1.5]))
    for f in (model / "mask").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="without masks"):
        DVRShapeNetDataset(str(tmp_path), "train", ["airplane"], depth_extension="npy")[0]
