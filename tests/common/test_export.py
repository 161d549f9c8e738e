import math

import numpy as np
import pytest
import torch

from common.export import image_grid, marching_cubes_mesh, save_image, save_mesh, save_video
from common.io import atomic_dir, atomic_write


def _sphere_density(res=64, r=0.6, bound=1.0):
    lin = torch.linspace(-bound, bound, res)
    x = torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), -1)
    return 50.0 * torch.sigmoid((r - x.norm(dim=-1)) / 0.01)


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_marching_cubes_sphere_is_watertight_with_right_volume(tmp_path, suffix):
    import trimesh

    r = 0.6
    mesh = marching_cubes_mesh(_sphere_density(r=r), level=25.0, color_fn=lambda x: 0.5 + 0.5 * x)
    assert mesh.is_watertight
    expected = 4.0 / 3.0 * math.pi * r**3
    assert abs(mesh.volume - expected) / expected < 0.05
    assert mesh.volume > 0  # outward normals
    path = save_mesh(mesh, tmp_path / f"sphere{suffix}")
    loaded = trimesh.load(path, force="mesh")
    assert len(loaded.vertices) > 100


def test_marching_cubes_empty_grid_says_why():
    with pytest.raises(ValueError, match="no surface"):
        marching_cubes_mesh(torch.zeros(8, 8, 8), level=1.0)


def test_atomic_write_failure_keeps_previous_file(tmp_path):
    target = tmp_path / "mesh.ply"
    target.write_text("previous")

    def broken(p):
        p.write_text("partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.ply"]


def test_atomic_dir_replaces_a_folder_whole_and_keeps_it_on_failure(tmp_path):
    target = tmp_path / "vae"
    with atomic_dir(target) as d:
        (d / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one" and oct(target.stat().st_mode & 0o777) != oct(0o700)
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "a.txt").write_text("half")
            raise RuntimeError("crash mid-write")
    assert (target / "a.txt").read_text() == "one"
    with atomic_dir(target) as d:
        (d / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]  # replaced whole, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae"]  # no temporary or old folder left


@pytest.mark.parametrize("fmt", ["gif", "mp4"])
def test_video_and_images_written(tmp_path, fmt):
    import imageio.v3 as iio

    frames = torch.rand(4, 15, 17, 3)
    path = save_video(frames, tmp_path / f"turn.{fmt}", fps=4)
    assert path.stat().st_size > 0
    grid = image_grid(frames, nrow=2)
    assert grid.shape == (2 + 2 * 17, 2 + 2 * 19, 3) or grid.shape[-1] == 3
    png = save_image(frames[0], tmp_path / "a.png")
    back = iio.imread(png)
    np.testing.assert_allclose(back / 255.0, frames[0].numpy(), atol=1 / 255 + 1e-6)


def test_atomic_write_gives_default_permissions_not_private_ones(tmp_path):
    """mkstemp creates 0o600 files; what atomic_write leaves must be readable as any new file (0o666 & ~umask)."""
    import os

    from common.io import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "weights.json", "{}")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644
