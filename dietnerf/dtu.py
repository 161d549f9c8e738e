"""DTU in pixelNeRF's preprocessed layout (``rs_dtu_4``) for the single-view experiment
(thesis §3.5.2; specs/dietnerf.md §3.4, §4.2).

Layout (pixelNeRF ``DVRDataset`` with ``sub_format='dtu'``, ``list_prefix='new_'``)::

    <root>/new_train.lst  new_val.lst       scan names, one per line (88 training, 15 test scenes)
    <root>/scan8/image/000000.png ...       400×300 images, sorted by name = view index (49 views)
    <root>/scan8/cameras.npz                world_mat_i (3×4 or 4×4 projection), scale_mat_i (optional)

Cameras follow pixelNeRF exactly: ``K, R, C`` from ``world_mat_i`` (RQ decomposition, as
``cv2.decomposeProjectionMatrix``); ``c2w = [Rᵀ | C]`` with ``C ← (C − t_s)/s`` from ``scale_mat_i``;
``c2w ← diag(1,−1,−1,1)·c2w·diag(1,−1,−1,1)`` (OpenCV → OpenGL camera and pixelNeRF's world flip);
``(f_x, f_y, c_x, c_y)`` averaged over the scan's views. Rays use the pixel index with no half-pixel
shift and unit directions, near 0.1, far 5.0, no white background.

Evaluation views [T, C-pixelNeRF]: every view except the source view (25) and pixelNeRF's
``--exclude_dtu_bad`` list, 33 views per scene.
"""

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from common.data import DatasetError
from dietnerf.data import PosedImages, PosedViewsDataModule, check_view_indices

DTU_BAD_VIEWS = (3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 36, 37, 38, 39)
PIXELNERF_SOURCE_VIEW = 25
_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])
_LAYOUT = ("pixelNeRF's DTU layout (rs_dtu_4/DTU): <root>/new_train.lst, <root>/new_val.lst and "
           "<root>/scan<N>/{image/*.png, cameras.npz}")


def decompose_projection(P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``P = K [R | −R C]`` → ``(K with K[2,2] = 1, R (world→camera, det +1), C)``.

    Same result as ``cv2.decomposeProjectionMatrix`` (RQ decomposition with a positive-diagonal K).
    """
    from scipy.linalg import rq

    P = np.asarray(P, dtype=np.float64)[:3]
    M = P[:, :3]
    K, R = rq(M)
    signs = np.diag(np.sign(np.diag(K)))
    K, R = K @ signs, signs @ R  # signs² = I
    if np.linalg.det(R) < 0:  # P given up to a negative scale
        R = -R
    C = -np.linalg.solve(M, P[:, 3])
    return K / K[2, 2], R, C


def scan_images(scan_dir: Path) -> list[Path]:
    """Image files of a scan, sorted (position = view index)."""
    folder = scan_dir / "image"
    if not folder.is_dir():
        raise DatasetError(f"{folder} does not exist: a DTU scan folder needs image/ and cameras.npz ({_LAYOUT}).")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise DatasetError(f"{folder} holds no .png/.jpg images.")
    return files


def load_dtu_cameras(scan_dir: Path, n_views: int) -> tuple[Tensor, Tensor]:
    """``(c2w [N, 4, 4], intrinsics [4])`` of a scan, as pixelNeRF computes them (module docstring)."""
    path = scan_dir / "cameras.npz"
    if not path.is_file():
        raise DatasetError(f"{path} is missing: a DTU scan folder needs cameras.npz with world_mat_<i> ({_LAYOUT}).")
    try:
        cams = np.load(path)
    except Exception as err:  # corrupt archive
        raise DatasetError(f"{path} could not be read as a NumPy .npz archive ({err}).") from err
    poses, intr = [], []
    for i in range(n_views):
        key = f"world_mat_{i}"
        if key not in cams:
            raise DatasetError(f"{path} has no {key}, but {scan_dir / 'image'} holds {n_views} images: every image "
                               "needs its camera (remove extra images or regenerate cameras.npz).")
        K, R, C = decompose_projection(cams[key])
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = R.T, C
        scale = cams.get(f"scale_mat_{i}")
        if scale is not None:
            pose[:3, 3] = (pose[:3, 3] - scale[:3, 3]) / np.diagonal(scale[:3, :3])
        poses.append(_FLIP @ pose @ _FLIP)
        intr.append([K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
    return torch.tensor(np.stack(poses), dtype=torch.float32), torch.tensor(np.mean(intr, axis=0), dtype=torch.float32)


def read_scan_list(root: Path, list_file: str) -> list[str]:
    path = root / list_file
    if not path.is_file():
        raise DatasetError(f"{path} is missing ({_LAYOUT}); set split_list: null to use a scan not in a list.")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def load_dtu_views(scan_dir: Path, views: list[int]) -> PosedImages:
    """Posed RGB images ``views`` of one scan (values in [0, 1], no background compositing)."""
    import imageio.v3 as iio

    files = scan_images(scan_dir)
    c2w, intr = load_dtu_cameras(scan_dir, len(files))
    views = check_view_indices(views, len(files), f"view indices of {scan_dir.name}")
    images, size = [], None
    for i in views:
        img = np.asarray(iio.imread(files[i]), dtype=np.float32)[..., :3] / 255.0
        if size is not None and img.shape[:2] != size:
            raise DatasetError(f"{files[i]} is {img.shape[1]}x{img.shape[0]} but {files[views[0]].name} is "
                               f"{size[1]}x{size[0]}: all views of a scan must have one size.")
        size = img.shape[:2]
        images.append(img)
    return PosedImages(torch.from_numpy(np.stack(images)), c2w[views], intr.expand(len(views), 4).clone(), views,
                       [files[i] for i in views])


class DTUDataModule(PosedViewsDataModule):
    """One DTU scan with a single observed view (pixelNeRF's 1-view protocol).

    Args:
        root: the folder holding the scan folders and split lists (pixelNeRF's ``rs_dtu_4/DTU``).
        scan: scan folder name (``scan8``, ...).
        split_list: list file the scan must appear in (``new_val.lst``: the 15 test scenes); None skips the check.
        source_views: observed views (pixelNeRF's 1-view evaluation: ``[25]``).
        eval_views: test views (default: all but the source views and, with ``exclude_bad_views``,
            pixelNeRF's shadowed views: 33 per scene).
        exclude_bad_views: drop :data:`DTU_BAD_VIEWS` from the default evaluation views.
        val_views: validation views during training (default: the first 2 evaluation views).
        steps_per_epoch, num_workers: see :class:`~dietnerf.data.PosedViewsDataModule`.
    """

    def __init__(
        self,
        root: str,
        scan: str = "scan8",
        split_list: Optional[str] = "new_val.lst",
        source_views: list[int] = [PIXELNERF_SOURCE_VIEW],
        eval_views: Optional[list[int]] = None,
        exclude_bad_views: bool = True,
        val_views: Optional[list[int]] = None,
        steps_per_epoch: int = 1000,
        num_workers: int = 0,
    ) -> None:
        super().__init__(steps_per_epoch, num_workers)
        self.root, self.scan, self.split_list = root, scan, split_list
        self.source_views, self.eval_view_indices = list(source_views), eval_views
        self.exclude_bad_views, self.val_view_indices = exclude_bad_views, val_views

    @property
    def scan_dir(self) -> Path:
        base = Path(self.root)
        if not base.is_dir():
            raise DatasetError(f"DTU folder {base} does not exist. Point the config's data root at {_LAYOUT} "
                               "(pixelNeRF's preprocessed DTU release).")
        if self.split_list is not None and self.scan not in read_scan_list(base, self.split_list):
            raise DatasetError(f"scan {self.scan!r} is not listed in {base / self.split_list}; choose one of its scans "
                               "or set split_list: null.")
        scan_dir = base / self.scan
        if not scan_dir.is_dir():
            raise DatasetError(f"scan folder {scan_dir} does not exist ({_LAYOUT}).")
        return scan_dir

    def n_views(self) -> int:
        return len(scan_images(self.scan_dir))

    def selected(self, split: str) -> list[int]:
        n = self.n_views()
        if split == "train":
            return check_view_indices(self.source_views, n, "source_views")
        if self.eval_view_indices is not None:
            evals = check_view_indices(self.eval_view_indices, n, "eval_views")
        else:
            skip = set(self.source_views) | (set(DTU_BAD_VIEWS) if self.exclude_bad_views else set())
            evals = [i for i in range(n) if i not in skip]
        if split == "test":
            return evals
        if self.val_view_indices is not None:
            return check_view_indices(self.val_view_indices, n, "val_views")
        return evals[:2]

    def _load(self, split: str) -> PosedImages:
        return load_dtu_views(self.scan_dir, self.selected(split))

    def pose_pool(self) -> Tensor:
        """All cameras of the rig (49 for DTU), images unused: the pool of ``interpolate3``."""
        return load_dtu_cameras(self.scan_dir, self.n_views())[0]

    def describe(self) -> dict:
        return {"scene": self.scan, "root": str(self.root), "train_views": self.selected("train")}


# -- a synthetic scan in the same layout (tests, tiny configs) -------------------------------------------------


def write_synthetic_dtu(root: str, scans: tuple = ("scan1", "scan8"), n_views: int = 8, width: int = 20,
                        height: int = 15, seed: int = 0) -> Path:
    """Write sphere scans in pixelNeRF's DTU layout (cameras on a frontal arc, black background).

    ``world_mat_i = K·[R | −RC]`` and ``scale_mat_i`` are written so that :func:`load_dtu_cameras` recovers
    the look-at poses used to render the images.
    """
    import imageio.v3 as iio

    from common.cameras import pose_spherical
    from common.rendering.volume import VolumeRenderer
    from common.synthetic import ColoredSphereField
    from dietnerf.rays import image_rays

    base = Path(root)
    g = torch.Generator().manual_seed(seed)
    az = -40 + 80 * torch.rand(n_views, generator=g)
    el = 10 + 30 * torch.rand(n_views, generator=g)
    c2w_gl = pose_spherical(az, el, torch.full((n_views,), 2.5))  # [N, 4, 4] in the loader's frame
    f = 0.9 * width
    K = np.array([[f, 0, width / 2 + 0.3], [0, 1.02 * f, height / 2 - 0.2], [0, 0, 1.0]])
    scale, shift = 1.7, np.array([0.1, -0.2, 0.3])
    renderer = VolumeRenderer(n_samples=64, bound=1.0, intersect_box=True).eval()
    field = ColoredSphereField()
    intr = torch.tensor([K[0, 0], K[1, 1], K[0, 2], K[1, 2]], dtype=torch.float32)
    for scan in scans:
        cams = {}
        for i in range(n_views):
            pose = _FLIP @ c2w_gl[i].double().numpy() @ _FLIP  # OpenCV camera, DTU world (before scaling)
            R, C = pose[:3, :3].T, pose[:3, 3] * scale + shift
            P = np.eye(4)
            P[:3] = K @ np.concatenate([R, -R @ C[:, None]], axis=1)
            S = np.eye(4)
            S[:3, :3] *= scale
            S[:3, 3] = shift
            cams[f"world_mat_{i}"], cams[f"scale_mat_{i}"] = P, S
            rays_o, rays_d = image_rays(c2w_gl[i], intr, height, width, 0.0, normalize=True)
            with torch.no_grad():
                rgb = renderer(field, rays_o, rays_d).rgb  # premultiplied = over black
            (base / scan / "image").mkdir(parents=True, exist_ok=True)
            iio.imwrite(base / scan / "image" / f"{i:06d}.png", (rgb.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
        np.savez(base / scan / "cameras.npz", **cams)
    (base / "new_train.lst").write_text(scans[0] + "\n")
    (base / "new_val.lst").write_text("\n".join(scans[1:]) + "\n")
    (base / "synthetic.json").write_text(json.dumps({"c2w": c2w_gl.tolist(), "K": K.tolist(), "fov": math.degrees(
        2 * math.atan(width / (2 * f)))}))
    return base


class SyntheticDTUDataModule(DTUDataModule):
    """:class:`DTUDataModule` over :func:`write_synthetic_dtu` scans, written to ``root`` on first use
    (tiny CLI runs and tests; not DTU).

    Args:
        n_views, width, height: size of the generated scans.
        (other arguments as :class:`DTUDataModule`)
    """

    def __init__(self, root: str = ".cache/dietnerf_synthetic_dtu", n_views: int = 8, width: int = 20, height: int = 15,
                 **kwargs) -> None:
        kwargs.setdefault("source_views", [2])
        super().__init__(root=root, **kwargs)
        self.n_generated, self.size = n_views, (width, height)

    def prepare_data(self) -> None:
        if not (Path(self.root) / "new_val.lst").is_file():
            write_synthetic_dtu(self.root, n_views=self.n_generated, width=self.size[0], height=self.size[1])


__all__ = ["DTUDataModule", "DTU_BAD_VIEWS", "PIXELNERF_SOURCE_VIEW", "SyntheticDTUDataModule", "decompose_projection",
           "load_dtu_cameras", "load_dtu_views", "write_synthetic_dtu"]
