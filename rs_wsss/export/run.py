"""``rs-wsss export``: a checkpoint → one ONNX graph Deepness runs, its metadata, a STAC model card, and (``check``)
the agreement of the exported graph on ONNX Runtime with the PyTorch model on real tiles."""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import RsWsssError

log = logging.getLogger("rs_wsss")
CHECK_TILES = 8  # tiles per check: enough pixels (8 × T²) for a 0.1 % agreement figure


def real_tiles(scenes: Sequence[str | Path], cfg: Any, norms: dict[str, dict], tile: int,
               limit: int = CHECK_TILES) -> list[np.ndarray]:
    """Up to ``limit`` tiles of ``scenes`` read exactly as ``segment`` reads them (bands, training statistics,
    reflect padding at edges), spread over the tile grid; tiles without a valid pixel are skipped."""
    from ..raster.io import known_norm, open_scene
    from ..raster.stitch import _pad_reflect
    from ..raster.tiles import tile_windows

    picked: list[np.ndarray] = []
    per_scene = max(1, -(-limit // max(1, len(scenes))))
    for path in scenes:
        with open_scene(path, cfg.raster, known_norm(norms, path)) as scene:
            windows = tile_windows(scene.width, scene.height, tile, cfg.raster.overlap)
            step = max(1, len(windows) // per_scene)
            for w in windows[::step][:per_scene]:
                img, valid = scene.read(w)
                if valid.any():
                    picked.append(_pad_reflect(img, valid).astype(np.float32))
    return picked[:limit]


def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Share of pixels with the same arg-max class, and the largest probability difference."""
    return {"pixels": float((reference.argmax(1) == other.argmax(1)).mean()),
            "max_abs_prob": float(np.abs(reference - other).max())}


def training_resolution_cm(extra: dict[str, Any]) -> float | None:
    """The training scenes' median ground sample distance in cm/px, from a checkpoint's ``extra`` (None: unknown)."""
    found = [v for v in (extra.get("resolution_m") or {}).values() if v]
    return 100 * statistics.median(found) if found else None


def export_model(checkpoint: str | Path, out: str | Path, *, tile: int | None = None, precision: str = "fp32",
                 scenes: Sequence[str | Path] = (), check: bool = False, weights: str | None = None,
                 resolution_cm: float | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Export ``checkpoint`` to the ONNX file ``out`` with Deepness metadata, and its STAC card beside it.

    Args:
        checkpoint: from ``rs-wsss train``.
        out: ``MODEL.onnx``.
        tile: graph tile side in px (None: the checkpoint's ``raster.tile``).
        precision: ``fp32`` or ``int8`` (static quantisation calibrated on tiles of ``scenes``).
        scenes: real scenes (the training scenes) for ``check`` and int8 calibration.
        check: run the written graph on ONNX Runtime beside the PyTorch float32 model on tiles of ``scenes``.
        weights: backbone weights (as for segment).
        resolution_cm: cm/px for Deepness (None: the training scenes').
        overwrite: replace an existing ``out`` and card.

    Returns:
        ``{"onnx", "card", "tile", "classes", "precision", ["check": agreement dict]}``.

    Raises:
        RsWsssError: output exists, int8 or check without scenes, unknown resolution, a tile of partial patches.
    """
    import onnx

    from ..atomic import atomic_path
    from ..build import ModelSpec, build
    from ..model.checkpoint import file_hash, load_checkpoint
    from .card import model_card, write_card
    from .deepness import CARD_KEY, deepness_metadata, set_metadata
    from .graph import export_graph

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise RsWsssError(f"-o {out}: the exported model is an ONNX file; name it MODEL.onnx")
    if out.exists() and not overwrite:
        raise RsWsssError(f"output exists: {out} (pass --overwrite to replace it)")
    if precision not in ("fp32", "int8"):
        raise RsWsssError(f"--precision {precision}: export writes fp32 or int8 graphs")
    if (check or precision == "int8") and not scenes:
        raise RsWsssError(f"{'--check' if check else '--precision int8'} needs real tiles: add --scene SCENE.tif "
                          "(the training scenes)")
    state = load_checkpoint(checkpoint)
    resolution = resolution_cm or training_resolution_cm(state["extra"])
    if resolution is None:
        raise RsWsssError(f"{checkpoint} does not record its scenes' resolution (not georeferenced, or trained by an "
                          "older version): give --resolution CM_PER_PX")
    settings: dict[str, Any] = {"infer.precision": "fp32", "infer.runtime": "torch", "infer.scales": [1.0],
                                "infer.crf": False}
    if tile:
        settings["raster.tile"] = tile
    built = build(ModelSpec(model_path=str(checkpoint), settings=settings, weights=weights), "predict")
    model, cfg, cs = built.model.eval(), built.cfg, built.class_set
    norms = state["extra"].get("norms", {})
    tile = cfg.raster.tile
    try:
        proto = export_graph(model, tile)
    except ValueError as exc:
        raise RsWsssError(f"--tile {tile}: {exc}; choose a multiple of {model.clip.patch}") from None
    tiles = real_tiles(scenes, cfg, norms, tile) if scenes else []
    weights_id = "random-weights" if "random" in built.clip.identifier else built.clip.identifier
    own = {"version": __version__, "model": f"checkpoint:{file_hash(checkpoint)}", "weights": weights_id,
           "precision": precision, "config": cfg.to_dict(), "class_set": cs.to_dict(), "norms": norms}
    meta = deepness_metadata(cs, tile, cfg.raster.overlap, resolution, norms, own)
    with tempfile.TemporaryDirectory(prefix="rs-wsss-export-") as tmp:
        graph_file = Path(tmp) / "fp32.onnx"
        onnx.save(proto, str(graph_file))
        if precision == "int8":
            from .quantize import quantize_int8

            int8_file = Path(tmp) / "int8.onnx"
            quantize_int8(graph_file, int8_file, real_tiles(scenes, cfg, norms, tile, limit=8))
            graph_file = int8_file
        final = onnx.load(str(graph_file))
        card = model_card(model, cs, cfg, out, resolution, precision, norms, meta)
        set_metadata(final, meta | {CARD_KEY: json.dumps(card)})  # the card travels inside the file too
        with atomic_path(out) as tmp_out:
            onnx.save(final, str(tmp_out))
    card_file = write_card(card, out)
    result: dict[str, Any] = {"onnx": str(out), "card": str(card_file), "tile": tile, "classes": cs.names,
                              "precision": precision}
    if check:
        result["check"] = check_graph(out, model, tiles)
    return result


def check_graph(path: str | Path, model: Any, tiles: list[np.ndarray]) -> dict[str, float]:
    """The exported graph on ONNX Runtime vs the PyTorch float32 ``model`` (a ``WSSS``), on the same tiles."""
    import torch

    from .runtimes import ort_session

    sess = ort_session(path)
    x = np.stack(tiles)
    got = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i : i + 2]})[0] for i in range(0, len(x), 2)])
    with torch.inference_mode():
        ref = np.concatenate([model.predict(torch.from_numpy(x[i : i + 2]), scales=[1.0], flip=False).numpy()
                              for i in range(0, len(x), 2)])
    return agreement(ref, got) | {"tiles": len(tiles)}
