"""A standard model card: a STAC Item with the Machine Learning Model extension (MLM v1.5.2), written beside the
checkpoint by ``train`` (``MODEL.pt.stac.json``) and beside the ONNX file by ``export`` (``MODEL.onnx.stac.json``,
and inside the file's metadata); ``rs-wsss info MODEL`` prints it.

``mlm:`` fields: name, architecture, tasks, framework (+ version), accelerator, total parameters, pretrained source,
input (bands, shape, dim order, data type, value scaling), output (shape, classes with colours). STAC 1.1 ``bands``
describe the input bands (MLM requires named bands to be described). Trainable parameters, the priors with their
weights and licences, and the Deepness metadata have no MLM field and are ``rs_wsss:`` fields.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from ..classes import ClassSet, color_hex

MLM = "https://stac-extensions.github.io/mlm/v1.5.2/schema.json"
CLASSIFICATION = "https://stac-extensions.github.io/classification/v1.1.0/schema.json"
PAPER = "Li et al., Leveraging Pretrained Priors for WSSS of Remote Sensing Images"
BAND_NAMES = ("red", "green", "blue")


def ground_resolution_m(crs: Any, transform: Any, width: int, height: int) -> float | None:
    """Ground sample distance in metres of a grid (its pixels' median true area, √m²); None without a CRS."""
    import numpy as np

    from ..raster.areas import pixel_areas_m2

    if crs is None:
        return None
    return float(np.sqrt(np.median(pixel_areas_m2(crs, transform, width, height))))


def architecture(model: Any) -> str:
    """``mlm:architecture``: the CLIP prior's own architecture (its registry spec), then what rs-wsss adds."""
    spec = model.clip.spec
    tiny = ", its narrow test stand-in" if "(tiny)" in model.clip.identifier else ""
    return (f"CLIP {spec.arch} image tower ({spec.name}{tiny}, frozen, every block tapped) + multi-level feature "
            f"adapter + transformer decoder ({PAPER})")


def _priors(model: Any, exported: bool) -> list[dict[str, Any]]:
    """The frozen priors behind the model, with the weights they were loaded from, where those are published and
    their licence: each from the prior's registry spec (``priors/specs.py``), so another prior is named as itself."""
    out = []
    kinds = [("clip", model.clip)] + ([] if exported or model.dino is None else [("dino", model.dino)])
    for kind, prior in kinds:
        random = "random" in prior.identifier
        spec = prior.spec
        out.append({"prior": kind, "model": prior.identifier.split("|")[0], "weights": prior.identifier,
                    "pretrained_on": None if random else f"{spec.name} ({spec.arch}), from {spec.source}",
                    "license": "none (random weights, not a pretrained model)" if random else spec.licence})
    return out


def model_card(model: Any, class_set: ClassSet, cfg: Any, artifact: str | Path, resolution_cm: float | None,
               precision: str, norms: Mapping[str, Mapping[str, list[float]]],
               deepness: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The STAC MLM Item of ``model`` (a ``WSSS``) stored as ``artifact`` (an ``.onnx`` export or a checkpoint).

    ``norms``: the training scenes' stretch statistics (the input's value scaling). ``deepness``: the ONNX metadata
    written with an export (its values JSON text), kept as ``rs_wsss:deepness``.
    """
    import torch

    from .deepness import standardization

    artifact = Path(artifact)
    exported = artifact.suffix.lower() == ".onnx"
    counts = model.param_counts()
    trainable = counts["adapter"] + counts["decoder"] if exported else counts["trainable"]
    total = counts["clip_visual"] + trainable if exported else counts["total"]
    tile = cfg.raster.tile
    priors = _priors(model, exported)
    mean, std = standardization(norms)  # of v / 255: in raw values, low and high - low
    scaling = [{"type": "z-score", "mean": round(m * 255, 6), "stddev": round(s * 255, 6)} for m, s in zip(mean, std)]
    classes = [{"value": i, "name": name, "description": name.replace("_", " "), "color_hint": color_hex(c)[1:]}
               for i, (name, c) in enumerate(zip(class_set.names, class_set.colors))]
    k = len(classes)
    props: dict[str, Any] = {
        "datetime": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "description": f"rs-wsss semantic segmentation of {class_set.name} classes from tile-level tags, "
                       f"{'exported ONNX graph, ' + precision if exported else 'PyTorch checkpoint'}",
        "bands": [{"name": b, "description": f"{b} band of the input raster"} for b in BAND_NAMES],
        "mlm:name": f"rs-wsss-{class_set.name}-{artifact.stem}",
        "mlm:architecture": architecture(model),
        "mlm:tasks": ["semantic-segmentation"],
        "mlm:framework": "ONNX" if exported else "PyTorch",
        "mlm:framework_version": _onnx_version() if exported else torch.__version__.split("+")[0],
        "mlm:accelerator": "amd64",
        "mlm:accelerator_constrained": False,
        "mlm:total_parameters": int(total),
        "mlm:pretrained": True,
        "mlm:pretrained_source": "; ".join(f"{p['prior']}: {p['pretrained_on'] or 'random weights'}" for p in priors),
        "mlm:batch_size_suggestion": max(1, int(cfg.infer.batch) or 2),
        "mlm:input": [{
            "name": "RGB tile",
            "bands": list(BAND_NAMES),
            "input": {"shape": [-1, 3, tile, tile], "dim_order": ["batch", "bands", "height", "width"],
                      "data_type": "float32"},
            "description": "raw band values v; value_scaling gives (v - low) / (high - low) per band (Deepness: "
                           "v / 255 then standardization_mean/std), clipped to [0, 1] inside the model, which then "
                           "applies CLIP's own mean/std",
            "value_scaling": scaling,
            "resize_type": None,
        }],
        "mlm:output": [{
            "name": "class probabilities",
            "tasks": ["semantic-segmentation"],
            "result": {"shape": [-1, k, tile, tile], "dim_order": ["batch", "class", "height", "width"],
                       "data_type": "float32"},
            "description": "softmax over the classes (background first); the class is the arg-max",
            "classification:classes": classes,
        }],
        "rs_wsss:version": __version__,
        "rs_wsss:trainable_parameters": int(trainable),
        "rs_wsss:priors": priors,
        "rs_wsss:tile_px": tile, "rs_wsss:overlap": cfg.raster.overlap,
        "rs_wsss:resolution_cm": resolution_cm,
        "rs_wsss:precision": precision,
        "rs_wsss:not_in_graph": ["multi-scale testing (infer.scales)", "dense CRF (infer.crf)"] if exported else [],
    }
    if deepness:
        props["rs_wsss:deepness"] = {key: json.loads(v) for key, v in deepness.items() if key not in ("rs_wsss",
                                                                                                     "stac_mlm")}
    media = "application/octet-stream; application=onnx" if exported else "application/octet-stream"
    asset = {"href": f"./{artifact.name}", "type": media, "title": "ONNX graph" if exported else "rs-wsss checkpoint",
             "roles": ["mlm:model"], "mlm:artifact_type": "onnx" if exported else "torch.save"}
    return {"type": "Feature", "stac_version": "1.1.0", "stac_extensions": [MLM, CLASSIFICATION],
            "id": f"rs-wsss-{artifact.stem}", "geometry": None, "properties": props, "assets": {"model": asset},
            "links": []}


def _onnx_version() -> str:
    import onnx

    return onnx.__version__


def card_path(artifact: str | Path) -> Path:
    """MODEL.pt → MODEL.pt.stac.json, MODEL.onnx → MODEL.onnx.stac.json (a checkpoint and its export side by side)."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".stac.json")


def write_card(card: Mapping[str, Any], artifact: str | Path) -> Path:
    """Write ``card`` as :func:`card_path` of ``artifact`` (temporary name, then rename)."""
    from ..atomic import atomic_path

    path = card_path(artifact)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    return path


def read_card(artifact: str | Path) -> dict[str, Any] | None:
    """The card beside ``artifact`` (None when there is none)."""
    path = card_path(artifact)
    return json.loads(path.read_text()) if path.is_file() else None


def card_of(artifact: str | Path) -> dict[str, Any]:
    """The model card of an ``.onnx`` export (from its metadata) or of a checkpoint (the file beside it).

    Raises:
        RsWsssError: no card (a checkpoint trained by an older version: ``rs-wsss export`` writes one).
    """
    from ..errors import InputNotFound, RsWsssError

    artifact = Path(artifact)
    if not artifact.is_file():
        raise InputNotFound(f"model not found: {artifact}")
    if artifact.suffix.lower() == ".onnx":
        from .deepness import CARD_KEY, read_metadata
        from .runtimes import read_custom_metadata

        meta = read_metadata(read_custom_metadata(artifact)[0], str(artifact))
        if CARD_KEY in meta:
            return meta[CARD_KEY]
    card = read_card(artifact)
    if card is None:
        raise RsWsssError(f"{artifact} has no model card ({card_path(artifact).name}); it is written by rs-wsss "
                          "train and rs-wsss export")
    return card
