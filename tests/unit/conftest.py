"""Fixtures shared by the engine tests (test_engine_*.py, test_model_fidelity.py): a private knowledge-base cache, the
tiny random priors and two real 64 px Potsdam crops with their tags."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rs_wsss.config import tiny_config
from rs_wsss.priors import build_priors

CROPS = [(0, 0), (256, 192)]


@pytest.fixture(scope="module")
def kb_cache(tmp_path_factory):
    """Encoded knowledge bases go to a temporary cache, not ~/.cache (use with ``pytest.mark.usefixtures``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RS_WSSS_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def priors():
    """The tiny CLIP and DINO priors with random weights (built once per module)."""
    return build_priors(tiny_config().priors)


@pytest.fixture(scope="module")
def batch(shared_data) -> tuple[torch.Tensor, torch.Tensor]:
    """Two real 64 px Potsdam crops, tags from the index mask (0 = ignore, v → class v−1 of the potsdam set for
    v = 1..5; 6 = clutter/background is the background channel, never a tag)."""
    img = np.asarray(Image.open(shared_data / "potsdam/images/2_10_0_0_512_512.png").convert("RGB"))
    mask = np.asarray(Image.open(shared_data / "potsdam/masks/2_10_0_0_512_512.png"))
    imgs = np.stack([img[r : r + 64, c : c + 64] for r, c in CROPS]).transpose(0, 3, 1, 2).astype(np.float32) / 255
    tags = np.zeros((len(CROPS), 5), np.float32)
    for i, (r, c) in enumerate(CROPS):
        for v in np.unique(mask[r : r + 64, c : c + 64]):
            if 0 < v < 6:
                tags[i, v - 1] = 1
    assert tags.sum(1).min() >= 1 and (tags[0] != tags[1]).any()  # real, differing tags
    return torch.from_numpy(imgs), torch.from_numpy(tags)
