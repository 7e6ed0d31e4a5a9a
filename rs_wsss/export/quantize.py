"""int8 by post-training static quantisation (ONNX Runtime, QDQ format), calibrated on real training tiles.

Only the matrix products are quantised (MatMul, Conv, Gemm: where VNNI / AMX-INT8 kernels pay); LayerNorm, Softmax,
GELU and the bilinear upsampling stay float32, since their inputs have outliers a per-tensor int8 scale would clip.
Weights per output channel (symmetric int8), activations per tensor (asymmetric uint8 ranges from the calibration
tiles' percentiles). The agreement with torch float32 is what ``rs-wsss export --check`` and
``benchmarks/runtimes.py`` print; it is not assumed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .graph import INPUT

QUANTISED_OPS = ["MatMul", "Conv", "Gemm"]


def quantize_int8(fp32_path: str | Path, out_path: str | Path, tiles: list[np.ndarray], batch: int = 1) -> None:
    """Write the int8 version of the float32 graph ``fp32_path`` to ``out_path``, calibrated on ``tiles`` (each
    float32 (3, T, T) in [0, 1], as ``raster.io.Scene.read`` gives them).

    Raises:
        ValueError: no calibration tile.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    if not tiles:
        raise ValueError("int8 calibration needs at least one tile")

    class Tiles(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([np.stack(tiles[i : i + batch]).astype(np.float32)
                                 for i in range(0, len(tiles), batch)])

        def get_next(self) -> dict[str, Any] | None:
            x = next(self.batches, None)
            return None if x is None else {INPUT: x}

    with tempfile.TemporaryDirectory(prefix="rs-wsss-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)  # shape inference + fusions
        quantize_static(str(pre), str(out_path), Tiles(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=QUANTISED_OPS, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"CalibMovingAverage": False})
