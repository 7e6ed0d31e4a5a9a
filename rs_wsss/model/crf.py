"""Dense CRF post-processing (Krähenbühl & Koltun 2011) through pydensecrf2; off with one warning when missing."""

from __future__ import annotations

import logging

import numpy as np

from ..config import InferConfig

log = logging.getLogger("rs_wsss")
_warned = False


def crf_available() -> bool:
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def crf_refine(image: np.ndarray, probs: np.ndarray, cfg: InferConfig) -> np.ndarray:
    """image uint8 (H, W, 3), probs float (K, H, W) → refined probs (K, H, W); unchanged if pydensecrf2 is missing."""
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
        sxy=cfg.crf_bilateral_sxy, srgb=cfg.crf_bilateral_srgb, rgbim=np.ascontiguousarray(image), compat=cfg.crf_bilateral_compat
    )
    return np.asarray(d.inference(cfg.crf_iters), dtype=np.float32).reshape(k, h, w)
