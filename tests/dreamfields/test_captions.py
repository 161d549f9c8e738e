"""Caption sets and bad input: the shipped OC-COCO list and its normalisation, caption files with blank lines,
empty / over-long prompts, CLIP weights missing offline (spec §13 item 22; the issue's bad-input list)."""

import pytest
import torch

from common.metrics import normalize_caption, r_precision, r_precision_sem
from common.priors.base import PriorWeightsNotFoundError
from common.priors.clip import CLIPModel
from dreamfields.captions import (OC_COCO_FILE, SHAPEWORLD_FILE, CaptionFileError, caption_pool, load_captions,
                                  shapeworld_captions)


def test_shipped_oc_coco_captions():
    raw = OC_COCO_FILE.read_text(encoding="utf-8").splitlines()
    assert len(raw) == 153 and raw[0] == "A blue bicycle parked by a metal gate."
    caps = load_captions()
    assert len(caps) == 153 and len(set(caps)) == 153
    assert all(c == c.lower() and c.endswith(".") and not c.endswith("..") and c == c.strip() for c in caps)
    assert caps[0] == "a blue bicycle parked by a metal gate."
    assert caps[1] == "an orange bike leaning on a pole in the snow."  # a period is appended
    assert "a blue jug in a garden filled with mud." in caps  # trailing spaces stripped
    assert normalize_caption("A red stop sign. ") == "a red stop sign."
    assert load_captions(normalize=False)[0] == "A blue bicycle parked by a metal gate."
    assert (OC_COCO_FILE.parent / "NOTICE.md").is_file()


def test_shapeworld_caption_file_matches_the_generator():
    assert load_captions(SHAPEWORLD_FILE, normalize=False) == shapeworld_captions()


def test_caption_file_errors(tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("a red cube\n\na blue ball\n   \n")
    with pytest.raises(CaptionFileError, match=r"blank line\(s\) at line 2, 4"):
        load_captions(blank)
    ok = tmp_path / "ok.txt"
    ok.write_text("a red cube\r\na blue ball\n")  # CRLF and one final newline are fine
    assert load_captions(ok, normalize=False) == ["a red cube", "a blue ball"]
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(CaptionFileError, match="is empty"):
        load_captions(empty)
    dup = tmp_path / "dup.txt"
    dup.write_text("A red cube.\na red cube\n")
    with pytest.raises(CaptionFileError, match="line 2 repeats line 1"):
        load_captions(dup)
    with pytest.raises(CaptionFileError, match="does not exist"):
        load_captions(tmp_path / "missing.txt")


def test_caption_pool_appends_a_prompt_outside_the_pool():
    pool, idx = caption_pool(None, True, "A blue bicycle parked by a metal gate")
    assert idx == 0 and len(pool) == 153
    pool, idx = caption_pool(None, True, "a purple teapot")
    assert idx == 153 and pool[-1] == "a purple teapot." and len(pool) == 154


def test_r_precision_metric():
    e = torch.eye(3)
    assert r_precision(e, e, torch.arange(3)).value == 1.0  # perfect retrieval
    assert r_precision(e, e, torch.tensor([1, 2, 0])).value == 0.0  # always another caption
    sim_img = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.2, 0.0], [0.0, 0.0, 1.0]])
    assert r_precision(sim_img, e, torch.tensor([0, 1, 2])).value == pytest.approx(2 / 3)
    tie = torch.tensor([[1.0, 1.0, 0.0]])
    assert r_precision(tie, e, torch.tensor([1])).value == 0.0  # ties go to the lowest index
    assert r_precision_sem(0.598, 306) == pytest.approx(2.81, abs=0.005)
    assert r_precision_sem(0.771, 153) == pytest.approx(3.41, abs=0.005)


def test_empty_prompt_is_rejected_at_construction(make_system):
    for bad in ("", "   \n"):
        with pytest.raises(ValueError, match="Empty prompt"):
            make_system(prompt=bad)


def test_over_long_prompt_errors_or_truncates(make_system):
    long = "a red cube " * 20  # > the tiny CLIP's 16-token context
    system = make_system(prompt=long)
    with pytest.raises(ValueError, match="more than the 16-token text context.*long_prompt: truncate"):
        system.setup("fit")
    system = make_system(prompt=long, long_prompt="truncate")
    system.setup("fit")  # warns and goes on
    assert system.text_embedding().shape == (1, 16)


def test_missing_clip_weights_fail_in_setup_before_any_work(make_system, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = CLIPModel("ViT-B-16", "openai", cache_dir=str(tmp_path))
    system = make_system(retrieval=[missing])
    with pytest.raises(PriorWeightsNotFoundError, match="(?s)retrieval.*not available offline.*Fix.*Nothing was trained"):
        system.setup("fit")
    guide = CLIPModel("tiny", None, checkpoint=str(tmp_path / "nope.safetensors"),
                      model_config="common/testing/tiny_clip.json")
    from common.guidance import CLIPGuidance

    with pytest.raises(PriorWeightsNotFoundError, match="(?s)guidance CLIP.*nope.safetensors"):
        make_system(guidance=CLIPGuidance(guide)).setup("fit")


def test_unknown_sparsity_and_bad_field_for_perturb(make_system):
    with pytest.raises(ValueError, match="unknown sparsity"):
        make_system(sparsity="l1")
    from dreamfields.baselines import PixelImage

    with pytest.raises(ValueError, match="density_noise_std"):
        make_system(sparsity="perturb_sigma", field=PixelImage(8))
