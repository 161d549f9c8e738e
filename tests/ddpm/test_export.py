"""Export of a DDPMSystem as a diffusers pipeline, loaded back through common.priors.diffusion."""

import torch

from common.priors.diffusion import DiffusionModel
from common.testing import tiny_models
from ddpm.conditioning import CLIPTextConditioner
from ddpm.export import export_pipeline
from ddpm.system import DDPMSystem
from tests.ddpm.test_ddpm import tiny_cond_unet


def test_export_conditional_pipeline_round_trip(tmp_path):
    enc = CLIPTextConditioner(tiny_models.tiny_clip())
    system = DDPMSystem(tiny_cond_unet(dim=enc.dim), text_encoder=enc, ema_decay=None).eval()
    export_pipeline(system, tmp_path / "pipe")
    prior = DiffusionModel(model=str(tmp_path / "pipe")).load()
    prompts = ["a red cube", "an orange chair that is small", ""]
    hf_states = prior.encode_text(prompts)
    assert torch.allclose(hf_states, enc(prompts), atol=1e-4), "converted text encoder differs from open_clip"
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    ctx = prior.text_context("a red cube")
    with torch.no_grad():
        mine = system.unet(x, t, encoder_hidden_states=enc(["a red cube"])).sample
    assert torch.allclose(prior.predict_noise(x, t, ctx), mine, atol=1e-4)
