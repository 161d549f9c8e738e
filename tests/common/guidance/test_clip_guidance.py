"""CLIPGuidance: −cos over augmented views, ensembles, gradients to colour and alpha, bad input."""

import pytest
import torch

from common.augment import Augment
from common.guidance import CLIPGuidance
from common.testing import tiny_clip


def test_loss_is_negative_mean_cosine(tiny_clip_model):
    guide = CLIPGuidance(tiny_clip_model)
    img = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = guide(img, "a red cube")
    manual = -(tiny_clip_model.encode_image(img) * tiny_clip_model.encode_text("a red cube")).sum(-1).mean()
    torch.testing.assert_close(out["loss_clip"], manual)
    out["loss_clip"].backward()
    assert img.grad.abs().sum() > 0 and all(p.grad is None for p in tiny_clip_model.model.parameters())
    one_minus = CLIPGuidance(tiny_clip_model, loss_form="one_minus_cos")(img, "a red cube")["loss_clip"]
    torch.testing.assert_close(one_minus, 1 + manual)
    emb = tiny_clip_model.encode_text("a red cube")
    torch.testing.assert_close(guide(img, emb)["loss_clip"], manual)  # precomputed embedding


def test_augmented_views_with_alpha_get_gradients(tiny_clip_model):
    guide = CLIPGuidance(tiny_clip_model, augment=Augment(n_views=3, crop_scale=(0.8, 1.0), blur_std_range=(0, 2)))
    alpha = torch.rand(2, 1, 24, 24, requires_grad=True)
    rgb = (torch.rand(2, 3, 24, 24) * alpha.detach()).requires_grad_(True)  # premultiplied
    out = guide(rgb, ["a cube", "a ball"], alpha=alpha, generator=torch.Generator().manual_seed(0))
    out["loss_clip"].backward()
    assert rgb.grad.abs().sum() > 0 and alpha.grad.abs().sum() > 0
    assert guide.last_info["clip_cos"].ndim == 0


def test_ensemble_keys_weights_and_start_steps(tiny_clip_model):
    second = tiny_clip(seed=1)
    guide = CLIPGuidance([tiny_clip_model, second], weights=[1.0, 0.5], start_steps=[0, 5000])
    img = torch.rand(1, 3, 32, 32)
    early = guide(img, "a cube", step=10)
    assert set(early) == {"loss_clip", "loss_clip2"} and early["loss_clip2"].item() == 0.0
    late = guide(img, "a cube", step=5000)
    ref = -(second.encode_image(img) * second.encode_text("a cube")).sum(-1).mean()
    torch.testing.assert_close(late["loss_clip2"], 0.5 * ref)
    assert state_keys(guide) == set()


def state_keys(module):
    return set(module.state_dict())


def test_bad_input(tiny_clip_model):
    guide = CLIPGuidance(tiny_clip_model)
    with pytest.raises(ValueError, match="Empty prompt"):
        guide(torch.rand(1, 3, 32, 32), "")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        guide(torch.rand(1, 32, 32, 3), "a cube")
    with pytest.raises(ValueError, match="values in"):
        guide(torch.rand(1, 3, 32, 32) * 255, "a cube")
    with pytest.raises(ValueError, match="prompts for a batch"):
        guide(torch.rand(2, 3, 32, 32), ["a", "b", "c"])
    with pytest.raises(ValueError, match="one entry per CLIP"):
        CLIPGuidance([tiny_clip_model], weights=[1.0, 2.0])
