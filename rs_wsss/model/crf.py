"""Dense CRF post-processing (Krähenbühl & Koltun 2011) through pydensecrf2; off with one warning when missing."""

from __future__ import annotations

import logging

import numpy as np

from ..config import InferConfig

log = logging.getLogger("rs_wsss")
_warned = False


def crf_available() -> bool:
    """Whether pydensecrf2 imports (the ``crf`` extra)."""
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def crf_refine(image: np.ndarray, probs: np.ndarray, cfg: InferConfig) -> np.ndarray:
    """Image uint8 (H, W, 3), probs float (K, H, W) → refined probs (K, H, W); unchanged if pydensecrf2 is missing."""
    global _warned
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_softmax
    except ImportError:
        if not _warned:
            log.warning("pydensecrf2 is not installed: dense CRF is off (pip install pydensecrf2)")
            _warned = True
        return probs
    k, h, w = probs.shape
    d = dcrf.DenseCRF2D(w, h, k)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(np.clip(probs, 1e-8, 1.0))))
    d.addPairwiseGaussian(sxy=cfg.crf_gauss_sxy, compat=cfg.crf_gauss_compat)
    d.addPairwiseBilateral(
        sxy=cfg.crf_bilateral_sxy, srgb=cfg.crf_bilateral_srgb, rgbim=np.ascontiguousarray(image),
        compat=cfg.crf_bilateral_compat,
    )
    return np.asarray(d.inference(cfg.crf_iters), dtype=np.float32).reshape(k, h, w)


_pool = None
_pool_size = 0


def crf_workers(requested: int, batch: int) -> int:
    """``infer.crf_workers`` → processes: 0 (automatic) is one per two cores, at most one per tile of a batch; 1 is
    in-process. On a 2-core machine automatic is 1: torch already uses both cores and a worker would only contend."""
    if requested > 0:
        return requested
    import os

    return max(1, min(batch, (os.cpu_count() or 1) // 2))


def crf_refine_batch(images: np.ndarray, probs: np.ndarray, cfg: InferConfig, workers: int = 1) -> np.ndarray:
    """:func:`crf_refine` of every tile of a batch: images uint8 (B, H, W, 3), probs (B, K, H, W).

    With ``workers`` > 1 the tiles are refined in parallel in a pool of worker processes (spawned once and kept: the
    CRF holds the GIL, so threads would not run in parallel). Each tile is the same call with the same inputs as in
    process, so the results are identical; the cost is one process start per worker (about a second, once) and a
    copy of each tile's inputs and output through a pipe (a few MB per 512 px tile)."""
    global _pool, _pool_size
    if workers <= 1 or len(probs) <= 1 or not crf_available():
        return np.stack([crf_refine(img, p, cfg) for img, p in zip(images, probs)])
    if _pool is None or _pool_size != workers:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        if _pool is not None:
            _pool.shutdown()
        # spawn: the parent holds torch's thread pools, which a fork must not inherit
        _pool, _pool_size = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")), workers
    return np.stack(list(_pool.map(crf_refine, images, probs, [cfg] * len(probs))))
