"""DVGO-style voxel grids: the explicit ``Vox Exp`` and the implicit ``Vox Imp`` (specs/pureclipnerf.md §3.2–3.5).

Both store values at ``world_size = (Nx, Ny, Nz)`` vertices spanning the scene box ``[xyz_min, xyz_max]``
corner to corner (``align_corners`` semantics), in ``[C, Nx, Ny, Nz]`` layout, and are read by
trilinear interpolation (:func:`pureclipnerf.gridmath.trilerp`). A point's density is *post-activated*
(paper eq. 1 and §3):

    α = alpha(softplus(σ_raw + b), δ) = 1 − exp(−softplus(σ_raw + b)·δ)

with the shift ``b = ln(α₀/(1 − α₀))`` (α₀ = ``alpha_init`` = 1e-6, so the scene starts almost empty)
and the interval δ in units of the *final* (base) voxel size: ``δ = stepsize·voxel_size/voxel_size_base``
([C], §3.5). As a :class:`~common.fields.base.Field` the grids report the metric density
``σ = softplus(σ_raw + b)/voxel_size_base``, so that ``1 − exp(−σ·Δt)`` with the metric sample spacing
``Δt = stepsize·voxel_size`` is the same α.

* :class:`VoxExpField` (paper "Vox Exp"): raw density and RGB-logit grids are the parameters (§3.3).
* :class:`VoxImpField` (paper "Vox Imp"): a fixed grid of 63-d positional encodings of the vertices,
  mapped per vertex by two small ReLU MLPs to the raw density and RGB-logit grids, which are then
  interpolated like Vox Exp's (§3.4). Only the MLPs (and optionally the shift) are trained.

Progressive scaling (§3.2): :meth:`VoxelGridField.scale_to` resamples to a new voxel budget; the
occupancy mask (§3.6, DVGO's "mask cache") only ever shrinks.
"""

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.fields.base import Field, FieldOutput
from common.fields.encodings import FourierEncoding
from pureclipnerf.gridmath import (density_shift, grid_coords, grid_size, nearest_mask, raw_to_alpha, scene_bbox,
                                   trilerp)

__all__ = [
    "density_shift", "raw_to_alpha", "grid_size", "grid_coords", "trilerp", "nearest_mask",
    "scene_bbox", "pe_basis", "VoxelGridField", "VoxExpField", "VoxImpField",
]

def pe_basis(n_freqs: int = 10) -> Tensor:
    """``[3·L, 3]`` frequency rows ``2^k e_j``, coordinate-major (x·2^0 … x·2^(L−1), y·…, z·…), no π ([C], §3.4)."""
    scales = 2.0 ** torch.arange(n_freqs, dtype=torch.float32)
    return (torch.eye(3)[:, None, :] * scales[None, :, None]).reshape(-1, 3)


def _mlp(in_dim: int, width: int, depth: int, out_dim: int) -> nn.Sequential:
    layers: List[nn.Module] = []
    d = in_dim
    for _ in range(depth - 1):
        layers += [nn.Linear(d, width), nn.ReLU(inplace=True)]
        d = width
    last = nn.Linear(d, out_dim)
    nn.init.zeros_(last.bias)  # [C]: last-layer bias 0
    return nn.Sequential(*layers, last)


# ---------------------------------------------------------------------------------------------- fields
class VoxelGridField(Field):
    """Base class of the two voxel models: scene box, voxel budget, density shift, occupancy mask.

    The grid is sized by :meth:`build` (the system calls it with the box of its cameras unless the
    box is given here), so that the parameters exist before a checkpoint is loaded.

    Args:
        num_voxels: final voxel budget N (``num_voxels_base``; 160³ for Vox Imp, 140³ for Vox Exp [P]).
        num_scales: number K of progressive-scaling checkpoints; the grid starts at ``floor(N/2^K)``
            voxels and doubles at each (§3.2).
        alpha_init: α₀ of the density shift (1e-6, [C]).
        learnable_density_shift: make the shift b a trained scalar (paper text "[P]"; the released code
            keeps it fixed; §7.3).
        lr_shift: learning rate of the shift when it is learnable (not stated; 1e-3 [S]).
        occupancy_mask: keep DVGO's occupancy mask ("mask cache") (§3.6; a speed-up, default on).
        bbox: ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]``; None lets the system compute it from the
            camera frustums (§3.2).
    """

    out_channels = 3

    def __init__(self, num_voxels: int = 160**3, num_scales: int = 4, alpha_init: float = 1e-6,
                 learnable_density_shift: bool = False, lr_shift: float = 1e-3, occupancy_mask: bool = True,
                 bbox: Optional[List[List[float]]] = None) -> None:
        super().__init__()
        if num_voxels < 8:
            raise ValueError(f"num_voxels must be >= 8, got {num_voxels}")
        if num_scales < 0:
            raise ValueError(f"num_scales must be >= 0, got {num_scales}")
        self.num_voxels_base = int(num_voxels)
        self.num_scales = int(num_scales)
        self.alpha_init = alpha_init
        self.use_occupancy = occupancy_mask
        self.lr_shift = lr_shift
        b = density_shift(alpha_init)
        if learnable_density_shift:
            self.shift = nn.Parameter(torch.tensor(b))
        else:
            self.register_buffer("shift", torch.tensor(b))
        self.register_buffer("xyz_min", torch.zeros(3))
        self.register_buffer("xyz_max", torch.zeros(3))
        self.register_buffer("num_voxels", torch.tensor(0, dtype=torch.long))  # current budget (checkpointed)
        self.register_buffer("occupancy", torch.ones(2, 2, 2, dtype=torch.bool))
        self.world_size: Tuple[int, int, int] = (2, 2, 2)
        if bbox is not None and (len(bbox) != 2 or any(len(c) != 3 for c in bbox)):
            raise ValueError(f"bbox must be [[xmin, ymin, zmin], [xmax, ymax, zmax]], got {bbox}")
        self.bbox = bbox
        self.built = False

    def _build_from_bbox(self) -> None:
        """Subclasses call this at the end of ``__init__``: build now when the box was given."""
        if self.bbox is not None:
            self.build(torch.tensor(self.bbox[0], dtype=torch.float32), torch.tensor(self.bbox[1], dtype=torch.float32))

    # ------------------------------------------------------------------ sizing
    def start_voxels(self) -> int:
        """``floor(N/2^K)`` voxels before the first scaling checkpoint (§3.2)."""
        return int(self.num_voxels_base / 2**self.num_scales)

    def voxels_at_stage(self, stage: int) -> int:
        """Voxel budget after ``stage`` scalings: ``floor(N/2^(K − stage))`` (DVGO)."""
        return int(self.num_voxels_base / 2 ** max(self.num_scales - stage, 0))

    @property
    def voxel_size(self) -> float:
        return grid_size(self.xyz_min, self.xyz_max, int(self.num_voxels))[0]

    @property
    def voxel_size_base(self) -> float:
        return grid_size(self.xyz_min, self.xyz_max, self.num_voxels_base)[0]

    @property
    def voxel_ratio(self) -> float:
        """``voxel_size / voxel_size_base`` (δ of one current voxel in base units; ≈2.52 at N/16)."""
        return self.voxel_size / self.voxel_size_base

    def build(self, xyz_min: Tensor, xyz_max: Tensor, camera_origins: Optional[Tensor] = None,
              near: float = 0.0, num_voxels: Optional[int] = None) -> "VoxelGridField":
        """Set the scene box and allocate the grid at ``num_voxels`` (default: the start budget).

        Args:
            xyz_min, xyz_max: ``[3]`` box corners.
            camera_origins: ``[P, 3]`` training camera positions (Vox Exp's near-camera mask-out).
            near: near distance of the cameras.
            num_voxels: budget to allocate (default ``floor(N/2^K)``).
        """
        if not bool((xyz_max > xyz_min).all()):
            raise ValueError(f"empty scene box: xyz_min {xyz_min.tolist()} must be below xyz_max {xyz_max.tolist()}")
        dev = self.xyz_min.device
        self.xyz_min.copy_(xyz_min.to(dev).float())
        self.xyz_max.copy_(xyz_max.to(dev).float())
        n = self.start_voxels() if num_voxels is None else int(num_voxels)
        self.num_voxels.fill_(n)
        _, self.world_size = grid_size(self.xyz_min, self.xyz_max, n)
        self.occupancy = torch.ones(self.world_size, dtype=torch.bool, device=dev)
        self._allocate(camera_origins, near)
        self.built = True
        return self

    def _allocate(self, camera_origins: Optional[Tensor], near: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _resample(self, new_ws: Tuple[int, int, int]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def coords(self) -> Tensor:
        """``[Nx, Ny, Nz, 3]`` vertex coordinates."""
        return grid_coords(self.xyz_min, self.xyz_max, self.world_size)

    def _check_built(self) -> None:
        if not self.built:
            raise RuntimeError(f"{type(self).__name__} has no grid yet: call build(xyz_min, xyz_max) or give bbox=")

    @torch.no_grad()
    def scale_to(self, num_voxels: int) -> None:
        """Progressive scaling (§3.2): resample to a new budget, carry the occupancy mask over by
        nearest lookup at the new vertices (it only shrinks), then refresh it."""
        self._check_built()
        old_mask, old_min, old_max = self.occupancy, self.xyz_min, self.xyz_max
        self.num_voxels.fill_(int(num_voxels))
        _, new_ws = grid_size(self.xyz_min, self.xyz_max, int(num_voxels))
        self._resample(new_ws)
        self.world_size = new_ws
        pts = self.coords().reshape(-1, 3)
        self.occupancy = nearest_mask(old_mask, pts, old_min, old_max).reshape(new_ws)
        self.update_occupancy()

    def resize_for_checkpoint(self, num_voxels: int) -> None:
        """Allocate the grid at the budget a checkpoint was saved with (values come from the checkpoint)."""
        self._check_built()
        _, ws = grid_size(self.xyz_min, self.xyz_max, int(num_voxels))
        self.num_voxels.fill_(int(num_voxels))
        self.world_size = ws
        self.occupancy = torch.ones(ws, dtype=torch.bool, device=self.xyz_min.device)
        self._allocate_empty()

    def _allocate_empty(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ values
    def raw_grids(self) -> Tuple[Tensor, Tensor]:
        """``(raw density [1, Nx, Ny, Nz], RGB logits [3, Nx, Ny, Nz])`` before the activations."""
        raise NotImplementedError

    def alpha_grid(self, raw_density: Optional[Tensor] = None, delta: Optional[float] = None) -> Tensor:
        """``[Nx, Ny, Nz]`` α of the vertex values, δ = one current voxel by default (§3.5, KL prior)."""
        raw = self.raw_grids()[0] if raw_density is None else raw_density
        return raw_to_alpha(raw[0], self.shift, self.voxel_ratio if delta is None else delta)

    @torch.no_grad()
    def update_occupancy(self, threshold: float = 1e-7) -> None:
        """``mask &= maxpool3(α) > threshold`` (DVGO's mask cache update, §3.6); no-op when disabled."""
        if not self.use_occupancy:
            return
        alpha = self.alpha_grid()
        pooled = F.max_pool3d(alpha[None, None], kernel_size=3, stride=1, padding=1)[0, 0]
        self.occupancy &= pooled > threshold

    def forward(self, x: Tensor, d: Optional[Tensor] = None, cov: Optional[Tensor] = None) -> FieldOutput:
        """Metric density ``softplus(σ_raw + b)/voxel_size_base`` (0 outside the box) and sigmoid colour."""
        self._check_built()
        lead = x.shape[:-1]
        pts = x.reshape(-1, 3)
        dens, logits = self.raw_grids()
        raw = trilerp(torch.cat([dens, logits]), pts, self.xyz_min, self.xyz_max)  # [P, 4]
        inside = ((pts >= self.xyz_min) & (pts <= self.xyz_max)).all(-1)
        sigma = F.softplus(raw[:, 0] + self.shift) / self.voxel_size_base * inside
        return FieldOutput(sigma.reshape(lead), torch.sigmoid(raw[:, 1:]).reshape(*lead, 3))

    def param_groups(self) -> List[Dict]:
        """Optimiser groups ``{params, lr, name, skip_zero_grad}`` (spec §3.10)."""
        groups = self._param_groups()
        if isinstance(self.shift, nn.Parameter):
            groups.append({"params": [self.shift], "lr": self.lr_shift, "name": "density_shift", "skip_zero_grad": False})
        return groups

    def _param_groups(self) -> List[Dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (f"world_size={self.world_size}, num_voxels={int(self.num_voxels)}, "
                f"num_voxels_base={self.num_voxels_base}, occupancy={self.use_occupancy}")


class VoxExpField(VoxelGridField):
    """Vox Exp: explicit raw density ``V_d [1, Nx, Ny, Nz]`` and RGB-logit ``V_c [3, Nx, Ny, Nz]`` grids,
    both initialised to 0 (grey, α = α₀); no view dependence, no network (paper §4, spec §3.3).

    Args:
        num_voxels: final budget (140³ in the paper's Tab. 3; 160³ in the released configs; §7.2).
        lr_density, lr_color: learning rates of the grids (0.1 each, [C]); the optimiser updates only
            entries that got a gradient (masked Adam, §3.10).
        maskout_near_cam: set to −100 every voxel within ``near`` of a training camera (§3.3, [C]).
        upscale_density_offset: added to the raw density after each upscaling (−1, [C]).
        (others: see :class:`VoxelGridField`)
    """

    def __init__(self, num_voxels: int = 140**3, num_scales: int = 4, alpha_init: float = 1e-6,
                 learnable_density_shift: bool = False, lr_shift: float = 1e-3, occupancy_mask: bool = True,
                 bbox: Optional[List[List[float]]] = None, lr_density: float = 0.1, lr_color: float = 0.1,
                 maskout_near_cam: bool = True, upscale_density_offset: float = -1.0) -> None:
        super().__init__(num_voxels, num_scales, alpha_init, learnable_density_shift, lr_shift, occupancy_mask, bbox)
        self.lr_density, self.lr_color = lr_density, lr_color
        self.maskout_near_cam = maskout_near_cam
        self.upscale_density_offset = upscale_density_offset
        self.grid_density = nn.Parameter(torch.zeros(1, 2, 2, 2))  # placeholders until build()
        self.grid_color = nn.Parameter(torch.zeros(3, 2, 2, 2))
        self._build_from_bbox()

    def _allocate(self, camera_origins: Optional[Tensor], near: float) -> None:
        dev = self.xyz_min.device
        density = torch.zeros(1, *self.world_size, device=dev)
        if self.maskout_near_cam and camera_origins is not None and near > 0:
            pts = self.coords().reshape(-1, 3)  # [V, 3]
            cams = camera_origins.to(dev).float()
            dist = torch.cat([torch.cdist(pts[i:i + 65536], cams).amin(-1) for i in range(0, pts.shape[0], 65536)])
            density[0][(dist <= near).reshape(self.world_size)] = -100.0
        self.grid_density = nn.Parameter(density)
        self.grid_color = nn.Parameter(torch.zeros(3, *self.world_size, device=dev))

    def _allocate_empty(self) -> None:
        dev = self.xyz_min.device
        self.grid_density = nn.Parameter(torch.zeros(1, *self.world_size, device=dev))
        self.grid_color = nn.Parameter(torch.zeros(3, *self.world_size, device=dev))

    def _resample(self, new_ws: Tuple[int, int, int]) -> None:
        # Trilinear resampling with align_corners (exact on linear fields), then the −1 density shift [C].
        def up(g: Tensor) -> Tensor:
            return F.interpolate(g[None], size=new_ws, mode="trilinear", align_corners=True)[0]

        self.grid_density = nn.Parameter(up(self.grid_density.data) + self.upscale_density_offset)
        self.grid_color = nn.Parameter(up(self.grid_color.data))

    def raw_grids(self) -> Tuple[Tensor, Tensor]:
        self._check_built()
        return self.grid_density, self.grid_color

    def _param_groups(self) -> List[Dict]:
        return [{"params": [self.grid_density], "lr": self.lr_density, "name": "density", "skip_zero_grad": True},
                {"params": [self.grid_color], "lr": self.lr_color, "name": "color", "skip_zero_grad": True}]


class VoxImpField(VoxelGridField):
    """Vox Imp: a fixed PE grid ``V_PE [63, Nx, Ny, Nz]`` (a buffer, not learned) mapped per vertex by a
    density MLP (63→128→128→1) and a colour MLP (63→128→128→3), ReLU, zero last bias (paper §4, §5.1;
    spec §3.4). The MLPs run on every *active* vertex (occupancy mask); inactive vertices get raw
    density −100 and logit 0. Their outputs are then interpolated like Vox Exp's grids, so memory does
    not depend on the render resolution (App. A.5).

    Args:
        num_voxels: final budget (160³, [P][C]).
        pe_freqs: PE frequencies 2^0 … 2^(L−1) on raw world coordinates (L = 10 → 63 channels, [P][C]).
        mlp_width, mlp_depth: hidden width and number of linear layers (128, 3, [P]).
        lr: learning rate of both MLPs (5e-3, [C]).
        (others: see :class:`VoxelGridField`)
    """

    def __init__(self, num_voxels: int = 160**3, num_scales: int = 4, alpha_init: float = 1e-6,
                 learnable_density_shift: bool = False, lr_shift: float = 1e-3, occupancy_mask: bool = True,
                 bbox: Optional[List[List[float]]] = None, pe_freqs: int = 10, mlp_width: int = 128,
                 mlp_depth: int = 3, lr: float = 5e-3) -> None:
        if mlp_depth < 1:
            raise ValueError(f"mlp_depth must be >= 1, got {mlp_depth}")
        super().__init__(num_voxels, num_scales, alpha_init, learnable_density_shift, lr_shift, occupancy_mask, bbox)
        self.encoder = FourierEncoding(pe_basis(pe_freqs), include_input=True)
        in_dim = self.encoder.out_dim  # 3 + 2·3·L = 63
        self.density_mlp = _mlp(in_dim, mlp_width, mlp_depth, 1)
        self.color_mlp = _mlp(in_dim, mlp_width, mlp_depth, 3)
        self.lr = lr
        self.register_buffer("pe", torch.zeros(in_dim, 2, 2, 2), persistent=False)
        self._build_from_bbox()

    def _make_pe(self) -> None:
        with torch.no_grad():
            pe = self.encoder(self.coords())  # [Nx, Ny, Nz, 63]
        self.pe = pe.permute(3, 0, 1, 2).contiguous()  # [63, Nx, Ny, Nz]

    def _allocate(self, camera_origins: Optional[Tensor], near: float) -> None:
        self._make_pe()

    def _allocate_empty(self) -> None:
        self._make_pe()

    def _resample(self, new_ws: Tuple[int, int, int]) -> None:
        self.world_size = new_ws
        self._make_pe()  # the MLP weights are kept (§3.2)

    def raw_grids(self) -> Tuple[Tensor, Tensor]:
        self._check_built()
        ws = self.world_size
        active = self.occupancy.reshape(-1)
        feats = self.pe.reshape(self.pe.shape[0], -1).T  # [V, 63]
        if bool(active.all()):
            dens, logits = self.density_mlp(feats), self.color_mlp(feats)  # [V, 1], [V, 3]
        else:
            sel = feats[active]
            dens = feats.new_full((feats.shape[0], 1), -100.0).index_put((active,), self.density_mlp(sel))
            logits = feats.new_zeros((feats.shape[0], 3)).index_put((active,), self.color_mlp(sel))
        return dens.T.reshape(1, *ws), logits.T.reshape(3, *ws)

    def _param_groups(self) -> List[Dict]:
        return [{"params": list(self.density_mlp.parameters()), "lr": self.lr, "name": "density_mlp", "skip_zero_grad": False},
                {"params": list(self.color_mlp.parameters()), "lr": self.lr, "name": "color_mlp", "skip_zero_grad": False}]
