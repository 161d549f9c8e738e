"""Score Jacobian Chaining guidance with Perturb-and-Average Scoring (``shared/specs/sjc.md``).

SJC chains the 2D score through the renderer, ``∇_θ log p̃_σ(θ) = E_π[J_πᵀ ∇_x log p_σ(x_π)]``
(eq. 9–11), and scores a clean render with PAAS (eq. 13–16):

* eq. 15 ("plain"): ``PAAS(x, √2σ) = E_n[(D(x + σn; σ) − (x + σn))/σ²]``,
* eq. 16 ("variance-reduced", default): ``E_n[(D(x + σn; σ) − x)/σ²]``,

with noise std σ and the denoiser queried at σ (never √2σ). The applied image-space ascent
direction follows the official code, ``g = σ·PAAS`` (= n − ε̂ for eq. 16), or the paper-literal
``PAAS`` (``score_weighting="paper"``); the loss is ``−Σ(stopgrad(g) ⊙ x)/B`` (§1.5). σ is drawn as
σ_t for an integer t uniform on [t_min, t_max] (SD: 10..969, dropping the 10 smallest and 30
largest ticks, A2).
"""

from typing import Callable, Dict, Literal, Optional, Sequence, Union

import torch
from torch import Tensor

from common.guidance.base import Guidance, surrogate_loss
from common.guidance.sds import InputSpace, make_context, to_model_space
from common.priors.diffusion import DiffusionModel, TextContext

__all__ = ["paas", "SJCGuidance"]


def paas(denoiser: Callable[[Tensor, Tensor], Tensor], x: Tensor, sigma: Tensor, n_samples: int = 1,
         var_red: bool = True, generator: Optional[torch.Generator] = None,
         noise: Optional[Tensor] = None) -> Tensor:
    """Monte-Carlo PAAS estimate (SJC eq. 15/16), averaged over ``n_samples`` noise draws.

    Args:
        denoiser: ``D(x, σ) -> x̂`` with σ of shape ``[B]``.
        x: ``[B, ...]`` clean render in model space.
        sigma: ``[B]`` (or scalar) noise level σ; the noise has std σ and D is queried at σ.
        n_samples: M draws.
        var_red: eq. 16 (subtract x) if True, eq. 15 (subtract x + σn) otherwise.
        generator: RNG for the draws.
        noise: optional ``[M, B, ...]`` fixed draws (overrides ``n_samples``).

    Returns:
        ``[B, ...]`` estimate of ``∇_x log p_{√2σ}(x)`` (Claim 1), no gradient.

    Example:
        >>> x = torch.zeros(1, 2); D = lambda y, s: 0 * y  # data = {0}: D returns 0
        >>> paas(D, x, torch.ones(1)).abs().max().item()
        0.0
    """
    with torch.no_grad():
        x = x.detach()
        sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        sig = sig.expand(x.shape[0]) if sig.numel() == 1 else sig
        s = sig.view(-1, *([1] * (x.ndim - 1)))
        if noise is None:
            noise = torch.randn((n_samples, *x.shape), generator=generator,
                                device=x.device if generator is None else generator.device, dtype=x.dtype).to(x.device)
        total = torch.zeros_like(x)
        for n in noise:
            x_noisy = x + s * n
            d = denoiser(x_noisy, sig)
            total += (d - x) / s**2 if var_red else (d - x_noisy) / s**2
        return total / noise.shape[0]


class SJCGuidance(Guidance):
    """SJC score guidance with PAAS.

    Args:
        diffusion: the frozen :class:`DiffusionModel`.
        guidance_scale: CFG scale s (SJC 3D: 100, A3).
        t_min: smallest timestep index (10).
        t_max: largest timestep index (default T − 31, i.e. 969 for T = 1000).
        n_samples: PAAS draws M per call (1, A4).
        var_red: eq. 16 (True, default) or eq. 15.
        score_weighting: ``"sigma"`` (g = σ·PAAS, official code, default) or ``"paper"`` (g = PAAS).
        input_space: ``"model"`` (rendered SD latents / [−1, 1] pixels, the SJC default) or
            ``"rgb"`` ([0, 1] images, encoded; pixel models are resized to ``resolution``).
        resolution: resize for ``"rgb"`` inputs (pixel models in SJC: 64 -> 256).
        negative_prompt: unconditional prompt of CFG.

    Shape:
        - images: ``[B, C, h, w]`` model space, or ``[B, 3, H, W]`` in [0, 1] for ``"rgb"``.
        - output: ``{"loss_sjc": −Σ(g ⊙ x)/B}``.
    """

    def __init__(
        self,
        diffusion: DiffusionModel,
        guidance_scale: float = 100.0,
        t_min: int = 10,
        t_max: Optional[int] = None,
        n_samples: int = 1,
        var_red: bool = True,
        score_weighting: Literal["sigma", "paper"] = "sigma",
        input_space: InputSpace = "model",
        resolution: Optional[int] = None,
        negative_prompt: str = "",
    ) -> None:
        super().__init__()
        if score_weighting not in ("sigma", "paper"):
            raise ValueError(f"score_weighting must be 'sigma' or 'paper', got {score_weighting!r}")
        self.diffusion = diffusion
        self.guidance_scale = guidance_scale
        self.t_min, self.t_max = t_min, t_max
        self.n_samples = n_samples
        self.var_red = var_red
        self.score_weighting = score_weighting
        self.input_space = input_space
        self.resolution = resolution
        self.negative_prompt = negative_prompt

    def sample_sigma(self, batch: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """``[B]`` σ_t with t uniform on the integers ``[t_min, t_max]`` (A2)."""
        T = self.diffusion.num_train_timesteps
        hi = self.t_max if self.t_max is not None else T - 31
        if not 0 <= self.t_min <= hi < T:
            raise ValueError(f"invalid SJC timestep range [{self.t_min}, {hi}] for T = {T}")
        t = torch.randint(self.t_min, hi + 1, (batch,), generator=generator)
        return self.diffusion.sigmas.cpu()[t]

    def score_update(self, x: Tensor, context: Optional[TextContext], sigma: Tensor,
                     noise: Optional[Tensor] = None, generator: Optional[torch.Generator] = None) -> Tensor:
        """Image-space ascent direction g (σ·PAAS or PAAS), no gradient."""

        def denoiser(x_noisy: Tensor, sig: Tensor) -> Tensor:
            return self.diffusion.denoise(x_noisy, sig, context, self.guidance_scale)

        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        sigma = sigma.expand(x.shape[0]) if sigma.numel() == 1 else sigma
        score = paas(denoiser, x, sigma, self.n_samples, self.var_red, generator, noise)
        return score * sigma.view(-1, 1, 1, 1) if self.score_weighting == "sigma" else score

    def forward(self, images: Tensor, prompt: Union[str, Sequence[str], TextContext], step: int = 0,
                sigma: Optional[Tensor] = None, noise: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
        """``{"loss_sjc": −Σ(stopgrad(g) ⊙ x)/B}``: descending it ascends the PAAS score.

        Args:
            images: see class ``Shape``.
            prompt: prompt(s) or a precomputed :class:`TextContext`.
            step: global step (unused).
            sigma: optional fixed ``[B]`` σ; noise: optional ``[M, B, C, h, w]`` draws; generator: RNG.
        """
        self.diffusion._ensure_loaded()
        x = to_model_space(self.diffusion, images, self.input_space, self.resolution)
        B = x.shape[0]
        context = make_context(self.diffusion, prompt, B, self.negative_prompt)
        if sigma is None:
            sigma = self.sample_sigma(B, generator if generator is None or generator.device.type == "cpu" else None)
        sigma = torch.as_tensor(sigma, dtype=x.dtype).to(x.device)
        g = self.score_update(x, context, sigma, noise, generator)
        self.last_info = {"sjc_grad_norm": g.norm().detach(), "sjc_sigma": sigma.float().mean()}
        return {"loss_sjc": surrogate_loss(x, -g)}
