"""Automatic stand-ins for ZeroForge's human study (specs/zeroforge.md §6.2; not in the paper, [S]).

* CLIP R-precision (R@1): hard voxels rendered from the 4 evaluation views, CLIP image embeddings
  averaged over the views, ranked against every query of the run (optionally plus distractors), one
  pool per prompt template, R@1 averaged over the templates (A10). Computed with the training CLIP
  and with a held-out CLIP (to detect adversarial fitting to the training encoder).
* Automatic 2AFC with the held-out CLIP as the judge: 65 virtual participants × 17 pairs.
* Mode-collapse index: mean pairwise voxel IoU between the z = 0 shapes of different queries (lower
  is better) and the mean CLIP cosine between their render embeddings.
* Retention: voxel IoU between the ZeroForge and CLIP-Forge z = 0 shapes of the in-distribution queries.
"""

import itertools
import random
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from common.metrics import r_precision
from common.priors.clip import CLIPModel
from zeroforge.autoencoder import compute_iou
from zeroforge.clip_renders import encode_renders
from zeroforge.geometry import eval_views
from zeroforge.renderer import VoxelEARenderer
from zeroforge.visualize import render_eval_views

__all__ = ["shape_embeddings", "template_text_embeddings", "r_at_1", "mean_pairwise_iou", "mean_pairwise_cos", "auto_2afc", "query_metrics",
           "evaluate_samples"]


@torch.no_grad()
def shape_embeddings(clip: CLIPModel, renderer: VoxelEARenderer, voxels: Tensor, normalize: bool = True,
                     chunk: int = 16) -> Tensor:
    """``[B, D]`` unit-norm CLIP embeddings of ``[B, N, N, N]`` voxels, averaged over the 4 evaluation views."""
    V = len(eval_views()[0])
    out = []
    for start in range(0, voxels.shape[0], chunk):
        images = render_eval_views(renderer, voxels[start:start + chunk])
        out.append(encode_renders(clip, images, normalize, views_per_sample=V))
    return torch.cat(out)


@torch.no_grad()
def template_text_embeddings(clip: CLIPModel, words: Sequence[str], templates: Sequence[str]) -> Tensor:
    """``[n_templates, len(words), D]`` text embeddings of every word under every template."""
    return torch.stack([clip.encode_text([t.format(w) for w in words]) for t in templates])


def r_at_1(shape_emb: Tensor, text_emb: Tensor, true_idx: Tensor) -> Tensor:
    """``[B]`` bool: is each shape's own query the top match? ``text_emb`` ``[n_templates, M, D]``; averaged over templates."""
    hits = torch.stack([r_precision(shape_emb, t.to(shape_emb), true_idx).correct.float() for t in text_emb])
    return hits.mean(0)  # fraction of templates under which the sample is retrieved correctly


def _pairs(k: int):
    pairs = list(itertools.combinations(range(k), 2))
    return torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])


def mean_pairwise_iou(voxels: Tensor) -> float:
    """Mean IoU over all pairs of ``[k, N, N, N]`` shapes (NaN for k < 2)."""
    if voxels.shape[0] < 2:
        return float("nan")
    a, b = _pairs(voxels.shape[0])
    return float(compute_iou(voxels[a] > 0.5, voxels[b] > 0.5).mean())


def mean_pairwise_cos(emb: Tensor) -> float:
    """Mean cosine over all pairs of ``[k, D]`` embeddings (NaN for k < 2)."""
    if emb.shape[0] < 2:
        return float("nan")
    a, b = _pairs(emb.shape[0])
    return float((F.normalize(emb[a].float(), dim=-1) * F.normalize(emb[b].float(), dim=-1)).sum(-1).mean())


def auto_2afc(shape_emb: Tensor, query_of: Tensor, text_emb: Tensor, participants: int = 65, pairs: int = 17,
              seed: int = 0, queries_subset: Optional[Sequence[int]] = None) -> Dict[str, float]:
    """Automatic 2AFC (§6.2 item 2): the judge is right if ``cos(q_a, shape_a) > cos(q_a, shape_b)`` (a tie counts ½).

    Args:
        shape_emb: ``[S, D]`` sample embeddings; ``query_of`` ``[S]`` their query index.
        text_emb: ``[k, D]`` query embeddings.
        participants, pairs: virtual participants and judgements each (65 × 17 as in the paper's study).
        queries_subset: draw ``q_a`` only from these (e.g. the novel queries); distractors come from all others.

    Returns:
        ``{"2afc": mean %, "2afc_std": std % across participants}``.
    """
    k = text_emb.shape[0]
    if k < 2:
        return {"2afc": float("nan"), "2afc_std": float("nan")}
    rng = random.Random(seed)
    sims = F.normalize(text_emb.float(), dim=-1) @ F.normalize(shape_emb.float(), dim=-1).T  # [k, S]
    by_query = [torch.nonzero(query_of == q).flatten().tolist() for q in range(k)]
    pool_a = list(queries_subset) if queries_subset is not None else list(range(k))
    scores = []
    for _ in range(participants):
        right = 0.0
        for _ in range(pairs):
            qa = rng.choice(pool_a)
            qb = rng.choice([q for q in range(k) if q != qa])  # A16: uniform among the other queries
            sa, sb = rng.choice(by_query[qa]), rng.choice(by_query[qb])
            right += 1.0 if sims[qa, sa] > sims[qa, sb] else 0.5 if sims[qa, sa] == sims[qa, sb] else 0.0  # a tie is a coin flip
        scores.append(100.0 * right / pairs)
    t = torch.tensor(scores)
    return {"2afc": float(t.mean()), "2afc_std": float(t.std())}


def _groups(queries: Sequence[str], novel: Sequence[str]) -> Dict[str, List[int]]:
    groups = {"": list(range(len(queries)))}
    if novel:
        groups["_novel"] = [i for i, q in enumerate(queries) if q in novel]
        groups["_seen"] = [i for i, q in enumerate(queries) if q not in novel]
    return {k: v for k, v in groups.items() if v}


@torch.no_grad()
def evaluate_samples(clips: Dict[str, CLIPModel], renderer: VoxelEARenderer, voxels: Tensor, query_of: Tensor,
                     queries: Sequence[str], novel: Sequence[str] = (), templates: Sequence[str] = ("a {}",),
                     distractors: Sequence[str] = (), normalize: bool = True, zero_index: Optional[Tensor] = None,
                     seed: int = 0) -> Dict[str, float]:
    """All §6.2 metrics for ``S`` samples per query.

    Args:
        clips: ``{"train": CLIP, "heldout": CLIP}`` (either may be absent); metrics are suffixed by the key.
        voxels: ``[k·S, N, N, N]`` hard voxels; ``query_of`` ``[k·S]`` the query of each sample.
        zero_index: ``[k]`` rows holding each query's z = 0 sample (for the collapse index).
        distractors: extra words in the R@1 pools (e.g. the 13 ShapeNet classes).
    """
    pool = list(queries) + [d for d in distractors if d not in queries]
    out: Dict[str, float] = {}
    groups = _groups(queries, novel)
    for name, clip in clips.items():
        emb = shape_embeddings(clip, renderer, voxels, normalize)
        text = template_text_embeddings(clip, pool, templates)  # [n_t, M, D]
        hits = r_at_1(emb, text, query_of)
        mean_text = F.normalize(text[:, :len(queries)].mean(0), dim=-1)
        for g, idx in groups.items():
            mask = torch.isin(query_of, torch.tensor(idx))
            out[f"r_precision{g}/{name}"] = float(hits[mask].mean())
            out.update({f"{k}{g}/{name}": v for k, v in auto_2afc(emb, query_of, mean_text, seed=seed, queries_subset=idx).items()})
        if zero_index is not None:
            out[f"collapse_cos/{name}"] = mean_pairwise_cos(emb[zero_index])
    if zero_index is not None:
        out["collapse_iou"] = mean_pairwise_iou(voxels[zero_index])
    return out


def query_metrics(clip: CLIPModel, renderer: VoxelEARenderer, voxels: Tensor, queries: Sequence[str],
                  novel: Sequence[str] = (), templates: Sequence[str] = ("a {}",), normalize: bool = True) -> Dict[str, float]:
    """Validation metrics of one (z = 0) shape per query with one CLIP: R@1 (overall / novel / seen), 2AFC, collapse."""
    k = torch.arange(len(queries))
    res = evaluate_samples({"val": clip}, renderer, voxels, k, queries, novel, templates, (), normalize, zero_index=k)
    return {key.replace("/val", ""): v for key, v in res.items()}
