"""Per-pixel output distributions (thesis §2.5; specs/lmconv.md §2.7).

Data are integer *levels* ``v ∈ {0..n_bins−1}`` (``[B, C, H, W]`` long); the network sees
``x = 2v/(n_bins−1) − 1`` ∈ [-1, 1]. Two heads:

* :class:`BinaryLikelihood`: a 2-way softmax per pixel (binarized MNIST/digits).
* :class:`DiscretizedLogisticMixtureLikelihood`: PixelCNN++'s mixture of discretized logistics with
  the R→G→B coupling inside a pixel, generalized to any ``n_bins`` (17 for the 8×8 digits).
"""

import math

import torch
import torch.nn.functional as F


class Likelihood:
    """Interface shared by the heads.

    Attributes:
        channels: image channels ``C``.
        n_bins: levels per channel.
        out_channels: network head channels per location.
    """

    channels: int
    n_bins: int
    out_channels: int

    def to_input(self, levels: torch.Tensor, dtype: torch.dtype = None) -> torch.Tensor:
        """Levels ``[B, C, H, W]`` → network input in [-1, 1] (``2v/(n_bins−1) − 1``) of ``dtype``."""
        return levels.to(dtype or torch.get_default_dtype()) * (2.0 / (self.n_bins - 1)) - 1.0

    def to_levels(self, x: torch.Tensor) -> torch.Tensor:
        """Values in [-1, 1] → nearest level (long)."""
        return torch.round((x.clamp(-1, 1) + 1) * (self.n_bins - 1) / 2).long()

    def log_prob(self, out: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        """``log p(x_p | parents)`` per location: out ``[B, out_channels, H, W]``, levels ``[B, C, H, W]`` → ``[B, H, W]``."""
        raise NotImplementedError

    def sample(self, out: torch.Tensor, generator=None, greedy: bool = False) -> torch.Tensor:
        """Draw values in [-1, 1] ``[B, C, H, W]`` from the per-location distributions."""
        raise NotImplementedError


class BinaryLikelihood(Likelihood):
    """2-way softmax: ``log p(x_p) = log_softmax(l_p)[x_p]``; input fed as −1/+1 [T]."""

    def __init__(self) -> None:
        self.channels, self.n_bins, self.out_channels = 1, 2, 2

    def log_prob(self, out: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(out, dim=1).gather(1, levels[:, :1].long()).squeeze(1)  # [B, H, W]

    def sample(self, out: torch.Tensor, generator=None, greedy: bool = False) -> torch.Tensor:
        if greedy:
            bit = out.argmax(1, keepdim=True)
        else:
            p1 = torch.softmax(out, dim=1)[:, 1:2]  # [B, 1, H, W]
            bit = (torch.rand(p1.shape, generator=generator, dtype=p1.dtype, device=p1.device) < p1).long()
        return bit.to(out.dtype) * 2 - 1


class DiscretizedLogisticMixtureLikelihood(Likelihood):
    """Discretized logistic mixture with ``n_mix`` components (PixelCNN++; spec §2.7).

    Head layout [C]: ``n_mix`` mixture logits, then per colour channel ``n_mix`` means, ``n_mix``
    log-scales and (RGB only) ``n_mix`` coupling coefficients: 30 channels for grayscale, 100 for RGB.

    Args:
        channels: 1 (grayscale) or 3 (RGB).
        n_bins: levels per channel (256 for 8-bit, 32 for 5-bit, 17 for the digits).
        n_mix: mixture components (10).
        fallback: use the PixelCNN++ pdf approximation when a middle-bin mass is < 1e-5 (numerically
            safe for training); False gives the exact ``log(CDF⁺ − CDF⁻)`` (exact normalization tests).
        quantize_samples: snap samples to the nearest bin centre (spec §6 item 17).
    """

    def __init__(self, channels: int = 3, n_bins: int = 256, n_mix: int = 10, fallback: bool = True,
                 quantize_samples: bool = True) -> None:
        if channels not in (1, 3):
            raise ValueError(f"The discretized logistic mixture supports 1 or 3 channels, got {channels}.")
        if n_bins < 2:
            raise ValueError(f"n_bins must be at least 2, got {n_bins}.")
        self.channels, self.n_bins, self.n_mix = channels, n_bins, n_mix
        self.fallback, self.quantize_samples = fallback, quantize_samples
        self.out_channels = n_mix * (1 + (3 if channels == 3 else 2) * channels)

    def _params(self, out: torch.Tensor):
        """Split the head: logits ``[B, K, H, W]``, means/log-scales/coeffs ``[B, C, K, H, W]``."""
        b, _, h, w = out.shape
        k, c = self.n_mix, self.channels
        logits = out[:, :k]
        rest = out[:, k:].reshape(b, c, -1, k, h, w)  # [B, C, 2 or 3, K, H, W]
        means, log_scales = rest[:, :, 0], rest[:, :, 1].clamp(min=-7.0)
        coeffs = torch.tanh(rest[:, :, 2]) if c == 3 else None
        return logits, means, log_scales, coeffs

    @staticmethod
    def _couple(means: torch.Tensor, coeffs, x: torch.Tensor) -> torch.Tensor:
        """μ̃_G = μ_G + α₀x_R; μ̃_B = μ_B + α₁x_R + α₂x_G (x: ``[B, C, 1, H, W]``) [spec §2.7]."""
        if coeffs is None:
            return means
        m_g = means[:, 1] + coeffs[:, 0] * x[:, 0]
        m_b = means[:, 2] + coeffs[:, 1] * x[:, 0] + coeffs[:, 2] * x[:, 1]
        return torch.stack([means[:, 0], m_g, m_b], dim=1)

    def log_prob(self, out: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        logits, means, log_scales, coeffs = self._params(out)
        x = self.to_input(levels, out.dtype).unsqueeze(2)  # [B, C, 1, H, W]
        lv = levels.unsqueeze(2)
        delta = 1.0 / (self.n_bins - 1)  # half bin width
        centered = x - self._couple(means, coeffs, x)
        inv_s = torch.exp(-log_scales)
        plus_in, min_in = inv_s * (centered + delta), inv_s * (centered - delta)
        log_cdf_plus = plus_in - F.softplus(plus_in)  # log σ(plus_in): lowest bin
        log_one_minus_cdf_min = -F.softplus(min_in)  # log(1 − σ(min_in)): highest bin
        cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
        log_mid = torch.log(cdf_delta.clamp(min=1e-300 if out.dtype == torch.float64 else 1e-30))
        if self.fallback:
            mid_in = inv_s * centered
            log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)
            log_mid = torch.where(cdf_delta > 1e-5, log_mid, log_pdf_mid + math.log(2 * delta))
        log_probs = torch.where(lv == 0, log_cdf_plus,
                                torch.where(lv == self.n_bins - 1, log_one_minus_cdf_min, log_mid))
        log_probs = log_probs.sum(1) + F.log_softmax(logits, dim=1)  # [B, K, H, W]
        return torch.logsumexp(log_probs, dim=1)  # [B, H, W]

    def sample(self, out: torch.Tensor, generator=None, greedy: bool = False) -> torch.Tensor:
        """Gumbel-max component, then logistic draws R, G|R, B|R,G (spec §2.10); ``greedy``: mode component, mean."""
        logits, means, log_scales, coeffs = self._params(out)
        b, k, h, w = logits.shape

        def rand(shape):
            u = torch.rand(shape, generator=generator, dtype=out.dtype, device=out.device)
            return u * (1 - 2e-5) + 1e-5  # u ~ U(1e−5, 1−1e−5)

        if greedy:
            comp = logits.argmax(1)
        else:
            comp = (logits - torch.log(-torch.log(rand(logits.shape)))).argmax(1)  # Gumbel-max  [B, H, W]
        sel = F.one_hot(comp, k).permute(0, 3, 1, 2).unsqueeze(1).to(out.dtype)  # [B, 1, K, H, W]
        mu = (means * sel).sum(2)  # [B, C, H, W]
        ls = (log_scales * sel).sum(2)
        co = (coeffs * sel).sum(2) if coeffs is not None else None
        xs = []
        for c in range(self.channels):
            m = mu[:, c]
            if c == 1:
                m = m + co[:, 0] * xs[0]
            elif c == 2:
                m = m + co[:, 1] * xs[0] + co[:, 2] * xs[1]
            if not greedy:
                u = rand(m.shape)
                m = m + torch.exp(ls[:, c]) * (torch.log(u) - torch.log1p(-u))
            v = m.clamp(-1.0, 1.0)
            if self.quantize_samples:
                v = self.to_input(self.to_levels(v), out.dtype)
            xs.append(v)
        return torch.stack(xs, dim=1)  # [B, C, H, W]
