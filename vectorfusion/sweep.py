"""One VectorFusion run per caption (the benchmark protocol: one output per caption, spec §4.1).

Each caption runs as its own ``lightning fit`` process (``python -m common.cli``), named
``<name>/<index>`` so its folder is ``<root>/<name>/<index>/version_k/`` with its ``result.json``;
captions whose run already finished are skipped, so an interrupted sweep resumes where it stopped.
Then score everything with :mod:`vectorfusion.evaluate`::

    python -m vectorfusion.sweep --config experiments/vectorfusion.yaml            # 128 captions
    python -m vectorfusion.sweep --config experiments/vectorfusion.yaml --start 0 --end 32   # a shard
    python -m vectorfusion.evaluate runs/vectorfusion

Arguments after ``--`` go to every run (e.g. ``-- --trainer.devices 1``).
"""

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from vectorfusion.captions import BENCHMARK_FILE, load_captions


def finished(root: Path, name: str, index: int) -> bool:
    """Whether a run of caption ``index`` under ``root/name`` wrote its ``result.json``."""
    return any((root / name / f"{index:03d}").glob("version_*/result.json"))


def run_caption(configs: Sequence[str], caption: str, name: str, index: int, root: str, extra: Sequence[str],
                env: dict | None = None) -> tuple[int, float, float]:
    """Run one caption in a fresh process; returns ``(exit code, wall seconds, CPU seconds)``."""
    cmd = [sys.executable, "-m", "common.cli", "fit"]
    for c in configs:
        cmd += ["--config", c]
    cmd += ["--model.init_args.prompt", caption, "--run.name", f"{name}/{index:03d}", "--run.root", root, *extra]
    start, cpu0 = time.perf_counter(), _children_cpu()
    code = subprocess.call(cmd, env=env)
    return code, time.perf_counter() - start, _children_cpu() - cpu0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: Sequence[str] | None = None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", required=True, help="experiment YAML (repeatable: overrides)")
    parser.add_argument("--captions", default=str(BENCHMARK_FILE),
                        help="one caption per line; 'shapeworld' = the 66 shapeworld captions")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--end", type=int, default=None)
    parser.add_argument("--stride", type=int, default=1,
                        help="every k-th caption of [start, end) (a subset spread over the list)")
    parser.add_argument("--name", default=None, help="run-name prefix (default: the first config's stem)")
    parser.add_argument("--root", default="runs")
    parser.add_argument("--threads", type=int, default=None, help="OMP/torch threads per run")
    args = parser.parse_args(argv)
    if args.captions == "shapeworld":
        from shapeworld.captions import all_captions

        captions = all_captions()
    else:
        captions = load_captions(args.captions)
    name = args.name or Path(args.config[0]).stem
    env = dict(os.environ)
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if args.stride < 1:
        raise SystemExit(f"--stride must be at least 1, got {args.stride}")
    records = []
    for i in range(args.start, min(args.end or len(captions), len(captions)), args.stride):
        if finished(Path(args.root), name, i):
            print(f"[{i:03d}] done already: {captions[i]!r}")
            continue
        code, seconds, cpu = run_caption(args.config, captions[i], name, i, args.root, extra, env)
        records.append({"index": i, "caption": captions[i], "exit": code, "seconds": seconds, "cpu_seconds": cpu})
        print(f"[{i:03d}] exit {code} in {seconds:.1f} s ({cpu:.1f} CPU s): {captions[i]!r}", flush=True)
    failed = [r for r in records if r["exit"] != 0]
    print(f"{len(records) - len(failed)} runs finished, {len(failed)} failed"
          + (f" (indices {[r['index'] for r in failed]})" if failed else ""))
    return records


if __name__ == "__main__":
    main()
