"""Caption benchmark and the evaluation table (spec §4, §7.3 test 20)."""

from pathlib import Path

import pytest
import torch

from common.testing.tiny_models import TINY_CLIP_CONFIG, tiny_clip
from vectorfusion.captions import BENCHMARK_FILE, CaptionFileError, load_captions
from vectorfusion.evaluate import caption_consistency, clip_label, format_table, make_clip

SHARED = Path("/work/shared/data/vectorfusion_captions.txt")


def test_benchmark_has_128_distinct_captions():
    caps = load_captions()
    assert len(caps) == 128 and len(set(caps)) == 128 and "自転車" in caps
    if SHARED.is_file():
        assert BENCHMARK_FILE.read_bytes() == SHARED.read_bytes()


def test_caption_file_errors(tmp_path):
    (tmp_path / "blank.txt").write_text("a\n\nb\n")
    (tmp_path / "dup.txt").write_text("a\nb\na\n")
    with pytest.raises(CaptionFileError, match="blank"):
        load_captions(tmp_path / "blank.txt")
    with pytest.raises(CaptionFileError, match="repeats line 1"):
        load_captions(tmp_path / "dup.txt")
    with pytest.raises(CaptionFileError, match="does not exist"):
        load_captions(tmp_path / "missing.txt")


def test_caption_consistency_matches_direct_computation():
    clip = tiny_clip(seed=0)
    pool = ["a red cube", "a blue sphere", "a green cone"]
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    captions = ["a blue sphere", "a red cube", "a green cone"]
    out = caption_consistency(clip, images, captions, pool)
    img, txt = clip.encode_image(images), clip.encode_text(pool)
    sim = img @ txt.T
    true = torch.tensor([1, 0, 2])
    assert out["r_precision"] == pytest.approx(100 * float((sim.argmax(1) == true).float().mean()))
    assert out["sim"] == pytest.approx(100 * float(sim[torch.arange(3), true].mean()), abs=1e-4)
    with pytest.raises(ValueError, match="not in the R-precision pool"):
        caption_consistency(clip, images[:1], ["a purple torus"], pool)


def test_labels_specs_and_table():
    assert clip_label("ViT-L-14:openai") == "L/14" and clip_label("ViT-H-14:laion2b_s32b_b79k") == "H/14"
    assert clip_label(f"config:{TINY_CLIP_CONFIG}") == "tiny_clip"
    clip = make_clip("ViT-B-16:openai")
    assert clip.name == "ViT-B-16" and clip.pretrained == "openai" and not clip.loaded
    with pytest.raises(ValueError, match="ARCH:TAG"):
        make_clip("ViT-B-16")
    row = {"method": "VectorFusion (scratch)", "K": None, "n": 2,
           "L/14": {"r_precision": 50.0, "r_precision_sem": 50.0, "sim": 24.3}}
    table = format_table([row], ["L/14"])
    assert "| VectorFusion (scratch) | – | 2 | 50.0 ± 50.0 | 24.3 |" in table
