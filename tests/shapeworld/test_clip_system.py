"""shapeworld CLIP training: the multi-positive loss, a few steps on tiny data, export -> CLIPModel."""

import math

import pytest
import torch
import torch.nn.functional as F

from common.priors.base import PriorWeightsNotFoundError
from common.priors.clip import CLIPModel
from shapeworld.clip_system import ShapeWorldCLIPSystem, multi_positive_clip_loss
from shapeworld.metrics import caption_retrieval
from shapeworld.priors import clip_paths, shapeworld_clip

TINY = "common/testing/tiny_clip.json"


def test_multi_positive_loss_reduces_to_clip():
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    txt = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    scale = torch.tensor(math.log(10.0))
    logits = 10.0 * img @ txt.t()
    clip = 0.5 * (F.cross_entropy(logits, torch.arange(6)) + F.cross_entropy(logits.t(), torch.arange(6)))
    assert torch.allclose(multi_positive_clip_loss(img, txt, torch.arange(6), scale), clip, atol=1e-6)
    # duplicates of a pair are not pushed apart: identical rows with a shared label reach the minimum
    same = F.normalize(torch.ones(2, 8), dim=-1)
    low = multi_positive_clip_loss(same, same, torch.tensor([0, 0]), scale)
    assert torch.allclose(low, torch.tensor(math.log(2.0)), atol=1e-5)


def test_clip_steps_and_export(tmp_path):
    torch.manual_seed(0)
    system = ShapeWorldCLIPSystem(TINY, lr=3e-3, warmup_steps=1)
    images = torch.rand(4, 3, 16, 16)
    batch = {"image": images, "caption": ["a red cube", "a blue mug", "a red cube", "a green cone"],
             "pair": torch.tensor([0, 1, 0, 2])}
    opt = torch.optim.Adam(system.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        img, txt = system.encode_image(batch["image"]), system.encode_text(batch["caption"])
        loss = multi_positive_clip_loss(img, txt, batch["pair"], system.model.logit_scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    path = system.export(str(tmp_path / "tiny.safetensors"))
    clip = CLIPModel(name="tiny", pretrained=None, checkpoint=str(path), model_config=str(path.with_suffix(".json"))).load()
    system.eval()
    with torch.no_grad():
        assert torch.allclose(clip.encode_image(images), system.encode_image(images), atol=5e-3)
    acc = caption_retrieval(clip, images, torch.tensor([0, 1, 0, 2]))
    assert 0.0 <= acc <= 1.0


def test_shipped_clip_paths():
    config, weights = clip_paths("heldout")
    assert config.is_file()
    if not weights.is_file():
        with pytest.raises(PriorWeightsNotFoundError, match="train_clip_heldout.yaml"):
            shapeworld_clip("heldout")


def test_other_weights_of_the_same_architecture(tmp_path):
    """``shapeworld_clip(role, weights=...)`` loads another export of that architecture; a missing file names itself."""
    with pytest.raises(PriorWeightsNotFoundError, match="nope.safetensors"):
        shapeworld_clip("heldout", weights=tmp_path / "nope.safetensors")
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"")  # not loaded (load=False): only the wiring is checked here
    clip = shapeworld_clip("heldout", load=False, weights=other)
    assert (clip.checkpoint, clip.model_config) == (str(other), str(clip_paths("heldout")[0]))
    assert clip.name == "shapeworld_clip_heldout"
