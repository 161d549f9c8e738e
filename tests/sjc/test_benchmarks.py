"""The SJC benchmark scripts run (tiny models), so they cannot rot before the shapeworld priors exist."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quality_benchmark_runs_end_to_end_with_tiny_models(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    bench = _load("sjc_shapeworld_quality")
    out = tmp_path / "q.json"
    summary = bench.main(["--configs", "experiments/shapeworld/sjc.yaml", "--override", "tests/overrides/shapeworld/sjc.yaml",
                          "--clip-config", "common/testing/tiny_clip.json", "--skip-prior-check", "--n-prompts", "1",
                          "--seeds", "0", "--threads", "1", "--out", str(out)])
    row = summary["experiments/shapeworld/sjc.yaml"]
    assert row["n"] == 1 and 0 <= row["r_precision"] <= 1 and row["max_seconds"] > 0
    run = json.loads(out.read_text())["configs"]["experiments/shapeworld/sjc.yaml"]["runs"][0]
    assert run["seed"] == 0 and run["prompt"] == "an image of a red cube"
    assert len(run["retrieved"]) == row["n"] and all(r.startswith("a") for r in run["retrieved"])  # one per render


def test_dev_prompts_are_disjoint_from_the_evaluation_prompts(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    bench = _load("sjc_shapeworld_quality")
    assert not set(bench.DEV_PROMPT_PAIRS) & set(bench.PROMPT_SETS["heldout"])
    out = tmp_path / "dev.json"
    bench.main(["--configs", "experiments/shapeworld/sjc.yaml", "--override", "tests/overrides/shapeworld/sjc.yaml",
                "--clip-config", "common/testing/tiny_clip.json", "--skip-prior-check", "--prompt-set", "dev",
                "--n-prompts", "1", "--seeds", "0", "--threads", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["prompt_set"] == "dev"
    assert result["configs"]["experiments/shapeworld/sjc.yaml"]["runs"][0]["prompt"] == "an image of a red sphere"


def test_quality_benchmark_reports_pending_without_the_prior(capsys, monkeypatch):
    bench = _load("sjc_shapeworld_quality")
    if (ROOT / "shapeworld/weights/shapeworld_diffusion/model_index.json").is_file():
        pytest.skip("the shapeworld prior is shipped")
    assert bench.main(["--clip-config", "common/testing/tiny_clip.json"]) is None
    out = capsys.readouterr().out
    assert "PENDING" in out and "train_diffusion.yaml" in out


def test_render_benchmark_runs_on_a_small_grid():
    bench = _load("sjc_speed")
    wall, cpu, info = bench.bench_render(iters=1, threads=1, weight_thresh=1e-4, resolution=16, size=8)
    assert wall > 0 and cpu > 0 and info["k"] > 1
