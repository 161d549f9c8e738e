"""The semantic consistency loss (specs/dietnerf.md §9.3): value, gradient flow (NeRF yes, CLIP no),
preprocessing, the every-K schedule, targets embedded once."""

import lightning.pytorch as pl
import pytest
import torch

from common.testing import tiny_clip
from dietnerf.data import FewShotBlenderDataModule
from dietnerf.semantic import SemanticEncoder, semantic_consistency_loss
from dietnerf.system import DietNeRFLossWeights

from .conftest import tiny_system


def _views(scene):
    return FewShotBlenderDataModule(root=str(scene), num_train_views=3, downscale=1, testskip=1)


def test_semantic_loss_value():
    enc = SemanticEncoder(tiny_clip())
    img = torch.rand(2, 3, 16, 16)
    f = enc(img)
    loss, cos = semantic_consistency_loss(f, f)
    assert abs(float(cos) - 1) < 1e-5 and abs(float(loss)) < 1e-5  # λ(1 − cos) = 0 ⇔ −λ·cos = −λ
    g = enc(torch.rand(2, 3, 16, 16))
    loss, cos = semantic_consistency_loss(f, g)
    assert 0 <= float(loss) <= 2 and -1 <= float(cos) <= 1
    flipped, cos_f = semantic_consistency_loss(f, -g)
    torch.testing.assert_close(cos_f, -cos)  # flipping a feature flips the similarity
    # both feature choices give unit vectors
    for feature, dim in (("cls_prenorm", 32), ("image_embed", 16)):
        out = SemanticEncoder(tiny_clip(), feature=feature)(img)
        assert out.shape == (2, dim) and torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_cls_prenorm_is_transformer_token0():
    enc = SemanticEncoder(tiny_clip(), feature="cls_prenorm")
    enc.load()
    seen = {}
    h = enc.clip.model.visual.transformer.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    feats = enc(torch.rand(1, 3, 32, 32))
    h.remove()
    torch.testing.assert_close(feats, torch.nn.functional.normalize(seen["out"][:, 0], dim=-1))


def test_encoder_preprocessing():
    enc = SemanticEncoder(tiny_clip())
    mean = torch.tensor(enc.clip.mean).view(1, 3, 1, 1)
    x = enc.preprocess(mean.expand(1, 3, 10, 12).clone())
    assert x.shape == (1, 3, *enc.input_size)
    torch.testing.assert_close(x, torch.zeros_like(x), atol=1e-6, rtol=0)  # constant mean → zero channel
    hi = enc.preprocess(torch.full((1, 3, 8, 8), 7.0))  # clamped to 1 before normalising
    std = torch.tensor(enc.clip.std).view(1, 3, 1, 1)
    torch.testing.assert_close(hi, ((1 - mean) / std).expand_as(hi))
    img = torch.rand(1, 3, 8, 8)
    ref = torch.nn.functional.interpolate(img, size=enc.input_size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(enc.preprocess(img), (ref - mean) / std)  # bilinear, no antialias, no crop


def test_semantic_loss_gradient_flow(sphere_scene):
    system = tiny_system()
    dm = _views(sphere_scene)
    dm.setup("fit")
    system.attach_views(dm.train_views(), dm.pose_pool())
    system.encoder.load()
    system.train()
    clip = system.encoder.clip.model
    assert not clip.training  # the frozen encoder stays in eval mode under system.train()
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    targets = system.compute_targets()
    assert targets.grad_fn is None and not targets.requires_grad
    terms = system.semantic_terms()
    assert set(terms) == {"loss_sc", "loss_sc_coarse", "cos_sc", "cos_sc_coarse"}
    opt = torch.optim.Adam(system.parameters(), lr=1e-2)
    (terms["loss_sc"] + terms["loss_sc_coarse"]).backward()
    for net in (system.field, system.fine_field):
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert sum(float(g.norm()) for g in grads) > 0
    assert all(not p.requires_grad and p.grad is None for p in clip.parameters())
    assert not any("clip" in n or "encoder" in n for n, _ in system.named_parameters())
    opt.step()
    after = clip.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(k.startswith("encoder") for k in system.state_dict())


def _fit(system, scene, steps, tmp_path, **trainer_kw):
    dm = _views(scene)
    dm.steps_per_epoch = steps
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, default_root_dir=str(tmp_path), **trainer_kw)
    trainer.fit(system, dm)
    return trainer


def test_lazy_schedule(sphere_scene, tmp_path):
    system = tiny_system(semantic_every=10)
    assert [s + 1 for s in range(25) if system.semantic_active(s)] == [10, 20]  # it = global_step + 1
    mse_steps = []
    orig = system.compute_losses
    system.compute_losses = lambda out, rgb: mse_steps.append(system.global_step) or orig(out, rgb)
    _fit(system, sphere_scene, 25, tmp_path)
    assert mse_steps == list(range(25))  # L_MSE at every step
    assert system.semantic_calls == 2
    assert system.encoder.calls == 1 + 2 * 2  # targets once, then fine + coarse at it = 10 and 20
    stopped = tiny_system(semantic_every=10, semantic_stop_step=15)
    assert [s + 1 for s in range(25) if stopped.semantic_active(s)] == [10]


@pytest.mark.parametrize("variant", ["zero_weight", "no_encoder"])
def test_semantic_branch_off_never_calls_encoder(sphere_scene, tmp_path, variant):
    if variant == "zero_weight":
        system = tiny_system(loss_weights=DietNeRFLossWeights(lambda_sc=0.0, lambda_sc_coarse=0.0), semantic_every=2)
    else:
        system = tiny_system(encoder=False, semantic_every=2)
    _fit(system, sphere_scene, 6, tmp_path)
    assert system.semantic_calls == 0
    if system.encoder is not None:
        assert system.encoder.calls == 0


def test_target_embeddings_precomputed_once(sphere_scene, tmp_path):
    system = tiny_system(semantic_every=2)
    seen = []
    orig = system.encoder.forward
    system.encoder.forward = lambda images: seen.append(images.shape) or orig(images)
    _fit(system, sphere_scene, 8, tmp_path)
    assert seen[0] == (3, 3, 16, 16)  # all observed images, once, at the start
    assert all(s == (1, 3, 8, 8) for s in seen[1:]) and len(seen) == 1 + 2 * 4  # then only renders


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (fp16 CLIP)")
def test_fp16_encoder_grad_finite(sphere_scene):
    from common.priors.clip import CLIPModel
    from common.testing import TINY_CLIP_CONFIG

    system = tiny_system()
    system.encoder = SemanticEncoder(CLIPModel(name="tiny", pretrained=None, model_config=TINY_CLIP_CONFIG, precision="fp16"))
    dm = _views(sphere_scene)
    dm.setup("fit")
    system.attach_views(dm.train_views(), dm.pose_pool())
    system = system.cuda().train()
    terms = system.semantic_terms()
    (terms["loss_sc"] + terms["loss_sc_coarse"]).backward()
    grads = [p.grad for p in system.field.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads) and sum(float(g.norm()) for g in grads) > 0
