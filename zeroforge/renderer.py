"""Differentiable voxel renderers ω(V, θ, φ) (specs/zeroforge.md §3.7).

* :class:`VoxelEARenderer` — the analytic emission–absorption renderer of §3.7b ([S], the default and a
  documented deviation, A5): orthographic camera on the sphere, trilinear resampling of the grid into a
  camera-aligned volume, opacity ``α_k = 1 − exp(−κ·V_k·δ/Δ)``, exclusive transmittance, headlight
  Lambert shading from soft normals, white background.
* :class:`NeuralVoxelRenderer` — the paper's learned NVR+ (Rematas & Ferrari 2020; §3.7a). Not
  available here: its weights are not supplied, and the network is not ported. Constructing it raises
  an error that says so.
"""

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.priors.base import PriorWeightsNotFoundError
from zeroforge.geometry import UpAxis, camera_basis, eye_directions

__all__ = ["VoxelRender", "VoxelEARenderer", "NeuralVoxelRenderer"]


@dataclass
class VoxelRender:
    """Output of a voxel renderer.

    Attributes:
        image: ``[B, 3, R, R]`` in [0, 1] (channels first, CLIP's layout).
        alpha: ``[B, R, R]`` pixel opacity ``A`` in [0, 1].
    """

    image: Tensor
    alpha: Tensor


class VoxelEARenderer(nn.Module):
    """Analytic emission–absorption renderer of a voxel grid over ``[-0.5, 0.5]^3`` (§3.7b).

    Args:
        render_size: image resolution R (128 [S]).
        depth_samples: samples K along each ray; default ``ceil(√3·N)`` (about one per voxel).
        kappa: absorption per voxel length at ``V = 1`` (κ = 3 [S]).
        light: headlight direction in camera coordinates (+z towards the viewer), normalised.
        ambient: ambient term of the shading ``ambient + diffuse·max(0, n·l)`` (0.25).
        diffuse: diffuse term (0.75).
        normal_eps: ε of the soft normal ``−∇V / sqrt(‖∇V‖² + ε²)``, ∇ per voxel length (1e-2).
        background: grey level of the background (1.0, white).
        albedo: RGB multiplier of the shading ((1, 1, 1): grey; a tint for CLIPs trained on coloured shapes).
        up_axis: the world's up axis (``y``: ShapeNet; ``z``: shapeworld); sets the view parametrisation.
        extent: half-width of the orthographic image in world units (default ``√3/2``: the unit cube is never
            cropped; smaller values zoom in on objects that do not fill the cube).

    Shape:
        ``V [B, N, N, N]`` in [0, 1] indexed ``[b, x, y, z]``, ``θ [B]``, ``φ [B]`` -> :class:`VoxelRender`
        with ``image [B, 3, R, R]``.
    """

    def __init__(self, render_size: int = 128, depth_samples: Optional[int] = None, kappa: float = 3.0,
                 light: Sequence[float] = (-0.3, 0.5, 1.0), ambient: float = 0.25, diffuse: float = 0.75,
                 normal_eps: float = 1e-2, background: float = 1.0, albedo: Sequence[float] = (1.0, 1.0, 1.0),
                 up_axis: UpAxis = "y", extent: Optional[float] = None) -> None:
        super().__init__()
        if up_axis not in ("y", "z"):
            raise ValueError(f"up_axis must be 'y' or 'z', got {up_axis!r}")
        self.render_size, self.depth_samples, self.kappa = render_size, depth_samples, kappa
        self.ambient, self.diffuse, self.normal_eps, self.background = ambient, diffuse, normal_eps, background
        self.up_axis = up_axis
        self.extent = extent if extent is not None else math.sqrt(3.0) / 2.0
        self.register_buffer("light", F.normalize(torch.tensor(light, dtype=torch.float32), dim=0), persistent=False)
        self.register_buffer("albedo", torch.tensor(albedo, dtype=torch.float32), persistent=False)

    def sampling_grid(self, theta: Tensor, phi: Tensor, n_depth: int) -> Tensor:
        """``[B, K, R, R, 3]`` ``grid_sample`` coordinates of the camera-aligned volume (order z, y, x).

        Camera point ``(a, b, c)`` (pixel column and row upwards in ``[−extent, extent]``, depth towards the
        viewer in ``[−√3/2, √3/2]``) maps to world ``a·r + b·u + c·e``; world ``[−0.5, 0.5]`` maps to ``[−1, 1]``.
        """
        half = math.sqrt(3.0) / 2.0
        basis = camera_basis(eye_directions(theta, phi, self.up_axis), self.up_axis)  # [B, 3, 3] rows r, u, e
        # affine_grid's output coords (xo, yo, zo) ∈ [−1, 1] run over (W = a, H = −b, D = −c): front to back
        cols = torch.stack([basis[:, 0] * self.extent, -basis[:, 1] * self.extent, -basis[:, 2] * half], dim=-1) * 2.0
        affine = torch.cat([cols, cols.new_zeros(cols.shape[0], 3, 1)], dim=-1).flip(1)  # rows (z, y, x), [B, 3, 4]
        R = self.render_size
        return F.affine_grid(affine, [theta.shape[0], 1, n_depth, R, R], align_corners=False)

    def forward(self, volume: Tensor, theta: Tensor, phi: Tensor) -> VoxelRender:
        if volume.ndim != 4 or not (volume.shape[1] == volume.shape[2] == volume.shape[3]):
            raise ValueError(f"volume must be [B, N, N, N], got {tuple(volume.shape)}")
        B, N = volume.shape[0], volume.shape[1]
        if theta.shape != (B,) or phi.shape != (B,):
            raise ValueError(f"need one view (θ, φ) per volume: θ {tuple(theta.shape)}, φ {tuple(phi.shape)} for B={B}")
        dtype = torch.float64 if volume.dtype == torch.float64 else torch.float32  # fp32 even under autocast
        with torch.autocast(device_type=volume.device.type, enabled=False):
            return self._render(volume.to(dtype), theta.to(volume.device, dtype), phi.to(volume.device, dtype))

    def _render(self, volume: Tensor, theta: Tensor, phi: Tensor) -> VoxelRender:
        N = volume.shape[1]
        K = self.depth_samples or math.ceil(math.sqrt(3.0) * N)
        grid = self.sampling_grid(theta, phi, K)
        v = F.grid_sample(volume[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        v = v[:, 0]  # [B, K, R, R], k = 0 nearest the camera
        # 3. opacity: α_k = 1 − exp(−κ·V_k·δ/Δ) with δ the sample spacing, Δ = 1/(N−1) the voxel length
        step = math.sqrt(3.0) / K * (N - 1)  # δ/Δ
        tau = self.kappa * step * v  # optical depth per sample
        alpha = 1.0 - torch.exp(-tau)
        trans = torch.exp(-(torch.cumsum(tau, dim=1) - tau))  # exclusive: T_k = Π_{j<k}(1 − α_j)
        weights = trans * alpha  # [B, K, R, R]
        # 4. shading: soft normals n = −∇V/sqrt(‖∇V‖² + ε²) in camera axes (a, b, c), per voxel length
        grad = self._camera_gradient(v, N, K)  # [B, 3, K, R, R]
        normal = -grad / torch.sqrt(grad.pow(2).sum(1, keepdim=True) + self.normal_eps ** 2)
        lam = torch.einsum("bcklm,c->bklm", normal, self.light.to(v))
        shade = self.ambient + self.diffuse * torch.relu(lam)
        # 5. composite over the background
        A = weights.sum(1)  # [B, R, R]
        grey = (weights * shade).sum(1)
        image = grey[:, None] * self.albedo.to(v).view(1, 3, 1, 1) + (1.0 - A)[:, None] * self.background
        return VoxelRender(image=image.clamp(0.0, 1.0), alpha=A)

    def _camera_gradient(self, v: Tensor, N: int, K: int) -> Tensor:
        """Central differences of ``v [B, K, R, R]`` along (a, b, c), in units of ``1/Δ`` (per voxel)."""
        half = math.sqrt(3.0) / 2.0
        voxel = 1.0 / (N - 1)
        pad = F.pad(v[:, None], (1, 1, 1, 1, 1, 1), mode="replicate")[:, 0]  # [B, K+2, R+2, R+2]
        pixel = 2 * self.extent / self.render_size
        d_w = (pad[:, 1:-1, 1:-1, 2:] - pad[:, 1:-1, 1:-1, :-2]) / (2 * pixel)
        d_h = (pad[:, 1:-1, 2:, 1:-1] - pad[:, 1:-1, :-2, 1:-1]) / (2 * pixel)
        d_k = (pad[:, 2:, 1:-1, 1:-1] - pad[:, :-2, 1:-1, 1:-1]) / (2 * 2 * half / K)
        # rows run towards −b and depth samples towards −c
        return torch.stack([d_w, -d_h, -d_k], dim=1) * voxel


class NeuralVoxelRenderer(nn.Module):
    """The paper's NVR+ renderer (§3.7a). Not available: the network is not ported and needs its weights.

    Args:
        weights: path to the NVR+ weights (HF ``ke-lly/ZeroForge`` or the TF-Graphics NVR release).

    Raises:
        PriorWeightsNotFoundError: always when ``weights`` does not exist; NotImplementedError otherwise.
    """

    def __init__(self, weights: Optional[str] = None) -> None:
        super().__init__()
        import os

        if weights is None or not os.path.isfile(weights):
            raise PriorWeightsNotFoundError(
                f"NVR+ weights not found ({weights!r}). The neural voxel renderer path of ZeroForge (specs/zeroforge.md "
                "§3.7a) needs the authors' NVR+ weights (HF ke-lly/ZeroForge); use "
                "zeroforge.renderer.VoxelEARenderer (the default analytic renderer) instead.")
        raise NotImplementedError(
            "NVR+ weights were supplied, but the NVR+ network (3D conv stack, U-Net, Blender scene compositing, "
            "§3.7a) is not ported in this suite. Use zeroforge.renderer.VoxelEARenderer.")
