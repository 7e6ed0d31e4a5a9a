"""The exported graph: CLIP image tower (every block tapped) + adapter (eqs 5–6) + decoder (eqs 7–8) + softmax, one
fixed tile, dynamic batch.

Input ``image`` (B, 3, T, T) float32 is what Deepness feeds: raw band values / 255, then ``(x - mean) / std`` with the
metadata's ``standardization_mean``/``standardization_std``. Those two lists are chosen (``deepness.standardization``)
so that the result equals rs-wsss's own per-band stretch ``(v - low) / (high - low)``; the graph clips it to [0, 1]
as ``raster.io.Scene.read`` does, then applies CLIP's mean/std inside ``ClipPrior.forward``. Output ``probabilities``
(B, K, T, T): the decoder's softmax (``WSSS.predict`` at one scale, no flip). Decoder inference never reads the class
text embeddings (eq 9 is for CAMs), so none are in the graph; multi-scale testing and the dense CRF stay in rs-wsss.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx
    import torch

log = logging.getLogger("rs_wsss")
INPUT, OUTPUT = "image", "probabilities"
OPSET = 18


def tile_module(model: Any) -> Any:
    """``model`` (a ``WSSS``) as a module of one input: a standardised tile → probabilities (single scale)."""
    from torch import nn

    class TileGraph(nn.Module):
        def __init__(self, wsss: Any) -> None:
            super().__init__()
            self.wsss = wsss

        # (B, 3, T, T) → (B, K, T, T): WSSS.predict at one scale, T a patch multiple
        def forward(self, image: torch.Tensor) -> torch.Tensor:
            m = self.wsss
            tokens = m.clip(image.clamp(0.0, 1.0), need_attn=False).tokens
            logits, _ = m.decoder(any_batch_adapter(m.adapter, tokens), tuple(image.shape[-2:]))
            return logits.softmax(1)

    return TileGraph(model).eval()


def any_batch_adapter(adapter: Any, levels: list[Any]) -> Any:
    """``FeatureAdapter.forward`` (eqs 5–6) as broadcast matmuls over the batch: the same products, but no Python
    loop over images, which tracing would unroll into a graph of one fixed batch size."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    x = torch.stack(levels, 1)  # (B, N, D, h, w)
    b, n, d, h, w = x.shape
    x = x.reshape(b, n, d, h * w)
    hidden = F.gelu(torch.matmul(adapter.hidden_weight, x) + adapter.hidden_bias[:, :, None])  # eq 5, W²
    new = torch.matmul(adapter.out_weight, hidden) + adapter.out_bias[:, :, None]  # eq 5, W¹: (B, N, out, hw)
    cat = new.reshape(b, -1, h * w)  # eq 6's Concat over the levels
    if isinstance(adapter.fuse, nn.Linear):
        return (torch.matmul(adapter.fuse.weight, cat) + adapter.fuse.bias[:, None]).view(b, -1, h, w)
    return adapter.fuse(cat.view(b, -1, h, w))


def export_graph(model: Any, tile: int) -> onnx.ModelProto:
    """Trace ``model`` (a ``WSSS``, float32, CPU) at ``tile`` px with a symbolic batch into an ONNX model (opset 18).

    Raises:
        ValueError: a tile that is not a whole number of CLIP patches (the graph would resize inside).
    """
    import torch

    if tile % model.clip.patch:
        raise ValueError(f"tile {tile} px is not a multiple of the CLIP patch ({model.clip.patch} px)")
    graph = tile_module(model)
    example = torch.rand(2, 3, tile, tile)
    batch = torch.export.Dim("batch", min=1, max=4096)
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet), torch.no_grad():  # the exporter prints its progress steps
            program = torch.onnx.export(graph, (example,), dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
                                        dynamic_shapes=({0: batch},), optimize=True, opset_version=OPSET)
    finally:
        model.clip._pos_cache.clear()  # entries made while tracing hold traced tensors, not real ones
    log.debug("exporter: %s", quiet.getvalue().strip().replace("\n", "; "))
    assert program is not None
    proto = program.model_proto
    if not proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param:  # the exporter fell back to a fixed batch
        raise RuntimeError("the exported graph has a fixed batch size: a batch loop in the model was traced")
    return proto
