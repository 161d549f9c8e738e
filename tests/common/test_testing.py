"""Tiny priors: same classes as the real ones, seeded, offline, fast, loaded through from_pretrained."""

import time

import torch

from common.priors import CLIPModel, DiffusionModel
from common.testing import save_tiny_pixel_pipeline, save_tiny_sd_pipeline, tiny_clip, write_toy_tokenizer


def test_tiny_clip_is_the_real_class_seeded_and_fast():
    tiny_clip(seed=0)  # warm the open_clip import
    t0 = time.time()
    a = tiny_clip(seed=0)
    assert time.time() - t0 < 1.0
    b, c = tiny_clip(seed=0), tiny_clip(seed=1)
    assert type(a) is CLIPModel and a.image_size == (32, 32) and a.context_length == 16
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(a.encode_image(x), b.encode_image(x))
    assert not torch.allclose(a.encode_image(x), c.encode_image(x))
    state = torch.get_rng_state()
    tiny_clip(seed=3)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is untouched


def test_tiny_pipelines_round_trip_through_from_pretrained(tmp_path):
    import diffusers  # noqa: F401  (time the build, not the import)
    import transformers  # noqa: F401

    t0 = time.time()
    sd_dir = save_tiny_sd_pipeline(tmp_path / "sd", seed=0)
    px_dir = save_tiny_pixel_pipeline(tmp_path / "px", seed=0, conditional=True)
    sd, px = DiffusionModel(model=str(sd_dir)).load(), DiffusionModel(model=str(px_dir)).load()
    assert time.time() - t0 < 5.0
    assert sd.is_latent and sd.channels == 4 and not px.is_latent and px.channels == 3
    assert type(sd.unet).__name__ == "UNet2DConditionModel" and type(sd.vae).__name__ == "AutoencoderKL"
    sd2 = DiffusionModel(model=str(save_tiny_sd_pipeline(tmp_path / "sd2", seed=0))).load()
    z = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(sd.predict_noise(z, 10, sd.text_context("a")), sd2.predict_noise(z, 10, sd2.text_context("a")))


def test_toy_tokenizer_offline(tmp_path):
    tok = write_toy_tokenizer(tmp_path / "tok", model_max_length=16)
    ids = tok("ab", padding="max_length", max_length=16).input_ids
    assert len(ids) == 16 and ids[0] == tok.bos_token_id and ids[3] == tok.eos_token_id
