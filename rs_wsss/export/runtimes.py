"""Running the exported graph: ONNX Runtime or OpenVINO over the same tiles, stitching and outputs as torch.

A *graph predictor* maps a batch as ``raster.io.Scene.read`` gives it — float32 (B, 3, T, T), already stretched to
[0, 1] with the scene's statistics — to probabilities (B, K, T, T). The graph clips its input to [0, 1], so that
batch is a valid input as it is (Deepness's standardised tile is the same tensor, see ``graph``).

Precision per runtime: ``fp32`` everywhere; ``bf16`` only on OpenVINO (its CPU plugin's bf16 inference precision, on
CPUs with AMX or AVX512-BF16); ``int8`` is a graph quantised after training by ``quantize`` (calibrated on training
tiles), run by either runtime. ``auto`` (runtime or precision) is the pairing ``benchmarks/runtimes.py`` measured
fastest at ≥ 99.5 % pixel agreement with torch float32 on an AMX CPU (``benchmarks/RESULTS.md``); without those
instructions it is torch float32.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RsWsssError

log = logging.getLogger("rs_wsss")
RUNTIMES = ("torch", "onnxruntime", "openvino", "auto")
GRAPH_PRECISIONS = {"onnxruntime": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8")}
# benchmarks/runtimes.py on this project's AMX CPU (RESULTS.md): the fastest pairing at ≥ 99.5 % agreement is
# torch with its own precision choice (bf16 there); the exported graphs on ONNX Runtime / OpenVINO were slower
AUTO_BF16_CPU = ("torch", "auto")
Probs = Callable[[np.ndarray], np.ndarray]


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve(runtime: str, precision: str) -> tuple[str, str]:
    """``infer.runtime`` × ``infer.precision`` → a runtime and precision that exist here.

    Raises:
        RsWsssError: a precision the runtime has no kernels for, or a runtime that is not installed.
    """
    if runtime == "auto":
        if not cpu_flags() & {"amx_bf16", "avx512_bf16"} or not _installed(AUTO_BF16_CPU[0]):
            return "torch", precision
        runtime = AUTO_BF16_CPU[0]
        precision = AUTO_BF16_CPU[1] if precision == "auto" else precision
    if runtime == "torch":
        return runtime, precision
    if not _installed(runtime):
        extra = "onnx" if runtime == "onnxruntime" else "openvino"
        raise RsWsssError(f"--runtime {runtime}: {runtime} is not installed; pip install 'rs-wsss[{extra}]' "
                          "or use --runtime torch")
    if precision == "auto":
        precision = "bf16" if runtime == "openvino" and cpu_flags() & {"amx_bf16", "avx512_bf16"} else "fp32"
    if precision not in GRAPH_PRECISIONS[runtime]:
        raise RsWsssError(f"--runtime {runtime} has no {precision} path; use --precision "
                          f"{' or '.join(GRAPH_PRECISIONS[runtime])}")
    return runtime, precision


def _installed(runtime: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(runtime) is not None


def threads() -> int:
    """Intra-op threads: ``OMP_NUM_THREADS`` when set (as torch reads it), else the runtime's default (0)."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


def graph_probs(path: str | Path, runtime: str, precision: str, session: Any = None) -> Probs:
    """A predictor over the ONNX file ``path`` (fp32 or already-int8 graph) on ``runtime`` at ``precision``;
    ``session``: an ONNX Runtime session of ``path`` already open (its metadata was read from it)."""
    if runtime == "onnxruntime":
        sess = session if session is not None else ort_session(path)
        name = sess.get_inputs()[0].name

        def run_ort(batch: np.ndarray) -> np.ndarray:
            return sess.run(None, {name: np.ascontiguousarray(batch, np.float32)})[0]

        return run_ort
    if runtime == "openvino":
        import openvino as ov

        from ..paths import cache_dir

        # compiled blobs are cached by OpenVINO itself (compiling a ViT-B graph costs ~14 CPU s), one folder per
        # precision: its cache key leaves the precision hint out, and an fp32 blob loaded for bf16 crashed here
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                                  "CACHE_DIR": str(cache_dir() / "openvino" / precision)}
        if threads():
            config["INFERENCE_NUM_THREADS"] = threads()
        compiled = ov.Core().compile_model(str(path), "CPU", config)

        def run_ov(batch: np.ndarray) -> np.ndarray:
            return compiled(np.ascontiguousarray(batch, np.float32))[0]

        return run_ov
    raise RsWsssError(f"runtime '{runtime}' unknown: use one of {', '.join(RUNTIMES)}")


def ort_session(path: str | Path) -> Any:
    """An ONNX Runtime CPU session with every graph optimisation, as Deepness opens models."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # warnings about unused initialisers are not the user's business
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def read_custom_metadata(path: str | Path) -> tuple[dict[str, str], Any]:
    """The ``custom_metadata_map`` of an ONNX file, read as Deepness reads it (through an onnxruntime session), and
    that session (reused to run the graph on ONNX Runtime)."""
    if not Path(path).is_file():
        from ..errors import InputNotFound

        raise InputNotFound(f"model not found: {path} (export one with rs-wsss export model.pt -o model.onnx)")
    try:
        sess = ort_session(path)
    except Exception as exc:  # noqa: BLE001 onnxruntime raises its own untyped Fail/InvalidGraph errors
        raise RsWsssError(f"{path} is not an ONNX model onnxruntime can open ({type(exc).__name__}); "
                          "export it again with rs-wsss export") from None
    return dict(sess.get_modelmeta().custom_metadata_map), sess


def on_the_fly(model: Any, cfg: Any, model_id: str, runtime: str, precision: str) -> Probs:
    """Export the loaded torch ``model`` at ``cfg.raster.tile`` px to the cache (once per checkpoint, weights and
    tile) and return a predictor over it; the graph is single scale, so ``cfg.infer.scales`` becomes [1.0].
    ``int8`` needs calibration tiles, so it comes only from ``rs-wsss export --precision int8``.

    Raises:
        RsWsssError: int8 asked for a checkpoint (export it first).
    """
    if precision == "int8":
        raise RsWsssError("int8 needs calibration on training tiles: rs-wsss export model.pt -o model.int8.onnx "
                          "--precision int8 --scene SCENE…, then segment --model model.int8.onnx")
    import hashlib

    from ..atomic import atomic_path
    from ..paths import cache_dir
    from .graph import export_graph

    tile = cfg.raster.tile
    if cfg.infer.scales != [1.0]:
        log.info("the %s graph runs at a single scale (infer.scales %s does not apply)", runtime, cfg.infer.scales)
        cfg.infer.scales = [1.0]
    key = hashlib.sha256(f"{model_id}|{tile}".encode()).hexdigest()[:20]
    path = cache_dir() / "onnx" / f"{key}-{tile}px.onnx"
    if not path.is_file():
        import onnx

        log.info("exporting the model to %s (once per checkpoint and tile)", path)
        path.parent.mkdir(parents=True, exist_ok=True)
        proto = export_graph(model, tile)
        with atomic_path(path) as tmp:
            onnx.save(proto, str(tmp))
    return graph_probs(path, runtime, precision)
