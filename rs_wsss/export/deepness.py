"""The metadata QGIS Deepness reads from an ONNX model's ``custom_metadata_map`` (every value JSON-encoded, strings
included), and rs-wsss's own entry that lets ``segment --model model.onnx`` run the file without the checkpoint.

Facts from Deepness's source (``src/deepness/processing/models/model_base.py``) and its documentation
(``docs/source/creators/creators_add_metadata_to_model.rst``): ``model_type`` "Segmentor"; ``class_names``
``{"0": "background", 1: …}`` with ids contiguous from 0; ``resolution`` in cm/px; the code reads ``tile_size`` while
the documentation and its tool write ``tiles_size`` (both are written); ``tiles_overlap`` in percent (an int);
``standardization_mean``/``standardization_std`` per channel, applied after dividing the raw values by 255;
``seg_thresh`` (probabilities below it are zeroed before the argmax: 0 keeps rs-wsss's plain argmax) and
``seg_small_segment`` (px; 0: off, as rs-wsss's ``--min-area 0``). Deepness does not read colours; ``class_colors``
carries them for other readers.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from typing import Any

from ..classes import ClassSet, color_hex
from ..errors import RsWsssError

RS_WSSS_KEY = "rs_wsss"  # rs-wsss's own entry: config, class set, normalisation, identity
CARD_KEY = "stac_mlm"  # the STAC MLM model card (``card``), so it travels inside the file


def standardization(norms: Mapping[str, Mapping[str, list[float]]]) -> tuple[list[float], list[float]]:
    """Deepness's mean/std that turn ``v / 255`` into rs-wsss's stretch ``(v - low) / (high - low)``:
    mean = low / 255, std = (high - low) / 255 per band, from the training scenes' statistics (their median when
    the scenes differ; 8-bit scenes give 0 and 1). No statistics: 8-bit (0, 1)."""
    if not norms:
        return [0.0] * 3, [1.0] * 3
    lows = [statistics.median(n["low"][b] for n in norms.values()) for b in range(3)]
    highs = [statistics.median(n["high"][b] for n in norms.values()) for b in range(3)]
    return [lo / 255 for lo in lows], [max(hi - lo, 1e-6) / 255 for lo, hi in zip(lows, highs)]


def deepness_metadata(class_set: ClassSet, tile: int, overlap: float, resolution_cm: float,
                      norms: Mapping[str, Mapping[str, list[float]]], own: Mapping[str, Any]) -> dict[str, str]:
    """Key → JSON text for the ONNX ``metadata_props``; ``own`` is rs-wsss's entry (config, class set …)."""
    mean, std = standardization(norms)
    values: dict[str, Any] = {
        "model_type": "Segmentor",
        "class_names": {i: name for i, name in enumerate(class_set.names)},
        "class_colors": {i: color_hex(c) for i, c in enumerate(class_set.colors)},
        "resolution": round(float(resolution_cm), 4),
        "tile_size": int(tile), "tiles_size": int(tile),
        "tiles_overlap": int(round(overlap * 100)),
        "standardization_mean": mean, "standardization_std": std,
        "seg_thresh": 0.0, "seg_small_segment": 0,
        RS_WSSS_KEY: dict(own),
    }
    return {k: json.dumps(v) for k, v in values.items()}


def set_metadata(proto: Any, meta: Mapping[str, str]) -> None:
    """Make ``meta`` the whole of ``proto``'s ``metadata_props``: tools leave plain-text entries there (ONNX
    Runtime's quantiser writes ``onnx.quant.pre_process``), and every value must be JSON for Deepness's readers."""
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(custom: Mapping[str, str], source: str = "model.onnx") -> dict[str, Any]:
    """A ``custom_metadata_map`` (from onnxruntime or onnx) decoded as Deepness decodes it.

    Raises:
        RsWsssError: the file was not written by ``rs-wsss export`` (no rs-wsss entry or not JSON).
    """
    out = {}
    for key, value in custom.items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            if key in (RS_WSSS_KEY, CARD_KEY, "class_names", "tile_size", "standardization_mean"):
                raise RsWsssError(f"{source}: its metadata '{key}' is not JSON; export it again with rs-wsss export"
                                  ) from None
    if RS_WSSS_KEY not in out:
        raise RsWsssError(f"{source} was not written by rs-wsss export (no '{RS_WSSS_KEY}' metadata); "
                          "export the checkpoint with rs-wsss export model.pt -o model.onnx")
    return out
