"""Sweep runner: one Dream Field per caption (× seed), then the R-precision table in the form of thesis Table 4.1.

Each scene is an ordinary ``lightning fit`` of the given config with ``--model.init_args.prompt <caption>`` and
``--seed_everything <seed>``; its end-of-fit ``metrics.json`` (held-out render, retrieval outcome under every
retrieval CLIP) is copied to ``<out>/<label>/results/c<idx>_s<seed>.json``. Finished scenes are skipped, so a
killed sweep resumes where it stopped. The table (``<out>/table.md`` and ``table.json``) gathers every label
under ``<out>``: R-precision in percent ± the standard error ``100·sqrt(p(1−p)/(n−1))`` (spec §9.2).

Serial::

    python -m dreamfields.sweep --config experiments/dreamfields.yaml --seeds 0 1 --label "+ track origin"

One caption per device/process under a distributed launcher (``torchrun --nproc_per_node 8 -m
dreamfields.sweep ...`` or Lightning's ``fabric run``/SLURM): each process takes the captions ``rank::world``
(from ``RANK``/``WORLD_SIZE``, ``SLURM_PROCID``/``SLURM_NTASKS``, or ``--shard i/n``), runs single-device
fits on its local GPU (``LOCAL_RANK``), and writes the table from every result present when it finishes
(so the last process to finish writes the complete one; ``--collect`` rewrites it at any time).

Ablation rows: layer a preset over the config, e.g. ``--config dreamfields/presets/table4_1/scene_bounds.yaml``
(see dreamfields/README.md).
"""

import argparse
import json
import math
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from common.metrics import r_precision_sem
from dreamfields.captions import load_captions

__all__ = ["resolve_shard", "shard_items", "run_sweep", "collect", "main"]

_DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "ROLE_RANK",
              "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT",
              "TORCHELASTIC_MAX_RESTARTS", "GROUP_WORLD_SIZE", "PRIORLAB_RUN_DIR")


def resolve_shard(shard: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> Tuple[int, int, int]:
    """``(index, count, local_rank)`` of this process.

    ``--shard i/n`` wins; otherwise torchrun/Lightning (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) or SLURM
    (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``); otherwise ``(0, 1, 0)``.
    """
    env = dict(os.environ) if env is None else env
    local = int(env.get("LOCAL_RANK", env.get("SLURM_LOCALID", 0)))
    if shard:
        try:
            i, n = (int(v) for v in shard.split("/"))
        except ValueError as err:
            raise ValueError(f"--shard must look like INDEX/COUNT (e.g. 0/4), got {shard!r}") from err
    elif "WORLD_SIZE" in env:
        i, n = int(env.get("RANK", local)), int(env["WORLD_SIZE"])
    elif "SLURM_NTASKS" in env:
        i, n = int(env.get("SLURM_PROCID", 0)), int(env["SLURM_NTASKS"])
    else:
        i, n = 0, 1
    if not 0 <= i < n:
        raise ValueError(f"shard index {i} is outside 0..{n - 1}")
    return i, n, local


def shard_items(items: Sequence, index: int, count: int) -> list:
    """Every ``count``-th item starting at ``index`` (round robin keeps shards balanced)."""
    return list(items[index::count])


@contextmanager
def single_process_env() -> Iterator[None]:
    """Hide the launcher's distributed variables so that each fit is an independent single-device run."""
    saved = {k: os.environ.pop(k) for k in _DIST_VARS if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _result_path(out: Path, label: str, idx: int, seed: int) -> Path:
    return out / _slug(label) / "results" / f"c{idx:03d}_s{seed}.json"


def _slug(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label.strip()) or "run"


def run_scene(configs: Sequence[str], caption: str, idx: int, seed: int, out: Path, label: str,
              caption_file: Optional[str], extra: Sequence[str], local_rank: int) -> dict:
    """One ``fit`` of one caption; returns (and writes) its result record."""
    import torch

    from common.cli import SuiteCLI

    args = ["fit"]
    for cfg in configs:
        args += ["--config", cfg]
    args += ["--model.init_args.prompt", caption, "--seed_everything", str(seed),
             "--run.root", str(out / _slug(label) / "runs"), "--run.name", f"c{idx:03d}_s{seed}"]
    if caption_file is not None:
        args += ["--model.init_args.caption_file", caption_file]
    if torch.cuda.is_available() and "--trainer.accelerator" not in extra:
        args += ["--trainer.accelerator", "gpu", "--trainer.devices", f"[{local_rank % torch.cuda.device_count()}]"]
    args += list(extra)
    start = time.perf_counter()
    with single_process_env():
        cli = SuiteCLI(args=args)
    seconds = time.perf_counter() - start
    run = Path(cli.trainer.default_root_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    record = {"label": label, "caption_index": idx, "caption": caption, "seed": seed, "run_dir": str(run),
              "retrieval": {k: {"correct": bool(v["correct"]), "rank": v["rank"], "cos_true": v["cos_true"]}
                            for k, v in metrics["retrieval"].items()},
              "pool_size": metrics["pool_size"], "steps": metrics["step"], "seconds": seconds}
    path = _result_path(out, label, idx, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    from common.io import atomic_write_text

    atomic_write_text(path, json.dumps(record, indent=2))
    return record


def run_sweep(configs: Sequence[str], out: str, label: str, captions_path: Optional[str] = None,
              normalize: bool = True, seeds: Sequence[int] = (0,), start: int = 0, limit: Optional[int] = None,
              shard: Optional[str] = None, extra: Sequence[str] = ()) -> List[dict]:
    """Optimise one scene per (caption, seed) of this process's shard, then write the table.

    Args:
        configs: config files (the experiment, then overrides / presets).
        out: output root (``<out>/<label>/{runs,results}``, ``<out>/table.md``).
        label: the table row (e.g. ``"+ track origin"``).
        captions_path: caption file (default: the shipped OC-COCO list); it is also the R-precision pool.
        normalize: OC-COCO normalisation of the captions (prompts and pool).
        seeds: seeds per caption (Table 4.1: 2).
        start, limit: caption range ``[start, start + limit)``.
        shard: ``"i/n"`` (default: from the launcher's environment).
        extra: further CLI arguments for every fit.
    """
    captions = load_captions(captions_path, normalize)
    indices = list(range(len(captions)))[start:None if limit is None else start + limit]
    jobs = [(i, s) for i in indices for s in seeds]
    index, count, local = resolve_shard(shard)
    mine = shard_items(jobs, index, count)
    root = Path(out)
    caption_arg = str(captions_path) if captions_path is not None else None
    if caption_arg is not None and not normalize:
        extra = list(extra) + ["--model.init_args.normalize_captions", "false"]
    records = []
    print(f"dreamfields sweep '{label}': shard {index}/{count}, {len(mine)} of {len(jobs)} scenes -> {root}")
    for n, (i, seed) in enumerate(mine):
        path = _result_path(root, label, i, seed)
        if path.is_file():
            records.append(json.loads(path.read_text()))
            continue
        print(f"[{n + 1}/{len(mine)}] caption {i} seed {seed}: {captions[i]!r}")
        records.append(run_scene(configs, captions[i], i, seed, root, label, caption_arg, extra, local))
    collect(out)
    return records


def summarise(records: Sequence[dict]) -> Dict[str, dict]:
    """Per retrieval model: ``{"p", "sem", "n"}`` (R-precision as a fraction, SEM in percent)."""
    out: Dict[str, dict] = {}
    models = sorted({m for r in records for m in r["retrieval"]})
    for m in models:
        hits = [r["retrieval"][m]["correct"] for r in records if m in r["retrieval"]]
        p = sum(hits) / len(hits)
        out[m] = {"p": p, "sem": r_precision_sem(p, len(hits)), "n": len(hits)}
    return out


def collect(out: str) -> str:
    """Write ``<out>/table.md`` and ``<out>/table.json`` from every result under ``<out>``; returns the table."""
    root = Path(out)
    rows: Dict[str, List[dict]] = {}
    for path in sorted(root.glob("*/results/*.json")):
        rec = json.loads(path.read_text())
        rows.setdefault(rec["label"], []).append(rec)
    table = {label: summarise(recs) for label, recs in rows.items()}
    models = sorted({m for s in table.values() for m in s})
    lines = ["| method | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for label, summary in table.items():
        cells = []
        for m in models:
            s = summary.get(m)
            sem = "–" if s is None or not math.isfinite(s["sem"]) else f"{s['sem']:.1f}"
            cells.append("–" if s is None else f"{100 * s['p']:.1f} ± {sem} (n={s['n']})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    text = ("CLIP R-precision (%) ± standard error of the mean, one held-out 45° view per scene "
            "(thesis Table 4.1 form)\n\n" + "\n".join(lines) + "\n")
    if rows:
        from common.io import atomic_write_text

        atomic_write_text(root / "table.md", text)
        atomic_write_text(root / "table.json", json.dumps(table, indent=2))
    return text


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dreamfields.sweep", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[], help="config file(s), in order (repeatable)")
    parser.add_argument("--out", default="runs/dreamfields_sweep", help="output root")
    parser.add_argument("--label", default=None, help="table row name (default: the last config's stem)")
    parser.add_argument("--captions", default=None, help="caption file (default: the shipped 153 OC-COCO captions)")
    parser.add_argument("--no-normalize", action="store_true", help="use captions as written (shapeworld)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds per caption (Table 4.1: 0 1)")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="number of captions")
    parser.add_argument("--shard", default=None, help="INDEX/COUNT (default: from RANK/WORLD_SIZE or SLURM)")
    parser.add_argument("--collect", action="store_true", help="only rewrite the table from existing results")
    args, extra = parser.parse_known_args(argv)
    if args.collect:
        print(collect(args.out))
        return
    if not args.config:
        parser.error("give at least one --config")
    label = args.label or Path(args.config[-1]).stem
    run_sweep(args.config, args.out, label, args.captions, not args.no_normalize, args.seeds, args.start, args.limit,
              args.shard, extra)
    print(collect(args.out))


if __name__ == "__main__":
    main(sys.argv[1:])
