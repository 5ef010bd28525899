"""Mini k-means in torch (Lloyd iterations, k-means++-lite seeding), CPU or CUDA: GMP-ATL's multi-scale clustering.

Deterministic for a given ``seed``; empty clusters are re-seeded from the points farthest from their centroid.
Distances are computed in chunks so that 60k frames x 4096 centroids fit in modest memory.
"""

from __future__ import annotations

import torch


def _assign(x: torch.Tensor, c: torch.Tensor, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid index and squared distance for every row of ``x``."""
    idx, dist = [], []
    c_sq = (c * c).sum(1)
    for s in range(0, x.shape[0], chunk):
        xs = x[s : s + chunk]
        d = (xs * xs).sum(1, keepdim=True) - 2.0 * xs @ c.T + c_sq[None]
        m, i = d.min(1)
        idx.append(i)
        dist.append(m.clamp(min=0))
    return torch.cat(idx), torch.cat(dist)


def kmeans(x: torch.Tensor, k: int, iters: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the rows of ``x [N, D]`` into ``k`` clusters: ``(centroids [k, D], assignment [N])``.

    ``k`` larger than the number of distinct points is an error (a clustering that cannot exist).
    """
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty [N, D] tensor, got shape {tuple(x.shape)}")
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in [1, {n}] (number of points)")
    x = x.float()
    g = torch.Generator(device="cpu").manual_seed(seed)
    # seeding: k-means++ on a subsample for small k, random distinct points for large k (as faiss does)
    if k <= 64:
        sub = x[torch.randperm(n, generator=g)[: min(n, 20 * k)].to(x.device)]
        cents = [sub[int(torch.randint(sub.shape[0], (1,), generator=g))]]
        for _ in range(1, k):
            _, d = _assign(sub, torch.stack(cents))
            p = (d / d.sum()).cpu() if float(d.sum()) > 0 else torch.full((sub.shape[0],), 1.0 / sub.shape[0])
            cents.append(sub[int(torch.multinomial(p, 1, generator=g))])
        c = torch.stack(cents)
    else:
        c = x[torch.randperm(n, generator=g)[:k].to(x.device)].clone()
    assign = None
    for _ in range(iters):
        new_assign, dist = _assign(x, c)
        sums = torch.zeros_like(c).index_add_(0, new_assign, x)
        counts = torch.bincount(new_assign, minlength=k).to(x.dtype)
        empty = counts == 0
        c = torch.where(empty[:, None], c, sums / counts.clamp(min=1)[:, None])
        if bool(empty.any()):  # re-seed empty clusters with the worst-fitting points
            far = torch.argsort(dist, descending=True)[: int(empty.sum())]
            c[empty] = x[far]
        if assign is not None and torch.equal(new_assign, assign):
            break
        assign = new_assign
    assign, _ = _assign(x, c)
    return c, assign


def multiscale_kmeans(x: torch.Tensor, scales=(64, 512, 4096), iters: int = 30, seed: int = 0):
    """One clustering per scale (GMP-ATL: 64, 512 and 4096 centres); ``k`` is capped at the number of points."""
    return [kmeans(x, min(k, x.shape[0]), iters=iters, seed=seed + i) for i, k in enumerate(scales)]
