"""Export of a DDPMSystem as a diffusers pipeline, loaded back through common.priors.diffusion."""

import pytest
import torch

from common.priors.diffusion import DiffusionModel
from common.testing import tiny_models
from ddpm.conditioning import CLIPTextConditioner
from ddpm.export import export_pipeline
from ddpm.system import DDPMSystem
from tests.ddpm.test_ddpm import tiny_cond_unet


@pytest.mark.parametrize("text_time", [False, True], ids=["cross-attention", "cross-attention+pooled-text-time"])
def test_export_conditional_pipeline_round_trip(tmp_path, text_time):
    enc = CLIPTextConditioner(tiny_models.tiny_clip())
    system = DDPMSystem(tiny_cond_unet(dim=enc.dim, text_time=text_time), text_encoder=enc, ema_decay=None).eval()
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


def test_v_prediction_export_is_read_back_as_v_and_converted_to_epsilon(tmp_path):
    """The exported scheduler says ``v_prediction``; the prior then turns the UNet's v into ε = sqrt(ᾱ)·v + sqrt(1 − ᾱ)·x."""
    enc = CLIPTextConditioner(tiny_models.tiny_clip())
    system = DDPMSystem(tiny_cond_unet(dim=enc.dim), text_encoder=enc, ema_decay=None,
                        prediction_type="v_prediction").eval()
    export_pipeline(system, tmp_path / "pipe")
    prior = DiffusionModel(model=str(tmp_path / "pipe")).load()
    assert prior.prediction_type == "v_prediction"
    x, t = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([700])
    with torch.no_grad():
        v = system.unet(x, t, encoder_hidden_states=enc(["a red cube"])).sample
    ab = system.scheduler.alphas_cumprod[700]
    assert torch.allclose(prior.predict_noise(x, t, prior.text_context("a red cube")), ab.sqrt() * v + (1 - ab).sqrt() * x,
                          atol=1e-4)


def test_export_names_its_guidance_scale_only_when_given(tmp_path):
    """``guidance_scale`` writes ``sampler.json``, read back as the prior's ``sampler_config``; a scale <= 0 is refused."""
    enc = CLIPTextConditioner(tiny_models.tiny_clip())
    system = DDPMSystem(tiny_cond_unet(dim=enc.dim), text_encoder=enc, ema_decay=None).eval()
    export_pipeline(system, tmp_path / "plain")
    export_pipeline(system, tmp_path / "named", guidance_scale=2)
    assert not (tmp_path / "plain" / "sampler.json").exists()
    assert DiffusionModel(model=str(tmp_path / "plain")).load().sampler_config == {}
    assert DiffusionModel(model=str(tmp_path / "named")).load().sampler_config == {"guidance_scale": 2.0}
    with pytest.raises(ValueError, match="guidance_scale must be > 0"):
        export_pipeline(system, tmp_path / "bad", guidance_scale=0.0)
    assert not (tmp_path / "bad").exists()  # refused before a half-written folder is left behind


def test_fp16_export_halves_the_files_and_loads_as_float32(tmp_path):
    enc = CLIPTextConditioner(tiny_models.tiny_clip())
    system = DDPMSystem(tiny_cond_unet(dim=enc.dim), text_encoder=enc, ema_decay=None).eval()
    export_pipeline(system, tmp_path / "fp32")
    export_pipeline(system, tmp_path / "fp16", dtype="float16")

    def size(folder):
        return sum(p.stat().st_size for p in (tmp_path / folder).rglob("*.safetensors"))

    assert 0.45 < size("fp16") / size("fp32") < 0.56
    full, half = (DiffusionModel(model=str(tmp_path / f)).load() for f in ("fp32", "fp16"))
    assert half.unet.dtype == torch.float32, "weights are cast to the compute dtype on load"
    x, t = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([500, 20])
    a = full.predict_noise(x, t, full.text_context("a red cube"))
    b = half.predict_noise(x, t, half.text_context("a red cube"))
    assert torch.allclose(a, b, atol=2e-2) and not torch.equal(a, b)


def test_export_checkpoint_rebuilds_the_run_and_matches_its_weights(tmp_path, monkeypatch):
    """`python -m ddpm.export` on a run's config.yaml + checkpoint gives the same UNet as training's own export."""
    from pathlib import Path

    from common.cli import SuiteCLI
    from ddpm.export import main

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    cli = SuiteCLI(args=["fit", "--config", "experiments/shapeworld/train_diffusion.yaml",
                         "--config", "tests/overrides/shapeworld/train_diffusion.yaml", "--run.root", str(tmp_path),
                         "--run.logger", "none", "--trainer.enable_progress_bar", "false",
                         "--model.init_args.export_dtype", "float32"])
    run = Path(cli.trainer.default_root_dir)
    main(["--config", str(run / "config.yaml"), "--ckpt", str(run / "checkpoints" / "last.ckpt"),
          "--out", str(tmp_path / "again")])
    a = DiffusionModel(model=str(run / "pipeline")).load()
    b = DiffusionModel(model=str(tmp_path / "again")).load()
    for (name, p), q in zip(a.unet.named_parameters(), b.unet.parameters()):
        assert torch.equal(p, q), name
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["--config", str(run / "config.yaml"), "--ckpt", str(run / "missing.ckpt"), "--out", str(tmp_path / "x")])
