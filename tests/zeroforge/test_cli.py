"""The three stages chained through their checkpoints via the CLI, the generate/evaluate commands, and DDP."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.cli import SuiteCLI

ROOT = Path(__file__).resolve().parents[2]
SW = ROOT / "experiments" / "shapeworld"
TINY = ROOT / "tests" / "overrides" / "shapeworld"
# config.yaml written by the CLI drops null values (skip_none), so `pretrained: null` of the tiny CLIP is
# restated for the commands that rebuild a model from a run folder
CLIP_OVERRIDE = """model:
  init_args:
    clip:
      class_path: common.priors.clip.CLIPModel
      init_args: {name: tiny-clip, pretrained: null, model_config: common/testing/tiny_clip.json, checkpoint: null}
"""


def _fit(stage: str, root: Path, *extra: str) -> Path:
    cli = SuiteCLI(args=["fit", "--config", str(SW / f"{stage}.yaml"), "--config", str(TINY / f"{stage}.yaml"),
                         "--run.root", str(root), "--run.logger", "none", "--trainer.accelerator", "cpu",
                         "--trainer.enable_progress_bar", "false", *extra])
    assert cli.trainer.global_step == 2
    return Path(cli.trainer.default_root_dir)


def _state(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_three_stages_chain_through_checkpoints_then_generate_and_evaluate(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    ae_run = _fit("clipforge_autoencoder", tmp_path)
    ae = _state(ae_run)
    ae_ckpt = str(ae_run / "checkpoints" / "last.ckpt")

    flow_run = _fit("clipforge_flow", tmp_path, "--model.init_args.autoencoder_ckpt", ae_ckpt,
                    "--model.init_args.allow_random_init", "false")
    flow = _state(flow_run)
    assert flow and all(k.startswith("flow.") for k in flow)  # the frozen stage-1 parts are not re-saved
    flow_ckpt = str(flow_run / "checkpoints" / "last.ckpt")

    zf_run = _fit("zeroforge", tmp_path, "--model.init_args.autoencoder_ckpt", ae_ckpt,
                  "--model.init_args.flow_ckpt", flow_ckpt, "--model.init_args.allow_random_init", "false")
    zf = _state(zf_run)
    assert all(k.startswith(("flow.", "decoder.")) for k in zf)  # no CLIP weights
    for k, v in ae.items():  # ZeroConv: the pretrained blocks stay frozen through fine-tuning
        if k.startswith("decoder.blocks."):
            assert torch.equal(zf[k.replace("decoder.", "decoder.base.", 1)], v)
    assert torch.equal(zf["flow.layers.1.running_var"], flow["flow.layers.1.running_var"])
    assert (zf_run / "media").is_dir()

    clip_yaml = tmp_path / "clip.yaml"
    clip_yaml.write_text(CLIP_OVERRIDE)
    from zeroforge.evaluate import main as evaluate
    from zeroforge.generate import main as generate

    out = tmp_path / "meshes"
    generate(["--run", str(zf_run), "--config", str(clip_yaml), "--prompts", "a torus", "a cube", "--resolution", "8",
              "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["000_a_torus.ply", "000_a_torus.png", "001_a_cube.ply", "001_a_cube.png"]
    generate(["--run", str(flow_run), "--config", str(clip_yaml), "--prompts", "a cube", "--resolution", "8",
              "--coarse-resolution", "5", "--out", str(tmp_path / "cf")])  # CLIP-Forge, coarse-to-fine, from a flow run
    assert (tmp_path / "cf" / "000_a_cube.ply").is_file()

    results = evaluate(["--run", str(zf_run), "--config", str(clip_yaml), "--heldout-clip", "tiny", "--samples", "2"])
    assert set(results) == {"CLIP-Forge", "ZeroForge"}
    assert 0.0 <= results["ZeroForge"]["r_precision_novel/heldout"] <= 1.0
    table = (zf_run / "eval.md").read_text()
    assert "| CLIP-Forge |" in table and "| ZeroForge |" in table and "R@1 novel (held-out CLIP)" in table


@pytest.mark.timeout(300)  # ~15 s on an idle 2-core machine; three interpreter start-ups under load take longer
def test_ddp_two_cpu_processes(tmp_path):
    """ZeroForge under Lightning DDP with 2 CPU processes (gloo): both ranks step, rank 0 saves one run."""
    cmd = [sys.executable, "-m", "common.cli", "fit", "--config", str(SW / "zeroforge.yaml"),
           "--config", str(TINY / "zeroforge.yaml"), "--run.root", str(tmp_path), "--run.logger", "none",
           "--trainer.max_steps", "2", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
           "--trainer.strategy", "ddp", "--trainer.enable_progress_bar", "false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "shapeworld-zeroforge").iterdir())
    assert len(runs) == 1, f"ranks wrote {len(runs)} run folders: {runs}"
    ckpt = torch.load(runs[0] / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2
