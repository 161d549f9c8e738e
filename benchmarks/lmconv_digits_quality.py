"""LMConv quality on the embedded 8×8 digits (binarized): raster-only model vs 8 S-curve orders.

Trains two identical networks (default F=32, nr_resnet=1; Adam 1e-3, batch 32, clip 2e6) for the same number of
steps on one CPU thread: PixelCNN++-style raster order only (K=1), and order-agnostic over the 8 S-curve
variants (K=8). Prints test NLL (nats per 64-pixel image) for single orders and the order ensemble,
and the conditional NLL of hidden halves (max-context vs adversarial order), and writes completion
grids (Obs | raster model | S-curve model | GT, top half hidden).

    python benchmarks/lmconv_digits_quality.py --steps 600 --filters 32 --nr-resnet 1 --out lmconv/assets

``--eval-every N`` also prints the test NLL of both models every N steps (the learning curves: raster
order for the raster model, single order and 8-order ensemble for the S-curve model).
"""

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Callback, Trainer, seed_everything

from lmconv.data import DigitsDataModule
from lmconv.imaging import image_grid, levels_to_uint8, save_png
from lmconv.sampling import complete
from lmconv.system import LMConvSystem, region_mask


class TestCurve(Callback):
    """Test NLL every ``every`` optimiser steps (printed as it goes; kept in ``rows``)."""

    def __init__(self, dm: DigitsDataModule, every: int, name: str):
        self.dm, self.every, self.name, self.rows = dm, every, name, []
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every <= 0 or step % self.every:
            return
        pl_module.eval()
        m = evaluate(pl_module, self.dm)
        pl_module.train()
        ens = next((v for k, v in m.items() if k.startswith("nll_nats_ens")), float("nan"))
        self.rows.append((step, m["nll_nats_1order"], ens))
        print(f"[curve] {self.name} step {step}: 1 order {m['nll_nats_1order']:.3f}, ensemble {ens:.3f} nats "
              f"({time.perf_counter() - self.t0:.0f} s)",
              flush=True)


def train(family: str, variants: list[int], steps: int, dm: DigitsDataModule, filters: int = 32,
          nr_resnet: int = 1, eval_every: int = 0) -> tuple[LMConvSystem, float]:
    seed_everything(1, verbose=False)
    system = LMConvSystem(image_size=(8, 8), likelihood="binary", filters=filters, nr_resnet=nr_resnet,
                          order_family=family, train_variants=variants, lr=1e-3, completion_regions=["T", "B", "L"], num_samples=0,
                          num_completions=0)
    trainer = Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                      gradient_clip_val=2e6, gradient_clip_algorithm="norm",
                      callbacks=[TestCurve(dm, eval_every, family)] if eval_every else None)
    t0 = time.perf_counter()
    trainer.fit(system, train_dataloaders=dm.train_dataloader())
    return system.eval(), time.perf_counter() - t0


@torch.no_grad()
def evaluate(system: LMConvSystem, dm: DigitsDataModule) -> dict[str, float]:
    sums, n = {}, 0
    for batch in dm.test_dataloader():
        for k, v in system.evaluation_metrics(batch).items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(batch)
        n += len(batch)
    return {k: v / n for k, v in sums.items()}


@torch.no_grad()
def raster_nll_of(system: LMConvSystem, dm: DigitsDataModule) -> float:
    """NLL of an S-curve model under the (never trained) raster order: a novel order."""
    from lmconv.orders import raster

    tot, n = 0.0, 0
    for batch in dm.test_dataloader():
        tot -= float(system.model.log_prob(batch, raster(8, 8)).sum())
        n += len(batch)
    return tot / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--nr-resnet", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("lmconv/assets"))
    ap.add_argument("--eval-every", type=int, default=0, help="print both test NLL curves every N steps (0: off)")
    ap.add_argument("--only", choices=["raster", "s_curve"], default=None,
                    help="train and report one of the two models (run both in parallel processes, one core each)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    dm = DigitsDataModule("binary", batch_size=32, seed=0)
    dm.setup()
    if args.only:
        variants = [0] if args.only == "raster" else list(range(8))
        system, t = train(args.only, variants, args.steps, dm, args.filters, args.nr_resnet, args.eval_every)
        m = evaluate(system, dm)
        print(f"\n{args.only} model, {args.steps} steps ({t:.0f} s, 1 thread): "
              + ", ".join(f"{k} {v:.3f}" for k, v in m.items() if k.startswith(("nll", "cond"))))
        return
    raster_sys, t_r = train("raster", [0], args.steps, dm, args.filters, args.nr_resnet, args.eval_every)
    s_sys, t_s = train("s_curve", list(range(8)), args.steps, dm, args.filters, args.nr_resnet, args.eval_every)
    m_r, m_s = evaluate(raster_sys, dm), evaluate(s_sys, dm)
    print(f"\nbinarized 8x8 digits, F={args.filters}, nr_resnet={args.nr_resnet}, {args.steps} steps each, "
          f"test set of {len(dm.test_set)} images "
          f"(train {t_r:.0f} s raster, {t_s:.0f} s S-curve, 1 thread)\n")
    print("| model | evaluation | test NLL (nats/image) | bpd |")
    print("|---|---|---|---|")
    bpd = lambda v: v / (64 * math.log(2))  # noqa: E731
    rows = [("raster (K=1)", "raster order", m_r["nll_nats_1order"]),
            ("S-curve (K=8)", "1 order (variant 0)", m_s["nll_nats_1order"]),
            ("S-curve (K=8)", "8-order ensemble", m_s["nll_nats_ens8"]),
            ("S-curve (K=8)", "mean of the 8 single orders", float(np.mean([m_s[f"bpd_order{k}"] for k in range(8)]))
             * 64 * math.log(2)),
            ("S-curve (K=8)", "raster order (novel)", raster_nll_of(s_sys, dm))]
    for name, ev, v in rows:
        print(f"| {name} | {ev} | {v:.2f} | {bpd(v):.4f} |")
    print("\n| model | region | max-context order (nats) | adversarial order (nats) |")
    print("|---|---|---|---|")
    for name, m in (("raster (K=1)", m_r), ("S-curve (K=8)", m_s)):
        for reg in ("T", "B", "L"):
            print(f"| {name} | {reg} | {m[f'cond_{reg}_maxctx']:.2f} | {m[f'cond_{reg}_adv']:.2f} |")
    gt = next(iter(dm.test_dataloader()))[:8]
    hidden = region_mask("T", 8, 8)
    g = torch.Generator().manual_seed(0)
    c_r = complete(raster_sys.model, gt, hidden, generator=g)
    c_s = complete(s_sys.model, gt, hidden, generator=g)
    obs = gt.clone()
    obs[:, :, hidden] = 0
    tiles = np.stack([levels_to_uint8(t, 2) for t in (obs, c_r, c_s, gt)], 1).reshape(-1, 8, 8, 1)
    name = f"digits_completion_top_F{args.filters}_nr{args.nr_resnet}_{args.steps}.png"
    path = save_png(args.out / name, image_grid(tiles, ncols=4, upscale=8, pad=2))
    print(f"\ncompletion grid (rows: Obs | raster model | S-curve model | GT): {path}")


if __name__ == "__main__":
    main()
