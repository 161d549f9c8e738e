"""ZeroForge system: batch layout, shapes, which parts get gradients, mode discipline, determinism, inference
(spec §9 G, tests 34–39)."""

import lightning.pytorch as pl
import torch

from common.data import CameraDataModule
from zeroforge.flow import BatchNormFlow
from zeroforge.generator import decode_grid, soft_binarize
from zeroforge.prompts import DEFAULT_TEMPLATES
from zeroforge.zeroconv import ZeroConvDecoder


def test_batch_layout(make_zeroforge):
    system = make_zeroforge(queries=("cube", "sphere", "torus", "cone"))
    b = system.batch
    assert len(b.prompts) == 12 and b.query_id.tolist() == [0, 1, 2, 3] * 3
    for prompt, q in zip(b.prompts, b.query_id.tolist()):
        assert prompt in [t.format(b.queries[q]) for t in DEFAULT_TEMPLATES]
    emb = system.text_emb.clone()
    opt = system.configure_optimizers()
    system.compute_losses()["loss"].backward()
    opt.step()
    assert torch.equal(system.text_emb, emb) and system.batch.prompts == b.prompts


def test_forward_shapes_and_independent_noise(make_zeroforge):
    system = make_zeroforge()
    T = system.text_emb
    assert T.shape == (9, 16)
    s = system.flow.sample(torch.randn(9, 8), T)
    assert s.shape == (9, 8)
    vox = soft_binarize(decode_grid(system.decoder, s, 16), 200.0, 0.05)
    assert vox.shape == (9, 16, 16, 16) and vox.min() >= 0 and vox.max() <= 1  # (0, 1) up to fp32 saturation
    img = system.renderer(vox, torch.rand(9), torch.rand(9)).image
    assert img.shape == (9, 3, 32, 32)
    from zeroforge.clip_renders import encode_renders

    assert encode_renders(system.clip, img).shape == (9, 16)
    assert not torch.allclose(s[0], s[3])  # two copies of query 0, independent noise


def test_gradients_reach_only_the_trained_parts(make_zeroforge):
    system = make_zeroforge()
    system.train()
    opt = system.configure_optimizers()
    system.compute_losses(torch.Generator().manual_seed(0))["loss"].backward()
    trainable = {n: p for n, p in system.named_parameters() if p.requires_grad}
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in trainable.values()}
    for name, p in trainable.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    modules = {n.rsplit(".", 1)[0] for n in trainable if ".copies." not in n}
    for mod in modules:
        assert any(float(p.grad.abs().max()) > 0 for n, p in trainable.items() if n.rsplit(".", 1)[0] == mod), mod
    frozen = [p for n, p in system.named_parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)  # the ZeroConv-frozen pretrained blocks
    assert all(p.grad is None for p in system.clip.model.parameters())
    assert not any(True for _ in system.renderer.parameters())
    assert not system.text_emb.requires_grad
    assert all(k.startswith(("flow.", "decoder.")) for k in system.state_dict())  # CLIP stays out of checkpoints


def test_modes_stay_frozen_through_lightning_fit(make_zeroforge, tmp_path):
    system = make_zeroforge()
    bn = [m for m in system.flow.modules() if isinstance(m, BatchNormFlow)]
    stats = [(m.running_mean.clone(), m.running_var.clone()) for m in bn]
    clip_w = [p.clone() for p in system.clip.model.parameters()]
    modes, step = [], system.compute_losses

    def recording(*args, **kwargs):
        modes.append((system.flow.training, any(m.training for m in system.clip.model.modules())))
        return step(*args, **kwargs)

    system.compute_losses = recording
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(system, CameraDataModule(steps_per_epoch=2))
    assert trainer.global_step == 2
    assert all(torch.equal(m.running_mean, a) and torch.equal(m.running_var, b) for m, (a, b) in zip(bn, stats))
    assert all(torch.equal(p, q) for p, q in zip(system.clip.model.parameters(), clip_w))
    assert modes == [(False, False)] * 2 and not system.flow.training


def test_same_seed_same_losses(make_zeroforge):
    def run():
        system = make_zeroforge(seed=0)
        opt = system.configure_optimizers()
        gen = torch.Generator().manual_seed(0)
        losses = []
        for _ in range(3):
            loss = system.compute_losses(gen)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    assert run() == run()


def test_generate_is_feed_forward_and_zeroconv_starts_as_clipforge(make_zeroforge):
    plain = make_zeroforge(zeroconv=False)
    wrapped = make_zeroforge(zeroconv=True)  # same seed -> same random CLIP-Forge weights
    assert isinstance(wrapped.decoder, ZeroConvDecoder)
    logits, vox = wrapped.generate(["a cube", "a torus"], "zero", 16)
    assert vox.shape == (2, 16, 16, 16) and set(vox.unique().tolist()) <= {0.0, 1.0}
    assert not vox.requires_grad and not logits.requires_grad
    assert torch.equal(logits, plain.generate(["a cube", "a torus"], "zero", 16)[0])
