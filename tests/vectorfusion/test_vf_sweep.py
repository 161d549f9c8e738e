"""One run per caption: command line, naming, resuming a partial sweep (subprocess stubbed)."""

from pathlib import Path

from vectorfusion import sweep


def test_sweep_runs_each_caption_once_and_resumes(tmp_path, monkeypatch):
    captions = tmp_path / "caps.txt"
    captions.write_text("a red cube\na blue sphere\na green cone\n")
    calls = []

    def fake_call(cmd, env=None):
        calls.append(cmd)
        name = cmd[cmd.index("--run.name") + 1]
        out = Path(cmd[cmd.index("--run.root") + 1]) / name / "version_0"
        out.mkdir(parents=True)
        (out / "result.json").write_text("{}")
        return 0

    monkeypatch.setattr(sweep.subprocess, "call", fake_call)
    args = ["--config", "experiments/vectorfusion.yaml", "--captions", str(captions), "--root", str(tmp_path / "runs"),
            "--end", "2", "--", "--trainer.max_steps", "10"]
    records = sweep.main(args)
    assert [r["index"] for r in records] == [0, 1] and all(r["exit"] == 0 for r in records)
    cmd = calls[0]
    assert cmd[cmd.index("--model.init_args.prompt") + 1] == "a red cube"
    assert cmd[cmd.index("--run.name") + 1] == "vectorfusion/000" and cmd[-2:] == ["--trainer.max_steps", "10"]
    runs = tmp_path / "runs"
    assert sweep.finished(runs, "vectorfusion", 1) and not sweep.finished(runs, "vectorfusion", 2)
    records = sweep.main(args[:-5] + ["--end", "3"])  # resumes: only caption 2 is left
    assert [r["index"] for r in records] == [2] and len(calls) == 3


def test_sweep_stride_takes_every_kth_caption(tmp_path, monkeypatch):
    captions = tmp_path / "caps.txt"
    captions.write_text("".join(f"caption {i}\n" for i in range(7)))
    prompts = []

    def fake_call(cmd, env=None):
        prompts.append(cmd[cmd.index("--model.init_args.prompt") + 1])
        return 1  # a failed run leaves no result.json

    monkeypatch.setattr(sweep.subprocess, "call", fake_call)
    records = sweep.main(["--config", "experiments/vectorfusion.yaml", "--captions", str(captions),
                          "--root", str(tmp_path / "runs"), "--start", "1", "--stride", "3"])
    assert prompts == ["caption 1", "caption 4"] and [r["index"] for r in records] == [1, 4]
    assert all(r["exit"] == 1 for r in records)
