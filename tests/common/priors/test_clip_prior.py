"""CLIPModel: embeddings, tensor preprocessing vs open_clip's, frozen weights, offline errors, bad input."""

import time

import numpy as np
import pytest
import torch
from torch import nn

from common.priors import CLIPModel, PriorWeightsNotFoundError
from common.testing import TINY_CLIP_CONFIG


def test_embeddings_unit_norm(tiny_clip_model):
    img = tiny_clip_model.encode_image(torch.rand(3, 3, 40, 48))
    txt = tiny_clip_model.encode_text(["a red cube", "a blue sphere"])
    assert img.shape == (3, 16) and txt.shape == (2, 16)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(txt.norm(dim=-1), torch.ones(2))


def test_tensor_preprocessing_matches_open_clip(tiny_clip_model):
    from open_clip.transform import image_transform
    from PIL import Image

    clip = tiny_clip_model
    rng = np.random.default_rng(0)
    pil = Image.fromarray(rng.integers(0, 256, (57, 70, 3), dtype=np.uint8)).resize(clip.image_size, Image.BICUBIC)
    ref = image_transform(clip.image_size[0], is_train=False, mean=clip.mean, std=clip.std)(pil)[None]
    x = torch.from_numpy(np.array(pil)).permute(2, 0, 1)[None].float() / 255
    torch.testing.assert_close(clip.preprocess(x), ref, atol=1e-4, rtol=0)
    with torch.no_grad():
        e_ref = nn.functional.normalize(clip.model.encode_image(ref), dim=-1)
    torch.testing.assert_close(clip.encode_image(x), e_ref, atol=1e-4, rtol=0)


def test_resize_shortest_side_then_center_crop(tiny_clip_model):
    x = torch.rand(2, 3, 64, 96)
    assert tiny_clip_model.preprocess(x).shape == (2, 3, 32, 32)


def test_gradients_reach_image_not_weights(tiny_clip_model):
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    loss = -(tiny_clip_model.encode_image(x) * tiny_clip_model.encode_text("a cube")).sum()
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in tiny_clip_model.model.parameters())
    assert not tiny_clip_model.model.training


def test_weights_stay_out_of_checkpoints(tiny_clip_model):
    owner = nn.Module()
    owner.head = nn.Linear(2, 2)
    owner.clip = tiny_clip_model
    assert set(owner.state_dict()) == {"head.weight", "head.bias"}
    assert len(list(owner.parameters())) == 2
    owner.load_state_dict(owner.state_dict(), strict=True)
    owner.train()
    assert not tiny_clip_model.model.training
    owner.to(torch.float32)  # device/dtype moves reach the hidden model
    assert next(tiny_clip_model.model.parameters()).dtype == torch.float32


def test_text_embeddings_cached(tiny_clip_model):
    a = tiny_clip_model.encode_text("a cached prompt")
    assert "a cached prompt" in tiny_clip_model._text_cache
    torch.testing.assert_close(tiny_clip_model.encode_text(["a cached prompt"]), a)


def test_checkpoint_file_round_trip(tiny_clip_model, tmp_path):
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(tiny_clip_model.model.state_dict(), path)
    clip = CLIPModel(name="tiny", checkpoint=str(path), model_config=TINY_CLIP_CONFIG).load()
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(clip.encode_image(x), tiny_clip_model.encode_image(x))


def test_missing_checkpoint_file_is_clear(tmp_path):
    with pytest.raises(PriorWeightsNotFoundError, match="checkpoint file not found"):
        CLIPModel(name="tiny", checkpoint=str(tmp_path / "nope.bin"), model_config=TINY_CLIP_CONFIG).load()


def test_uncached_tag_offline_raises_quickly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clip = CLIPModel(name="ViT-B-32", pretrained="laion2b_e16", cache_dir=str(tmp_path))  # cheap: lazy
    t0 = time.time()
    with pytest.raises(PriorWeightsNotFoundError) as err:
        clip.load()
    assert time.time() - t0 < 5
    msg = str(err.value)
    assert "laion2b_e16" in msg and str(tmp_path) in msg and "checkpoint=" in msg and "HF_HUB_OFFLINE=1" in msg


def test_unknown_names_are_clear():
    with pytest.raises(ValueError, match="Unknown CLIP architecture"):
        CLIPModel(name="ViT-Q-99").load()
    with pytest.raises(ValueError, match="Unknown pretrained tag"):
        CLIPModel(name="ViT-B-32", pretrained="not-a-tag").load()


def test_bad_prompts(tiny_clip_model):
    with pytest.raises(ValueError, match="Empty prompt"):
        tiny_clip_model.encode_text("  ")
    with pytest.raises(ValueError, match="at least one"):
        tiny_clip_model.encode_text([])
    with pytest.warns(UserWarning, match="truncated"):
        e = tiny_clip_model.encode_text("a very long prompt that goes on and on well past sixteen tokens of context")
    assert e.shape == (1, 16)


def test_bad_images(tiny_clip_model):
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        tiny_clip_model.encode_image(torch.rand(32, 32, 3))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        tiny_clip_model.encode_image(torch.rand(1, 32, 32, 3))
    with pytest.raises(ValueError, match="values in"):
        tiny_clip_model.encode_image(torch.rand(1, 3, 32, 32) * 255)
    with pytest.raises(ValueError, match="values in"):
        tiny_clip_model.encode_image(torch.full((1, 3, 32, 32), float("nan")))
    with pytest.raises(ValueError, match="floating-point"):
        tiny_clip_model.encode_image(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    assert tiny_clip_model.encode_image(torch.rand(1, 3, 32, 32) * 2 - 0.5, check_range=False).shape == (1, 16)


def test_shipped_relative_paths_resolve_from_any_working_directory(tmp_path, monkeypatch):
    """Configs name the shipped priors relative to the repo (shapeworld/...); they must load from elsewhere."""
    from common.priors import DiffusionModel
    from common.priors.base import SUITE_ROOT, resolve_suite_path

    rel_cfg = "shapeworld/configs/shapeworld_clip_heldout.json"
    assert (SUITE_ROOT / rel_cfg).is_file()
    monkeypatch.chdir(tmp_path)
    assert resolve_suite_path(rel_cfg) == str(SUITE_ROOT / rel_cfg)
    assert resolve_suite_path("no/such/file.bin") == "no/such/file.bin"  # unchanged: errors name what was written
    (tmp_path / "shapeworld" / "configs").mkdir(parents=True)
    (tmp_path / rel_cfg).write_text("{}")
    assert resolve_suite_path(rel_cfg) == rel_cfg  # a file under the working directory wins
    (tmp_path / rel_cfg).unlink()
    clip = CLIPModel(name="shapeworld_clip_heldout", pretrained=None, model_config=rel_cfg,
                     checkpoint="shapeworld/weights/shapeworld_clip_heldout.safetensors").load()
    assert clip.encode_text(["a red cube"]).shape[0] == 1
    pipe = DiffusionModel("shapeworld/weights/shapeworld_diffusion")._resolve_dir()
    assert pipe == SUITE_ROOT / "shapeworld/weights/shapeworld_diffusion"
    with pytest.raises(PriorWeightsNotFoundError, match="not found: shapeworld/weights/nope"):
        DiffusionModel("shapeworld/weights/nope")._resolve_dir()
