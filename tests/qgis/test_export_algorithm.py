"""The QGIS provider's "Export model for Deepness" in a real QGIS (headless): it runs rs-wsss export as a subprocess
and writes an ONNX file with Deepness's metadata, checked on a real raster."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .test_qgis_provider import qgis_env, qgis_run  # noqa: F401  (the module fixture and helper of the provider tests)

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def tiny_checkpoint(shared_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("export_alg")
    scene = shared_data / "spacenet/sample_geotiff.tif"
    cli = [sys.executable, "-m", "rs_wsss_cli.main"]
    for args in (["tags", "from-vector", scene, "--labels", shared_data / "spacenet/geotiff_labels.geojson",
                  "--class-name", "building", "--classes", "landcover", "-o", d / "tags.csv", "--tile", "256"],
                 ["train", "--tags", d / "tags.csv", scene, "-o", d / "model.pt", "--classes", "landcover", "--tiny",
                  "--iters", "4", "--no-report"]):
        p = subprocess.run(cli + [str(a) for a in args], capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
    return d / "model.pt", scene


def test_export_for_deepness_algorithm(qgis_env, tiny_checkpoint, tmp_path):  # noqa: F811
    import onnxruntime as ort

    model, scene = tiny_checkpoint
    out = tmp_path / "model.onnx"
    p = qgis_run(qgis_env, "exportdeepness", MODEL=model, CHECK_RASTER=scene, OUTPUT=out)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "% of pixels have the same class as PyTorch float32" in p.stdout + p.stderr
    meta = ort.InferenceSession(str(out)).get_modelmeta().custom_metadata_map
    assert json.loads(meta["model_type"]) == "Segmentor" and json.loads(meta["tiles_size"]) == 128
    assert (tmp_path / "model.onnx.stac.json").is_file()
    # int8 without a raster to calibrate on is refused before anything runs
    p = qgis_run(qgis_env, "exportdeepness", MODEL=model, INT8=True, OUTPUT=tmp_path / "m8.onnx")
    assert p.returncode != 0 and "calibrated on real tiles" in p.stdout + p.stderr
