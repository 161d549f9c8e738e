"""Throughput of ZeroForge's feed-forward text -> voxels -> mesh inference on CPU (random-init, paper-size models).

    python benchmarks/zeroforge_throughput.py                      # batch 16 at 32³ and 64³
    python benchmarks/zeroforge_throughput.py --batch 8 --resolutions 32 64 128 --threads 2

Models: CLIP ViT-B/32 (random weights, open_clip config; text tower only is used), the CLIP-Forge flow
(128-d, condition 512, hidden 1024, 5 blocks) and decoder (width 128, 5 blocks, ``fc_1`` re-randomised so
that shapes are non-trivial, and the output bias shifted so that about 30 % of the grid is occupied) inside a
:class:`zeroforge.system.ZeroForgeSystem` with its ZeroConv branch (twice the decoder's residual-block cost of
plain CLIP-Forge). One batched pass per repeat: text encoding
(cache cleared) -> ``F⁻¹(z = 0; g(t))`` -> decoding on the ``N³`` grid (chunked) -> ``o > γ`` -> marching
cubes per shape. Prints a markdown table: wall time per batch, shapes/s, and the split between stages.
With ``--coarse-resolution n`` each grid is also decoded coarse-to-fine from ``n³``
(:func:`zeroforge.generator.decode_grid_coarse_to_fine`): extra rows with the fraction of fine points decoded and
the share of voxels that match the dense pass.
Wall times on a shared machine vary with its load; the CPU-time column counts this process only.
"""

import argparse
import os
import time
from typing import Optional

import torch


def build(decode_chunk: Optional[int]):
    from common.priors.clip import CLIPModel
    from zeroforge.autoencoder import OccSimpleDecoder
    from zeroforge.flow import ConditionalRealNVP
    from zeroforge.renderer import VoxelEARenderer
    from zeroforge.system import ZeroForgeSystem

    torch.manual_seed(0)
    decoder = OccSimpleDecoder(128, 128, 5)
    for block in decoder.blocks:
        torch.nn.init.normal_(block.fc_1.weight, std=0.1)
    clip = CLIPModel(name="ViT-B-32", pretrained=None)
    system = ZeroForgeSystem(clip=clip, queries=["chair"], decoder=decoder, flow=ConditionalRealNVP(128, 512, 1024, 5),
                             renderer=VoxelEARenderer(), allow_random_init=True, decode_chunk=decode_chunk)
    system = system.prepare_inference(None)
    calibrate(system)
    return system


@torch.no_grad()
def calibrate(system, occupied: float = 0.3) -> None:
    """Shift ``fc_out``'s bias so that about ``occupied`` of the grid lies above γ (random weights otherwise give
    all-empty or all-full grids, i.e. no surface for marching cubes)."""
    from zeroforge.generator import decode_grid

    cond = system.clip.encode_text(["a chair", "a lamp"])
    o = decode_grid(system.decoder, system.flow.sample(torch.zeros(2, 128), cond), 16)
    system.base_decoder.fc_out.bias -= float(o.quantile(1.0 - occupied)) - system.hparams.gamma


@torch.no_grad()
def run_once(system, prompts, resolution, coarse=None):
    from zeroforge.generator import decode_for_inference, hard_binarize
    from zeroforge.visualize import logits_to_mesh

    system.clip._text_cache.clear()
    t0 = time.perf_counter()
    cond = system.clip.encode_text(prompts)
    t1 = time.perf_counter()
    s = system.flow.sample(torch.zeros(len(prompts), 128), cond)
    logits, n_decoded = decode_for_inference(system.decoder, s, resolution, system.hparams.gamma,
                                             system.hparams.decode_chunk, coarse)
    voxels = hard_binarize(logits, system.hparams.gamma)
    t2 = time.perf_counter()
    meshes = [logits_to_mesh(g, system.hparams.gamma) for g in logits]
    t3 = time.perf_counter()
    return (t1 - t0, t2 - t1, t3 - t2, sum(len(m.faces) for m in meshes) / len(meshes),
            float(n_decoded.float().mean()) / resolution ** 3, voxels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--resolutions", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--coarse-resolution", type=int, nargs="*", default=[],
                    help="also time coarse-to-fine decoding from these coarse grid sizes (e.g. 9 17)")
    ap.add_argument("--decode-chunk", type=int, default=None,
                    help="grid points per decoder call (× batch rows); default: generate()'s, 8192 rows per call")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    system = build(args.decode_chunk)
    prompts = [f"a {w}" for w in ("chair", "table", "lamp", "umbrella", "spoon", "barbell", "boat", "knife")]
    prompts = (prompts * (args.batch // len(prompts) + 1))[:args.batch]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU: {torch.get_num_threads()} torch threads, {os.cpu_count()} cores, load average {load:.1f}; batch {args.batch}")
    print("| grid | decoding | wall s / batch | shapes/s | CPU s / batch | text | flow + decode | marching cubes | "
          "faces/mesh | points decoded | voxels as dense |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for res in args.resolutions:
        dense = None
        for coarse in [None, *[c for c in args.coarse_resolution if c < res]]:
            run_once(system, prompts[:2], res, coarse)  # warm-up
            best = None
            for _ in range(args.repeats):
                c0 = time.process_time()
                w0 = time.perf_counter()
                parts = run_once(system, prompts, res, coarse)
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                if best is None or wall < best[0]:
                    best = (wall, cpu, parts)
            wall, cpu, (t_text, t_dec, t_mc, faces, frac, voxels) = best
            dense = voxels if coarse is None else dense
            agree = float((voxels == dense).float().mean())
            how = "dense" if coarse is None else f"coarse {coarse}³ → fine"
            print(f"| {res}³ | {how} | {wall:.2f} | {args.batch / wall:.1f} | {cpu:.2f} | {t_text:.2f} | {t_dec:.2f} | "
                  f"{t_mc:.2f} | {faces:.0f} | {frac:.1%} (+{(coarse or 0) ** 3 / res ** 3:.1%} coarse) | {agree:.4%} |")


if __name__ == "__main__":
    main()
