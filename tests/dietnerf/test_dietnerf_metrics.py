"""Evaluation (specs/dietnerf.md §9.4 item 22): metrics on known images, LPIPS skipped with a reason,
KID/FID estimators on synthetic features, far-view angles, and the Table 3.1-form report."""

import math
import os

import pytest
import torch

from dietnerf.metrics import LPIPSScorer, camera_angle_to_nearest, fid_from_features, kid_from_features, psnr, ssim
from dietnerf.table import aggregate_table, load_runs, scene_table

LPIPS_VGG = os.path.join(torch.hub.get_dir(), "checkpoints", "vgg16-397923af.pth")


def test_psnr_and_ssim_on_known_images():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 32, 3, generator=g) * 0.8 + 0.1
    delta = (torch.rand(32, 32, 3, generator=g) - 0.5) * 0.1
    expect = -10 * math.log10(float((delta**2).mean()))
    assert abs(psnr(x + delta, x) - expect) < 1e-3
    assert abs(psnr(torch.zeros(4, 4, 3), torch.full((4, 4, 3), 0.5)) - 10 * math.log10(4)) < 1e-4
    assert abs(ssim(x, x) - 1.0) < 1e-9
    assert ssim(x + delta, x) < ssim(x + 0.1 * delta, x) < 1.0
    # the paper's SSIM: scikit-image, 7x7 uniform window, per-channel mean
    from skimage.metrics import structural_similarity

    ref = structural_similarity((x + delta).double().numpy(), x.double().numpy(), channel_axis=-1, data_range=1.0)
    assert abs(ssim(x + delta, x) - ref) < 1e-12


def test_lpips_is_skipped_with_a_reason_without_weights():
    scorer = LPIPSScorer("vgg", "[-1,1]")
    x = torch.rand(16, 16, 3)
    if os.path.isfile(LPIPS_VGG):
        assert scorer.status == "ok" and scorer(x, x) < 1e-6
        return
    assert scorer.status.startswith("skipped:") and "vgg16" in scorer.status and "Fix:" in scorer.status
    assert scorer(x, x) is None  # never a number from random weights
    assert LPIPSScorer(enabled=False).status.startswith("skipped: disabled")
    with pytest.raises(ValueError, match="input_range"):
        LPIPSScorer(input_range="0..1")


def test_kid_unbiased_estimator():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1000, 64, generator=g), torch.randn(1000, 64, generator=g)
    same, _ = kid_from_features(a, b, subset_size=500, n_subsets=20)
    assert abs(same) < 0.01
    shifted, _ = kid_from_features(a, b + 1.0, subset_size=500, n_subsets=20)
    assert shifted > 0.1


def test_fid_of_a_set_with_itself_is_zero():
    g = torch.Generator().manual_seed(0)
    proj = torch.randn(3 * 8 * 8, 12, generator=g)  # stub "Inception": a fixed random projection
    images = torch.rand(64, 3, 8, 8, generator=g)
    feats = images.flatten(1) @ proj
    assert abs(fid_from_features(feats, feats)) < 1e-6
    other = (torch.rand(64, 3, 8, 8, generator=g) * 0.5).flatten(1) @ proj
    assert fid_from_features(feats, other) > 1.0
    # closed form for Gaussians with equal covariance: FID = |mu1 - mu2|^2
    c = torch.randn(5000, 4, generator=g)
    assert abs(fid_from_features(c, c + torch.tensor([1.0, 0, 0, 0])) - 1.0) < 1e-6


def test_camera_angle_to_nearest():
    from dietnerf.poses import pose_spherical

    train = pose_spherical(torch.tensor([0.0, 90.0]), torch.tensor([0.0, 0.0]), torch.tensor([4.0, 4.0]))
    test = pose_spherical(torch.tensor([10.0, 180.0]), torch.tensor([0.0, 0.0]), torch.tensor([3.0, 5.0]))
    torch.testing.assert_close(camera_angle_to_nearest(test, train), torch.tensor([10.0, 90.0]), atol=1e-3, rtol=0)


def _summary(method, scene, p, s, lp=None):
    return {"method": method, "scene": scene, "psnr": p, "ssim": s, "lpips": lp, "psnr_far": p - 1, "ssim_far": s,
            "lpips_status": "ok" if lp is not None else "skipped: no weights", "n_views": 25, "step": 10,
            "far_views_min_angle_deg": 30.0, "train_views": [1, 2], "lpips_input_range": "[-1,1]", "protocol": "x"}


def test_tables(tmp_path):
    import json

    for method, scene, p in (("DietNeRF", "lego", 24.0), ("DietNeRF", "chair", 26.0), ("NeRF", "lego", 10.0)):
        d = tmp_path / f"{method}-{scene}" / "version_0"
        d.mkdir(parents=True)
        (d / "test_metrics.json").write_text(json.dumps(_summary(method, scene, p, 0.8)))
    runs = load_runs([f"DietNeRF={tmp_path}/DietNeRF-*/version_*", f"NeRF={tmp_path}/NeRF-*/version_*"])
    text = aggregate_table(runs, paper=True)
    assert "| DietNeRF | 2 | 25.000 | 0.800 | – |" in text  # averaged over scenes; LPIPS not a number
    assert "LPIPS skipped: no weights" in text and "(thesis Table 3.1)" in text
    assert "| NeRF | 10.000 | – | 10.000 |" in text  # per-scene table: lego, chair, mean
    assert "far views" in scene_table(_summary("DietNeRF", "lego", 24.0, 0.8))
    with pytest.raises(SystemExit, match="no test_metrics.json"):
        load_runs([f"X={tmp_path}/none*"])
