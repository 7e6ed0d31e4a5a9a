"""Zero-shot segmentation (``WSSS.zero_shot``: eq 9 → USR on the frozen tokens, multi-scale, flips) against the numpy
reference. The frozen priors' outputs are the reference's inputs (the tiny random CLIP and DINO), so every step after
them is computed independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rs_wsss.classes import load_class_set
from rs_wsss.config import tiny_config
from rs_wsss.model.wsss import WSSS
from rs_wsss.priors import build_priors

from .conftest import close
from .expected import expected_zero_shot


@pytest.fixture(scope="module")
def priors():
    return build_priors(tiny_config().priors)


@pytest.mark.parametrize(("overrides", "scales", "flip"), [
    (["usr.alpha=3"], [1.0], False),
    (["usr.use_dino=false", "usr.n0=3", "usr.alpha=2"], [0.75, 1.25], True),
    (["usr.enabled=false"], [1.0], True),
])
def test_zero_shot_matches_the_reference(priors, shared_data, overrides, scales, flip):
    """Real Potsdam crops. The tiny random CLIP attends almost uniformly, so at α = 3 the diffused maps of a 3×4
    token grid span only ~1e-5: the min–max that follows needs USR in float64 (it was float32 and off by 0.67)."""
    torch.manual_seed(0)
    model = WSSS(tiny_config(overrides), load_class_set("potsdam"), *priors).eval()
    img = np.asarray(Image.open(shared_data / "potsdam/images/2_10_0_0_512_512.png").convert("RGB"))
    images = torch.from_numpy(np.stack([img[:48, :56], img[300:348, 200:256]])).permute(0, 3, 1, 2).float() / 255
    tags = torch.tensor([[1, 0, 1, 0, 1], [0, 1, 1, 0, 0]], dtype=torch.float32)
    got = model.zero_shot(images, tags, scales=scales, flip=flip)
    assert close(got, expected_zero_shot(model, images, tags, scales, flip))
    assert float(got[0, [2, 4]].max()) == 0.0  # untagged classes have probability 0
    untagged = model.zero_shot(images, None, scales=scales, flip=flip)
    assert close(untagged, expected_zero_shot(model, images, None, scales, flip))
