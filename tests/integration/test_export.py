"""rs-wsss export: the ONNX file read the way QGIS Deepness reads it, run on real tiles the way Deepness feeds them,
against the PyTorch float32 model; segment --runtime onnxruntime and --model model.onnx; the STAC MLM model card."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from .conftest import ENV, run_cli

SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "stac_schemas"


@pytest.fixture(scope="module")
def exported(trained_spacenet, shared_data):
    scene = shared_data / "spacenet/sample_geotiff.tif"
    out = trained_spacenet / "model.onnx"
    if not out.exists():
        p = run_cli("export", trained_spacenet / "model.pt", "-o", out, "--check", "--scene", scene)
        assert p.returncode == 0, p.stderr
        (trained_spacenet / "check.txt").write_text(p.stdout)
    return out


class DeepnessModel:
    """What Deepness's ``ModelBase`` / ``Segmentor`` do with an ONNX file (src/deepness/processing/models/), rewritten
    here without QGIS: one ORT_ENABLE_ALL session, metadata decoded with json.loads (ast for int keys), class ids
    checked contiguous, uint8-style ``/255`` then standardisation, NHWC → NCHW, threshold then arg-max."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        inputs = self.sess.get_inputs()
        assert len(inputs) == 1, "ONNX model: unsupported number of inputs"
        self.input_shape, self.input_name = inputs[0].shape, inputs[0].name
        self.meta = self.sess.get_modelmeta().custom_metadata_map

    def value(self, key: str):
        return json.loads(self.meta[key])

    def class_names(self) -> list[str]:
        txt = self.meta["class_names"]
        try:
            names = json.loads(txt)
        except json.JSONDecodeError:
            names = ast.literal_eval(txt)
        ordered = sorted(names.items(), key=lambda kv: int(kv[0]))
        for i, (key, _) in enumerate(ordered):
            assert int(key) == i, "Class names in the model metadata are not consecutive"
        return [v for _, v in ordered]

    def process(self, tiles_nhwc: np.ndarray) -> np.ndarray:
        """Raw tiles (N, H, W, C) → class ids (N, H, W) as Deepness's segmentation map processor computes them."""
        x = tiles_nhwc[:, :, :, : self.input_shape[-3]]
        x = np.float32(x * 1.0 / 255.0)
        mean = np.array([float(v) for v in self.value("standardization_mean")], np.float32)
        std = np.array([float(v) for v in self.value("standardization_std")], np.float32)
        x = np.transpose((x - mean) / std, (0, 3, 1, 2))
        result = self.sess.run(output_names=None, input_feed={self.input_name: x})[0]
        result[result < float(self.value("seg_thresh"))] = 0.0
        return np.argmax(result, axis=1)


def test_deepness_reads_the_export_and_agrees_with_pytorch(exported, trained_spacenet, shared_data):
    import torch

    from rs_wsss.build import ModelSpec
    from rs_wsss.raster.io import known_norm, open_scene
    from rs_wsss.segment import load_segmenter

    scene = shared_data / "spacenet/sample_geotiff.tif"
    check = (trained_spacenet / "check.txt").read_text()
    assert "% of pixels have the same class as PyTorch float32" in check
    assert float(check.split("check: ")[1].split(" %")[0]) >= 99.9

    dm = DeepnessModel(exported)
    # the input/output contract: one input [B, C, H, W] float32, H = W, batch dynamic; output [B, K, H, W]
    b, c, h, w = dm.input_shape
    assert isinstance(b, str) and c == 3 and h == w == 128
    assert dm.sess.get_inputs()[0].type == "tensor(float)"
    out_shape = dm.sess.get_outputs()[0].shape
    names = dm.class_names()
    assert names[0] == "background" and names[1:] == ["building", "road", "vegetation", "water", "bare_land"]
    assert len(out_shape) == 4 and out_shape[1] == len(names) and out_shape[2:] == [h, w]
    assert str(dm.value("model_type")).capitalize() == "Segmentor"
    assert int(dm.value("tile_size")) == int(dm.value("tiles_size")) == h
    assert int(dm.value("tiles_overlap")) == 25  # raster.overlap 0.25 in percent
    with rasterio.open(scene) as src:
        raw = src.read(1)  # one grey band: Deepness maps it to the 3 inputs, as rs-wsss reads it
        assert float(dm.value("resolution")) == pytest.approx(100 * src.res[0], rel=1e-3)  # 0.5 m → 50 cm/px
    assert float(dm.value("seg_thresh")) == 0.0 and int(dm.value("seg_small_segment")) == 0
    assert dm.value("class_colors")["1"].startswith("#")
    assert all(json.loads(v) is not None for v in dm.meta.values())  # every value JSON-encoded, strings included

    seg = load_segmenter(ModelSpec(model_path=str(trained_spacenet / "model.pt"),
                                   settings={"infer.precision": "fp32", "infer.scales": [1.0], "infer.crf": False}))
    offsets = [(r, c) for r in range(0, 900 - 128, 190) for c in range(0, 900 - 128, 190)][:12]
    tiles = np.stack([np.repeat(raw[r : r + 128, c : c + 128, None], 3, axis=2) for r, c in offsets])
    got = np.concatenate([dm.process(tiles[i : i + 4]) for i in range(0, len(tiles), 4)])
    with open_scene(scene, None, known_norm(seg.norms, scene)) as sc:
        x = np.stack([sc.read(Window(c, r, 128, 128))[0] for r, c in offsets])
    with torch.inference_mode():
        ref = seg.model.predict(torch.from_numpy(x), scales=[1.0], flip=False).argmax(1).numpy()
    assert len(np.unique(ref)) > 1  # the comparison is not between two constant maps
    agree = (got == ref).mean()
    assert agree >= 0.999, agree
    # a batch of 1 runs too (dynamic batch)
    assert dm.process(tiles[:1]).shape == (1, 128, 128)


def test_segment_runtime_onnxruntime_and_exported_file_match_torch(exported, trained_spacenet, shared_data, tmp_path):
    scene = shared_data / "spacenet/sample_geotiff.tif"
    common = ["--scales", "1", "--no-crf", "--no-report", "--tile", "128", "--precision", "fp32"]
    outs = {}
    for name, extra in {"torch": ["--model", trained_spacenet / "model.pt", "--runtime", "torch"],
                        "ort": ["--model", trained_spacenet / "model.pt", "--runtime", "onnxruntime"],
                        "file": ["--model", exported]}.items():
        p = run_cli("segment", scene, "-o", tmp_path / f"{name}.tif", *common, *extra)
        assert p.returncode == 0, p.stderr
        with rasterio.open(tmp_path / f"{name}.tif") as ds:
            outs[name] = ds.read(1)
    assert len(np.unique(outs["torch"])) > 1
    for name in ("ort", "file"):
        agree = (outs[name] == outs["torch"]).mean()
        assert agree >= 0.999, (name, agree)
    # the exported file's tile is the graph's: another --tile is refused in one line
    p = run_cli("segment", scene, "-o", tmp_path / "bad.tif", "--model", exported, "--tile", "256")
    assert p.returncode == 2 and "128-px tiles" in p.stderr and "Traceback" not in p.stderr


def test_segment_with_an_exported_model_imports_neither_torch_nor_open_clip(exported, shared_data, tmp_path):
    code = ("import sys; from rs_wsss_cli.main import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch' in sys.modules, 'open_clip' in sys.modules)")
    args = ["segment", str(shared_data / "spacenet/sample_geotiff.tif"), "-o", str(tmp_path / "o.tif"), "--model",
            str(exported), "--no-crf", "--no-report"]
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=ENV, timeout=600)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[-2:] == ["False", "False"]


def _validator():
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    schemas = {"mlm-v1.5.2.json": "https://stac-extensions.github.io/mlm/v1.5.2/schema.json",
               "classification-v1.1.0.json": "https://stac-extensions.github.io/classification/v1.1.0/schema.json",
               "processing-v1.1.0.json": "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
               "raster-v1.1.0.json": "https://stac-extensions.github.io/raster/v1.1.0/schema.json"}
    docs = {uri: json.loads((SCHEMAS / f).read_text()) for f, uri in schemas.items()}
    # resources registered under the URIs the MLM schema refers to (processing v1.1.0's file calls itself v1.0.0)
    registry = Registry().with_resources((uri, Resource(contents=d, specification=DRAFT7)) for uri, d in docs.items())
    mlm = docs[schemas["mlm-v1.5.2.json"]]
    return jsonschema.Draft7Validator(mlm, registry=registry)


def test_model_cards_validate_against_the_stac_mlm_schema(exported, trained_spacenet):
    validator = _validator()
    train_card = json.loads((trained_spacenet / "model.pt.stac.json").read_text())
    export_card = json.loads((trained_spacenet / "model.onnx.stac.json").read_text())
    for card in (train_card, export_card):
        errors = [e.message for e in validator.iter_errors(card)]
        assert not errors, errors[:3]
        p = card["properties"]
        assert p["mlm:tasks"] == ["semantic-segmentation"]
        assert [c["name"] for c in p["mlm:output"][0]["classification:classes"]][:2] == ["background", "building"]
        assert p["mlm:total_parameters"] > p["rs_wsss:trainable_parameters"] > 0
        assert p["rs_wsss:priors"][0]["license"].startswith("none (random weights")
    assert export_card["properties"]["mlm:framework"] == "ONNX"
    assert train_card["properties"]["mlm:framework"] == "PyTorch"
    assert export_card["properties"]["mlm:input"][0]["input"]["shape"] == [-1, 3, 128, 128]
    # the validator does reject a card that breaks the schema (a task MLM does not know)
    bad = json.loads(json.dumps(export_card))
    bad["properties"]["mlm:tasks"] = ["painting"]
    assert list(validator.iter_errors(bad))
    # rs-wsss info prints the card of the export (from inside the file) and of the checkpoint
    for artifact in (exported, trained_spacenet / "model.pt"):
        p = run_cli("info", artifact)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["properties"]["mlm:name"].startswith("rs-wsss-landcover")


def test_the_card_names_the_chosen_priors_not_the_papers(trained_spacenet, shared_data, tmp_path):
    """Cards of a model on other priors (SkyCLIP ViT-B/32, DINOv2 ViT-S/14 with registers) validate and name those."""
    p = run_cli("train", "--tags", trained_spacenet / "tags.csv", shared_data / "spacenet/sample_geotiff.tif", "-o",
                tmp_path / "sky.pt", "--classes", "landcover", "--tiny", "--iters", "1", "--no-report",
                "--clip-prior", "skyclip-vit-b-32", "--dino-prior", "dinov2-vit-s-14-reg")
    assert p.returncode == 0, p.stderr
    p = run_cli("export", tmp_path / "sky.pt", "-o", tmp_path / "sky.onnx")
    assert p.returncode == 0, p.stderr
    validator = _validator()
    for artifact in ("sky.pt", "sky.onnx"):
        card = json.loads(run_cli("info", tmp_path / artifact).stdout)
        assert not [e.message for e in validator.iter_errors(card)]
        props = card["properties"]
        assert "CLIP ViT-B-32 image tower (skyclip-vit-b-32" in props["mlm:architecture"]
        assert "ViT-B/16" not in props["mlm:architecture"]
        models = {q["prior"]: q["model"] for q in props["rs_wsss:priors"]}
        expected = {"clip": "skyclip-vit-b-32(tiny)", "dino": "dinov2-vit-s-14-reg(tiny)"}
        assert models == (expected if artifact == "sky.pt" else {"clip": expected["clip"]})  # the graph has no DINO


def test_multi_scale_and_the_crf_stay_in_rs_wsss(exported, shared_data, tmp_path):
    """Said in the README and in the export's card, and done: an exported graph segments at one scale."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Export", 1)[1].split("\n## ", 1)[0]
    assert "**Multi-scale testing and the dense CRF stay in rs-wsss** (`infer.scales`, `infer.crf`)" in section
    card = json.loads(run_cli("info", exported).stdout)["properties"]
    assert card["rs_wsss:not_in_graph"] == ["multi-scale testing (infer.scales)", "dense CRF (infer.crf)"]
    p = run_cli("segment", shared_data / "spacenet/sample_geotiff.tif", "-o", tmp_path / "o.tif", "--model", exported,
                "--scales", "0.75,1,1.25", "--no-crf", "--no-report")
    assert p.returncode == 0, p.stderr
    assert "runs at a single scale (infer.scales [0.75, 1.0, 1.25] does not apply)" in p.stderr
    assert json.loads((tmp_path / "o_stac.json").read_text())["properties"]["rs_wsss:parameters"]["scales"] == [1.0]


def test_the_graph_adapter_equals_the_models_at_any_batch(trained_spacenet):
    import torch

    from rs_wsss.build import ModelSpec, build
    from rs_wsss.export.graph import any_batch_adapter

    model = build(ModelSpec(model_path=str(trained_spacenet / "model.pt")), "predict").model.eval()
    for b in (1, 3):
        levels = [torch.randn(b, model.adapter.in_dim, 5, 7) for _ in range(model.adapter.n_levels)]
        with torch.no_grad():
            torch.testing.assert_close(any_batch_adapter(model.adapter, levels), model.adapter(levels))


@pytest.mark.parametrize("args, says", [
    (["export", "missing.pt", "-o", "m.onnx"], "checkpoint not found"),
    (["export", "{ckpt}", "-o", "m.txt"], "name it MODEL.onnx"),
    (["export", "{ckpt}", "-o", "{out}", "--check"], "--check needs real tiles"),
    (["export", "{ckpt}", "-o", "{out}", "--precision", "int8"], "--precision int8 needs real tiles"),
    (["segment", "{scene}", "-o", "{tif}", "--model", "{ckpt}", "--runtime", "onnxruntime", "--precision", "int8"],
     "int8 needs calibration"),
])
def test_export_bad_input_is_one_line(args, says, trained_spacenet, shared_data, tmp_path, capfd):
    from ..conftest import run_main_in_process

    subs = {"ckpt": trained_spacenet / "model.pt", "out": tmp_path / "m.onnx", "tif": tmp_path / "o.tif",
            "scene": shared_data / "spacenet/sample_geotiff.tif"}
    code, err = run_main_in_process([a.format(**subs) for a in args], capfd)
    assert code == 2 and says in err and "Traceback" not in err, err
    assert not (tmp_path / "m.onnx").exists()


def test_int8_export_is_quantised_calibrated_and_checked(trained_spacenet, shared_data, tmp_path):
    import onnx

    scene = shared_data / "spacenet/sample_geotiff.tif"
    out = tmp_path / "model.int8.onnx"
    p = run_cli("export", trained_spacenet / "model.pt", "-o", out, "--precision", "int8", "--check", "--scene", scene)
    assert p.returncode == 0, p.stderr
    agree = float(p.stdout.split("check: ")[1].split(" %")[0])
    assert agree >= 99.0, p.stdout  # measured 99.6 % on this tiny random model
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # the matrix products really are int8
    meta = {m.key: m.value for m in model.metadata_props}
    assert all(json.loads(v) is not None for v in meta.values())  # every value JSON, nothing the quantiser left
    assert json.loads(meta["rs_wsss"])["precision"] == "int8"
    p = run_cli("segment", scene, "-o", tmp_path / "o.tif", "--model", out, "--no-crf", "--no-report")
    assert p.returncode == 0, p.stderr
