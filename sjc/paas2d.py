"""SJC's 2D experiments: single-step denoising vs PAAS on an out-of-distribution image (Fig. 2), and
gradient ascent on a canvas with each estimator under random and annealed σ (Fig. 4).

``shared/specs/sjc.md`` §1.4 and §4:

* **Experiment A (Fig. 2).** A clean image x (an orange blob on a grey canvas) is out of
  distribution for the denoiser at σ, which only saw ``data + σn``. Single-step denoising
  ``D(x; σ)`` (the naive score ``(D(x; σ) − x)/σ²``, eq. 12) gives artifacts; PAAS queries
  ``D(x + σn; σ)`` on an in-distribution input and averages ``(D(x + σn; σ) − x)/σ²`` over n
  (eq. 16), approximating the score at √2σ (Claim 1). Defaults [S]: σ = 6.5, blob colour
  (1, 0.5, 0), radius ¼ of the canvas, grey 0.5 (0 in [−1, 1]).
* **Experiment B (Fig. 4).** θ is the canvas itself (pixels, or SD latents decoded for viewing);
  Adamax ascends ``g = σ·score`` with the single-step score or PAAS (M = 1), σ either random
  (t uniform on the model's ticks minus the 10 smallest and 30 largest) or annealed (geometric from
  ``min(80, σ_max)`` down to σ_min in ``stages`` stages, ``lr_k = lr·σ_k``). All [S]: the paper's
  2D script was never released.

Command line (writes ``paas2d.png`` and ``paas2d.json`` into ``--out``)::

    python -m sjc.paas2d --model /path/to/pixel_or_sd_pipeline [--prompt "..." --guidance-scale 10]
                         [--sigma 6.5] [--steps 2000] [--out runs/sjc_paas2d]
"""

import argparse
import json
import math
from pathlib import Path
from typing import Callable, Dict, Literal, Optional, Sequence

import torch
from torch import Tensor

from common.export import image_grid, save_image
from common.io import atomic_write_text
from common.priors.checks import check_sigma_range
from common.priors.diffusion import DiffusionModel, TextContext

__all__ = ["blob_image", "ood_demo", "optimize_canvas", "run_experiments", "write_figure", "main"]

Estimator = Literal["paas", "single_step"]
Schedule = Literal["random", "annealed"]


def image_size(diffusion: DiffusionModel) -> int:
    """Native RGB size of the model (latent size × VAE factor for SD)."""
    size = diffusion.unet.config.sample_size
    size = size if isinstance(size, int) else size[0]
    if diffusion.is_latent:
        size *= 2 ** (len(diffusion.vae.config.block_out_channels) - 1)
    return int(size)


def blob_image(size: int, radius_frac: float = 0.25, color: Sequence[float] = (1.0, 0.5, 0.0),
               grey: float = 0.5, softness: float = 1.5) -> Tensor:
    """``[1, 3, size, size]`` soft disc of ``color`` on a ``grey`` canvas, in [0, 1] (spec §4, Exp. A [S])."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    r = torch.sqrt((xx - size / 2) ** 2 + (yy - size / 2) ** 2)
    a = torch.sigmoid((radius_frac * size - r) / softness)  # [H, W] soft disc mask
    col = torch.tensor(color, dtype=torch.float32).view(3, 1, 1)
    return (a * col + (1 - a) * grey)[None]


def _sigma_vec(sigma: float, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), float(sigma), dtype=x.dtype, device=x.device)


@torch.no_grad()
def ood_demo(diffusion: DiffusionModel, x: Tensor, sigma: float = 6.5, context: Optional[TextContext] = None,
             guidance_scale: float = 1.0, n_paas: int = 16, generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
    """Experiment A: denoise a clean image in one step vs. at perturbed inputs (PAAS).

    Args:
        diffusion: the loaded prior.
        x: ``[1, C, h, w]`` clean model-space image.
        sigma: σ (checked against the model's range).
        n_paas: PAAS draws averaged in ``paas_mean``.

    Returns:
        model-space images: ``input`` x, ``single_step`` D(x; σ), ``noisy`` x + σn,
        ``denoised_noisy`` D(x + σn; σ) (one PAAS draw) and ``paas_mean`` ``x + σ²·PAAS`` (eq. 16,
        i.e. the average of D(x + σn; σ) over ``n_paas`` draws).
    """
    check_sigma_range(diffusion.sigmas, sigma)
    s = _sigma_vec(sigma, x)
    noise = torch.randn((n_paas, *x.shape), generator=generator).to(x)
    single = diffusion.denoise(x, s, context, guidance_scale)
    outs = torch.stack([diffusion.denoise(x + sigma * n, s, context, guidance_scale) for n in noise])
    return {"input": x, "single_step": single, "noisy": x + sigma * noise[0], "denoised_noisy": outs[0],
            "paas_mean": outs.mean(0)}


def sigma_schedule(diffusion: DiffusionModel, schedule: Schedule, steps: int, stages: int = 100,
                   sigma_max: float = 80.0, t_min: int = 10, t_max: Optional[int] = None,
                   generator: Optional[torch.Generator] = None) -> Tensor:
    """``[steps]`` σ per step: random (t uniform on ``[t_min, t_max]``, default ``T − 31``) or annealed
    (geometric from ``min(sigma_max, σ_{T−1})`` to ``σ_0`` over ``stages`` equal stages)."""
    sig = diffusion.sigmas.cpu()
    T = sig.numel()
    if schedule == "random":
        hi = T - 31 if t_max is None else t_max
        if not 0 <= t_min <= hi < T:
            raise ValueError(f"timestep range [{t_min}, {hi}] is outside the model's 0..{T - 1}")
        return sig[torch.randint(t_min, hi + 1, (steps,), generator=generator)]
    if schedule != "annealed":
        raise ValueError(f"schedule must be 'random' or 'annealed', got {schedule!r}")
    top = min(sigma_max, float(sig[-1]))
    check_sigma_range(sig, top)
    stages = max(1, min(stages, steps))
    levels = torch.exp(torch.linspace(math.log(top), math.log(float(sig[0])), stages, dtype=torch.float64))
    per = torch.full((stages,), steps // stages)
    per[: steps % stages] += 1
    return levels.repeat_interleave(per)


def optimize_canvas(diffusion: DiffusionModel, init: Tensor, estimator: Estimator = "paas", schedule: Schedule = "random",
                    steps: int = 2000, lr: float = 0.05, context: Optional[TextContext] = None,
                    guidance_scale: float = 1.0, var_red: bool = True, stages: int = 100, sigma_max: float = 80.0,
                    generator: Optional[torch.Generator] = None,
                    callback: Optional[Callable[[int, Tensor], None]] = None) -> Tensor:
    """Experiment B: ascend ``g = σ·score`` on a canvas θ with Adamax (spec §4 [S] values).

    ``single_step``: ``g = (D(θ; σ) − θ)/σ`` (eq. 12 ×σ). ``paas``: ``g = (D(θ + σn; σ) − θ)/σ``
    (eq. 16 ×σ, M = 1; ``var_red=False``: eq. 15). Annealed runs scale the learning rate by σ.

    Args:
        init: ``[1, C, h, w]`` model-space start canvas.

    Returns:
        ``[1, C, h, w]`` the final canvas (model space).
    """
    if estimator not in ("paas", "single_step"):
        raise ValueError(f"estimator must be 'paas' or 'single_step', got {estimator!r}")
    sigmas = sigma_schedule(diffusion, schedule, steps, stages, sigma_max, generator=generator)
    theta = init.clone().requires_grad_(True)
    opt = torch.optim.Adamax([theta], lr=lr)
    for i, sig in enumerate(sigmas.tolist()):
        if schedule == "annealed":
            opt.param_groups[0]["lr"] = lr * sig
        with torch.no_grad():
            x = theta.detach()
            s = _sigma_vec(sig, x)
            if estimator == "single_step":
                g = (diffusion.denoise(x, s, context, guidance_scale) - x) / sig
            else:
                n = torch.randn(x.shape, generator=generator).to(x)
                d = diffusion.denoise(x + sig * n, s, context, guidance_scale)
                g = (d - x) / sig if var_red else (d - x - sig * n) / sig
        opt.zero_grad(set_to_none=True)
        (-(g * theta).sum()).backward()  # ascend g: d(−Σ g·θ)/dθ = −g
        opt.step()
        if callback is not None:
            callback(i, theta.detach())
    return theta.detach()


def image_stats(x: Tensor) -> Dict[str, float]:
    """Model-space statistics of an image: mean overflow beyond [−1, 1] and mean abs. gradient (TV)."""
    x = x.float()
    tv = (x.diff(dim=-1).abs().mean() + x.diff(dim=-2).abs().mean()) / 2
    return {"overflow": float((x.abs() - 1).clamp_min(0).mean()), "tv": float(tv), "std": float(x.std())}


def run_experiments(diffusion: DiffusionModel, prompt: Optional[str] = None, guidance_scale: float = 1.0,
                    sigma: float = 6.5, steps: int = 2000, lr: float = 0.05, stages: int = 100, n_paas: int = 16,
                    seed: int = 0) -> Dict[str, Dict[str, Tensor]]:
    """Both experiments; returns ``{"ood": {...}, "canvas": {"<estimator>/<schedule>": canvas}}`` (model space)."""
    diffusion.load()
    context = diffusion.text_context(prompt) if (prompt and diffusion.is_conditional) else None
    if guidance_scale != 1.0 and context is None:
        raise ValueError("guidance_scale != 1 needs a text-conditional model and a --prompt")
    gen = torch.Generator().manual_seed(seed)
    x = diffusion.encode(blob_image(image_size(diffusion)).to(diffusion.device))
    ood = ood_demo(diffusion, x, sigma, context, guidance_scale, n_paas, gen)
    canvases = {}
    for est in ("single_step", "paas"):
        for sch in ("random", "annealed"):
            init = torch.zeros_like(x)  # [S] grey / zero-latent start
            canvases[f"{est}/{sch}"] = optimize_canvas(diffusion, init, est, sch, steps, lr, context, guidance_scale,
                                                       stages=stages, generator=torch.Generator().manual_seed(seed))
    return {"ood": ood, "canvas": canvases}


def _label(img: Tensor, text: str, scale: int) -> Tensor:
    """``[H, W, 3]`` image upscaled ×scale with a text strip above it."""
    from PIL import Image, ImageDraw

    img = img.clamp(0, 1)
    if scale > 1:
        img = img.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    h, w = img.shape[:2]
    strip = Image.new("RGB", (w, 14), (255, 255, 255))
    ImageDraw.Draw(strip).text((2, 1), text[: max(4, w // 6)], fill=(0, 0, 0))
    top = torch.from_numpy(__import__("numpy").asarray(strip)).float() / 255
    return torch.cat([top, img.cpu()], dim=0)


def write_figure(diffusion: DiffusionModel, results: Dict[str, Dict[str, Tensor]], out_dir, sigma: float,
                 meta: Optional[dict] = None) -> Path:
    """Write ``paas2d.png`` (row 1: Exp. A, row 2: Exp. B) and ``paas2d.json`` (image statistics) into ``out_dir``."""
    out_dir = Path(out_dir)
    decode = lambda z: diffusion.decode(z)[0].permute(1, 2, 0).cpu()  # noqa: E731
    h = decode(results["ood"]["input"]).shape[0]
    scale = max(1, 128 // h)
    names_a = {"input": "x (clean)", "single_step": f"D(x;{sigma:g}) 1-step", "noisy": "x+sn",
               "denoised_noisy": "D(x+sn;s) PAAS", "paas_mean": "E_n D(x+sn;s)"}
    row_a = [_label(decode(results["ood"][k]), v, scale) for k, v in names_a.items()]
    row_b = [_label(decode(v), k.replace("single_step", "1-step"), scale) for k, v in results["canvas"].items()]
    blank = torch.ones_like(row_a[0])
    cells = row_a + row_b + [blank] * (len(row_a) - len(row_b))
    path = save_image(image_grid(cells, nrow=len(row_a)), out_dir / "paas2d.png")
    stats = {"ood": {k: image_stats(v) for k, v in results["ood"].items()},
             "canvas": {k: image_stats(v) for k, v in results["canvas"].items()}, **(meta or {})}
    atomic_write_text(out_dir / "paas2d.json", json.dumps(stats, indent=2))
    return path


def main(argv: Optional[Sequence[str]] = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="diffusers pipeline folder or cached hub id (pixel or SD)")
    p.add_argument("--prompt", default=None, help="prompt for text-conditional models")
    p.add_argument("--guidance-scale", type=float, default=1.0, help="CFG scale (paper 2D study: 3 and 10 for SD)")
    p.add_argument("--sigma", type=float, default=6.5, help="σ of the OOD demonstration (Fig. 2: 6.5)")
    p.add_argument("--steps", type=int, default=2000, help="canvas optimisation steps per run")
    p.add_argument("--stages", type=int, default=100, help="annealing stages")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--n-paas", type=int, default=16, help="PAAS draws averaged in the demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/sjc_paas2d")
    a = p.parse_args(argv)
    diffusion = DiffusionModel(model=a.model).load()
    res = run_experiments(diffusion, a.prompt, a.guidance_scale, a.sigma, a.steps, a.lr, a.stages, a.n_paas, a.seed)
    path = write_figure(diffusion, res, a.out, a.sigma, meta={"args": vars(a)})
    print(f"wrote {path} and {Path(a.out) / 'paas2d.json'}")
    return path


if __name__ == "__main__":
    main()
