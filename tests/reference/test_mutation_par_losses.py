"""PAR and the loss helpers at the edges that mutation testing found unguarded (scripts/mutation.py par losses;
benchmarks/RESULTS.md lists the survivors). Expectations come from the numpy reference (numpy_engine.py) or by hand."""

from __future__ import annotations

import numpy as np
import torch

from rs_wsss.model import losses
from rs_wsss.model.par import PAR

from . import numpy_engine as ref
from .conftest import close, np64


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- PAR ------------------------------------------------------------------------------------------------------------
def test_par_on_a_nearly_flat_image_uses_afas_eps():
    """Colour differences of order 1e-8: the neighbours' standard deviation is then of the order of AFA's eps (1e-8
    in |I_n − I_p| / (std + 1e-8)), so the affinities, and the refined CAM, depend on its exact value."""
    g = _g(30)
    img, c = 1e-8 * torch.rand(2, 3, 6, 7, generator=g), torch.rand(2, 2, 3, 4, generator=g)
    out = PAR([1, 2], iters=2)(img, c)
    for b in range(2):
        assert close(out[b], ref.par(np64(img[b]), np64(c[b]), [1, 2], 2))
    # the margin: the colour term matters here (a flat image, zero differences, would refine differently)
    flat = ref.par(np.zeros((3, 6, 7)), np64(c[0]), [1, 2], 2)
    assert np.abs(flat - np64(out[0])).max() > 1e-3


def test_par_sparse_channels_and_a_batch_apart_from_the_active_count():
    """Class maps that are 0 in most columns (channel 0 in columns 0–1 only, channel 2 in column 3 only) and one
    empty channel: exactly the empty channel is skipped and stays 0; a batch of 3 with 2 active channels keeps the
    batch and channel axes apart when the skipped channel is put back."""
    g = _g(31)
    img, c = torch.rand(3, 3, 6, 7, generator=g), torch.zeros(3, 3, 4, 5)
    c[:, 0, :, :2] = torch.rand(3, 4, 2, generator=g) + 0.1
    c[:, 2, :, 3] = torch.rand(3, 4, generator=g) + 0.1
    out = PAR([1, 2], iters=2)(img, c)
    assert out.shape == (3, 3, 6, 7)
    for b in range(3):
        assert close(out[b], ref.par(np64(img[b]), np64(c[b]), [1, 2], 2))
    assert float(out[:, 1].abs().max()) == 0.0 and float(out[:, 0].abs().min()) > 0.0


def test_par_neighbours_layout():
    """neighbours(x) is (B, C, 8·len(dilations), H, W): entry k is x shifted by AFA's k-th offset, replicate-padded."""
    x = torch.rand(2, 3, 4, 5, generator=_g(32))
    dilations = [1, 2]
    got = PAR(dilations, iters=1).neighbours(x)
    offsets = [(i * d, j * d) for d in dilations for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)]
    assert got.shape == (2, 3, len(offsets), 4, 5)
    xn = np64(x)
    for k, (dy, dx) in enumerate(offsets):
        rows = np.clip(np.arange(4) + dy, 0, 3)
        cols = np.clip(np.arange(5) + dx, 0, 4)
        assert close(got[:, :, k], xn[:, :, rows][:, :, :, cols])


def test_par_keeps_no_state_and_no_gradients():
    """The positional term is derived from the dilations, so it is a buffer that checkpoints do not carry (the state
    dict is empty); PAR builds targets: its output has no graph even when its inputs have one."""
    par = PAR([1, 2, 4], iters=1)
    assert "pos" in dict(par.named_buffers()) and par.state_dict() == {}
    img = torch.rand(1, 3, 5, 6, generator=_g(33)).requires_grad_()
    c = torch.rand(1, 2, 5, 6, generator=_g(34)).requires_grad_()
    out = par(img, c)
    assert not out.requires_grad and out.grad_fn is None


# ---- affinity labels -------------------------------------------------------------------------------------------------
def test_affinity_labels_default_radius_is_afas_eight():
    """Without ``radius`` the window is AFA's and WeCLIP's 8 tokens: on a 10×11 grid pairs 9 or more tokens apart
    are ignored."""
    lab = torch.randint(0, 3, (1, 10, 11), generator=_g(35))
    got = losses.affinity_labels(lab, (10, 11), 255)
    assert np.array_equal(got[0].numpy(), ref.affinity_labels(lab[0].numpy(), (10, 11), 8))
    assert int(got[0, 0, 8]) != 255 and int(got[0, 0, 9]) == 255  # tokens (0, 8) and (0, 9) of the first row
    assert int(got[0, 0, 8 * 11]) != 255 and int(got[0, 0, 9 * 11]) == 255  # (8, 0) and (9, 0) of the first column


def test_window_mask_is_built_once_per_grid_and_radius():
    """Every step of a run has the same grid: the mask is cached and shared, not rebuilt; another radius or grid
    gets its own."""
    a = losses.window_mask((6, 7), 2)
    assert losses.window_mask((6, 7), 2) is a
    assert losses.window_mask((6, 7), 3) is not a and losses.window_mask((7, 6), 2) is not a
    want = ref.affinity_labels(np.zeros((6, 7), np.int64), (6, 7), 2) != 255  # all one label: 1 exactly in the window
    assert np.array_equal(a.numpy(), want)
