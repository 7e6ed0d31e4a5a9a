"""``segment --model model.onnx``: an exported graph with the config, classes and statistics it carries, on
ONNX Runtime or OpenVINO; neither torch nor open_clip is imported (start-up is the runtime's alone)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..classes import ClassSet, class_set_from_dict
from ..config import Config, configure
from ..errors import RsWsssError
from .deepness import RS_WSSS_KEY, read_metadata
from .runtimes import Probs, graph_probs, read_custom_metadata, resolve

log = logging.getLogger("rs_wsss")


def load_exported(path: str | Path, overrides: Sequence[str] = (), settings: dict[str, Any] | None = None
                  ) -> tuple[Config, ClassSet, dict[str, str], dict[str, dict], Probs]:
    """(config, class set, output metadata, normalisation statistics, predictor) of an ``rs-wsss export`` file.

    ``infer.runtime`` torch or auto runs it on ONNX Runtime (there is no torch graph in the file); the tile is the
    graph's, whatever ``--tile`` says; the graph is single scale (``infer.scales`` does not apply).

    Raises:
        RsWsssError: not an rs-wsss export, a runtime or precision this file or machine lacks, another tile.
    """
    custom, session = read_custom_metadata(path)
    meta = read_metadata(custom, str(path))
    own = meta[RS_WSSS_KEY]
    cfg = Config.from_dict(own["config"], source=str(path))
    cs = class_set_from_dict(own["class_set"], source=str(path))
    asked_tile = (settings or {}).get("raster.tile")
    configure(cfg, overrides, {k: v for k, v in (settings or {}).items() if k != "raster.tile"})
    tile = int(meta["tile_size"])
    if asked_tile not in (None, tile):
        raise RsWsssError(f"{path} is a graph for {tile}-px tiles, not {asked_tile}; drop --tile or export again "
                          f"with --tile {asked_tile}")
    cfg.raster.tile = tile
    runtime: str = "onnxruntime" if cfg.infer.runtime in ("torch", "auto") else cfg.infer.runtime
    # the file's precision, unless --precision asks otherwise (the checkpoint's infer.precision was for torch)
    file_precision, asked = own.get("precision", "fp32"), (settings or {}).get("infer.precision")
    if file_precision == "int8" and asked not in (None, "auto", "int8"):
        raise RsWsssError(f"{path} is an int8 graph; drop --precision or export a float32 one")
    if file_precision != "int8" and asked == "int8":
        raise RsWsssError(f"{path} is a float32 graph; export with --precision int8 --scene SCENE… for int8")
    precision = "int8" if file_precision == "int8" else asked or "auto"
    runtime, precision = resolve(runtime, precision)
    if cfg.infer.scales != [1.0]:
        log.info("the exported graph runs at a single scale (infer.scales %s does not apply)", cfg.infer.scales)
        cfg.infer.scales = [1.0]
    out_meta = {"rs_wsss_version": own.get("version", "?"), "model": own.get("model", f"onnx:{Path(path).name}"),
                "class_set": cs.name, "weights": own.get("weights", "?"), "runtime": f"{runtime} {precision}"}
    log.info("inference: %s %s, graph %s (%d-px tiles)", runtime, precision, Path(path).name, tile)
    probs = graph_probs(path, runtime, precision, session if runtime == "onnxruntime" else None)
    del session  # OpenVINO: the metadata session is not needed any more
    return cfg, cs, out_meta, own.get("norms", {}), probs
