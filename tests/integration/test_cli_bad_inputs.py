"""Every bad input: exit code 2, exactly one line on stderr naming the problem, no traceback, nothing left behind and
every input byte-identical (hashed before and after).

Cases run in-process through the real entry point (``rs_wsss_cli.main.main``: the same exit-code mapping and stderr
as the installed command, without paying the interpreter and torch start-up per case); those marked ``SUB`` run in
a subprocess, where the process itself is the point (CUDA visibility, unknown option, interpreter start).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from ..conftest import run_main_in_process
from .conftest import ENV, run_cli

NAIP = "naip/m_4709963_se_14_1_20200831.tif"
SPACENET = "spacenet/sample_geotiff.tif"
SUB = "subprocess"
ZS = ["--zero-shot", "--classes", "landcover", "--tiny"]  # zero-shot with the tiny architecture (random weights)
SEG = ["segment", "{T}/scene.tif"]
TRAIN = ["train", "{D}/" + NAIP, "-o", "{T}/m.pt", "--classes", "landcover", "--tiny"]

# (id, args with {D}=shared data, {T}=work dir, {M}=a trained model, {RO}=an unwritable directory, expected words
# in the message[, SUB]). The data-loss cases refuse with and without --overwrite.
CASES = [
    ("missing raster", ["segment", "{T}/nope.tif", "-o", "{T}/o.gpkg", *ZS], "not found", SUB),
    ("corrupt raster", ["segment", "{T}/corrupt.tif", "-o", "{T}/o.gpkg", *ZS], "cannot read raster"),
    ("empty file as raster", ["segment", "{T}/empty.tif", "-o", "{T}/o.gpkg", *ZS], "raster"),
    ("directory as raster", ["segment", "{T}/adir", "-o", "{T}/o.gpkg", *ZS], "adir"),
    ("unknown class set", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "nosuchset"], "unknown class set"),
    ("output exists", ["segment", "{D}/" + NAIP, "-o", "{T}/exists.gpkg", *ZS], "output exists"),
    ("missing output dir", ["segment", "{D}/" + NAIP, "-o", "{T}/no/such/dir/o.gpkg", *ZS], "does not exist"),
    ("output dir is a file", ["segment", "{D}/" + NAIP, "-o", "{T}/good.csv/o.gpkg", *ZS], "does not exist"),
    ("cuda absent", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--device", "cuda"], "CUDA", SUB),
    ("model and zero-shot", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--model", "{M}", "--classes", "landcover"], "either"),
    ("zero-shot without classes", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--tiny"], "--classes"),
    ("not a checkpoint", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--model", "{T}/corrupt.tif"], "not an rs-wsss checkpoint"),
    ("truncated checkpoint", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--model", "{T}/trunc.pt"], "not an rs-wsss checkpoint"),
    ("checkpoint with --config", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--model", "{M}", "--config", "{T}/c.yaml"], "not both"),
    ("info of a checkpoint with --tiny", ["info", "--model", "{M}", "--tiny"], "not both"),
    ("checkpoint for another class set", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--model", "{M}", "--classes", "potsdam"], "trained for classes"),
    ("bad output suffix", ["segment", "{D}/" + NAIP, "-o", "{T}/o.png", *ZS], "must end in"),
    ("bad scales", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--scales", "a,b"], "--scales"),
    ("zero scale", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--scales", "0"], "--scales"),
    ("negative scale", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--scales", "-1,1"], "--scales"),
    ("nan scale", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--scales", "nan"], "--scales"),
    ("bad band numbers", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--bands", "9,1,2"], "bands"),
    ("band zero", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--bands", "0"], "bands"),
    ("two band numbers", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--bands", "1,2"], "bands"),
    ("band text", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--bands", "r,g,b"], "bands"),
    ("2-band raster without --bands", ["segment", "{T}/twoband.tif", "-o", "{T}/o.gpkg", *ZS], "--bands 1,1,2"),
    ("tile too small for segment", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--tile", "8"], "--tile"),
    ("overlap of one", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--overlap", "1"], "--overlap"),
    ("unknown device", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--device", "tpu"], "--device"),
    ("negative min area", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--min-area", "-1"], "--min-area"),
    ("unknown config key", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--set", "usr.alpah=2"], "unknown key"),
    ("override without =", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--set", "usr.alpha"], "--set"),
    ("override of unknown section", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--set", "nosection.x=1"], "nosection"),
    ("class set not UTF-8", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--tiny", "--classes", "{T}/latin1.yaml"], "UTF-8"),
    ("class set binary", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--tiny", "--classes", "{T}/binary.yaml"], "UTF-8"),
    ("class set not YAML", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--tiny", "--classes", "{T}/notyaml.yaml"], "not valid YAML"),
    ("class set classes scalar", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--tiny", "--classes", "{T}/scalar.yaml"], "'classes' list"),
    ("class set codes mapping", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--tiny", "--classes", "{T}/codesmap.yaml"], "must be a list"),
    ("class set duplicate names", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--tiny", "--classes", "{T}/dupes.yaml"], "duplicate"),
    ("class set YAML alias bomb", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--tiny", "--classes", "{T}/bomb.yaml"], "must be text"),
    ("class set unquoted colour", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--tiny", "--classes", "{T}/nullcolor.yaml"], "quote"),
    ("config binary", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover", "--config", "{T}/binary.yaml"], "config"),
    ("config not UTF-8", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover", "--config", "{T}/latin1_config.yaml"], "config"),
    ("tags with unknown class", ["train", "--tags", "{T}/badclass.csv", *TRAIN[1:]], "unknown class 'rooof'"),
    ("tags with the background", ["train", "--tags", "{T}/bg.csv", *TRAIN[1:]], "background"),
    ("tags window outside", ["train", "--tags", "{T}/outside.csv", *TRAIN[1:]], "outside"),
    ("tags infinite offset", ["train", "--tags", "{T}/inf.csv", *TRAIN[1:]], "integers"),
    ("tags missing columns", ["train", "--tags", "{T}/nocols.csv", *TRAIN[1:]], "missing columns"),
    ("tags not UTF-8", ["train", "--tags", "{T}/latin1.csv", *TRAIN[1:]], "not UTF-8"),
    ("tags binary CSV", ["train", "--tags", "{T}/binary.csv", *TRAIN[1:]], "not UTF-8"),
    ("tags with NUL bytes", ["train", "--tags", "{T}/nul.csv", *TRAIN[1:]], "NUL"),
    ("tags binary GPKG", ["train", "--tags", "{T}/binary.gpkg", *TRAIN[1:]], "GeoPackage"),
    ("tags not matching scenes", ["train", "--tags", "{T}/good.csv", "{D}/" + NAIP, "{D}/" + SPACENET, "-o", "{T}/m.pt", "--classes", "landcover", "--tiny"], "has no rows"),
    ("missing tags file", ["train", "--tags", "{T}/none.csv", *TRAIN[1:]], "tags file not found"),
    ("train output exists", ["train", "--tags", "{T}/good.csv", "{D}/" + NAIP, "-o", "{T}/exists.gpkg", "--classes", "landcover", "--tiny"], "output exists"),
    ("train missing scene", ["train", "--tags", "{T}/good.csv", "{T}/nope.tif", "-o", "{T}/m.pt", "--classes", "landcover", "--tiny"], "not found"),
    ("vector field missing", ["tags", "from-vector", "{D}/" + SPACENET, "--labels", "{D}/spacenet/geotiff_labels.geojson", "--field", "kind", "-o", "{T}/t.csv"], "field 'kind' not found"),
    ("vector value not a class", ["tags", "from-vector", "{D}/" + SPACENET, "--labels", "{D}/spacenet/geotiff_labels.geojson", "--field", "building", "-o", "{T}/t.csv"], "not classes"),
    ("vector layer binary", ["tags", "from-vector", "{D}/" + SPACENET, "--labels", "{T}/binary.gpkg", "--class-name", "building", "--classes", "landcover", "-o", "{T}/t.csv"], "cannot read vector layer"),
    ("masks glob empty", ["tags", "from-raster", "{D}/" + SPACENET, "--masks", "{T}/*.png", "--classes", "landcover", "-o", "{T}/t.csv"], "no files"),
    ("evaluate size mismatch", ["evaluate", "{D}/potsdam/masks/2_10_0_0_512_512.png", "{D}/spacenet/sample_fp_mask_from_geojson.tif", "--classes", "potsdam"], "cannot align"),
    ("evaluate corrupt prediction", ["evaluate", "{T}/corrupt.tif", "{D}/spacenet/sample_fp_mask_from_geojson.tif", "--classes", "landcover"], "cannot read raster"),
    ("unknown option", ["segment", "{D}/" + NAIP, "--frobnicate"], "No such option", SUB),
    ("unwritable output dir", ["segment", "{D}/" + NAIP, "-o", "{RO}/o.gpkg", *ZS], "not writable"),
    ("train into unwritable dir", ["train", "--tags", "{T}/good.csv", "{D}/" + NAIP, "-o", "{RO}/m.pt", "--classes", "landcover", "--tiny"], "not writable"),
    ("weights file is not weights", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover", "--weights", "{T}/good.csv"], "not a weights file"),
    ("weights dir without weights", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover", "--weights", "{T}/ro"], "no openai-vit-b-16 weights"),
    ("weights with foreign names", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover", "--weights", "{T}/names.safetensors"], "none of the expected names"),
    ("weights of another patch size", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover", "--weights", "{T}/conv32.bin"], "expected 768x3x16x16"),
    ("weights truncated zip", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover", "--weights", "{T}/trunc_weights.pt"], "not a readable weights file"),
    ("weights with code in the pickle", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover", "--weights", "{T}/evil.pt"], "not a readable weights file"),
    ("config is not a mapping", ["train", "--tags", "{T}/good.csv", "{D}/" + NAIP, "-o", "{T}/m.pt", "--classes", "landcover", "--config", "{T}/good.csv"], "YAML mapping"),
    ("zero iterations", [*TRAIN, "--tags", "{T}/good.csv", "--iters", "0"], "--iters"),
    ("tile too small", ["tags", "template", "{D}/" + NAIP, "-o", "{T}/t.csv", "--tile", "0"], "--tile"),
    ("several scenes into one file", ["segment", "{D}/" + NAIP, "{D}/" + SPACENET, "-o", "{T}/o.gpkg", *ZS], "directory"),
    # data loss: an output that is an input, with and without --overwrite
    ("output is the scene", [*SEG, "-o", "{T}/scene.tif", *ZS], "is the input"),
    ("output is the scene, --overwrite", [*SEG, "-o", "{T}/scene.tif", *ZS, "--overwrite"], "is the input"),
    ("output via .. is the scene", [*SEG, "-o", "{T}/adir/../scene.tif", *ZS, "--overwrite"], "is the input"),
    ("output symlink to the scene", [*SEG, "-o", "{T}/link.tif", *ZS, "--overwrite"], "is the input"),
    ("output hard link of the scene", [*SEG, "-o", "{T}/hard.tif", *ZS, "--overwrite"], "is the input"),
    ("gpkg whose .tif sibling is the scene", [*SEG, "-o", "{T}/scene.gpkg", *ZS, "--overwrite"], "is the input"),
    ("confidence sibling is the scene", ["segment", "{T}/o_confidence.tif", "-o", "{T}/o.tif", *ZS, "--probs", "--overwrite"], "is the input"),
    ("several scenes into their own folder", ["segment", "{T}/multi/a.tif", "{T}/multi/b.tif", "-o", "{T}/multi", *ZS, "--overwrite"], "is the input"),
    ("output sibling is the checkpoint", ["segment", "{T}/scene.tif", "-o", "{T}/ck.gpkg", "--model", "{T}/ck.tif", "--overwrite"], "is the input"),
    ("train output is the tags file", ["train", "--tags", "{T}/good.csv", "{D}/" + NAIP, "-o", "{T}/good.csv", "--classes", "landcover", "--tiny"], "is the input"),
    ("train log sibling is the tags file", ["train", "--tags", "{T}/m2.log.csv", "{D}/" + NAIP, "-o", "{T}/m2.pt", "--classes", "landcover", "--tiny"], "is the input"),
    # issue 26: refused early, by name, at the cause
    ("truncated TIFF", ["segment", "{T}/half.tif", "-o", "{T}/o.gpkg", *ZS], "IReadBlock failed"),
    ("truncated TIFF for training", ["train", "--tags", "{T}/good.csv", "{T}/half.tif", "-o", "{T}/m.pt", "--classes", "landcover", "--tiny"], "IReadBlock failed"),
    ("VRT with a missing source", ["segment", "{T}/gone.vrt", "-o", "{T}/o.gpkg", *ZS], "gone_source.tif: No such file"),
    ("checkpoint of one text byte", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--model", "{T}/text.pt"], "not an rs-wsss checkpoint"),
    ("checkpoint of random bytes", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--model", "{T}/random.pt"], "not an rs-wsss checkpoint"),
    ("unknown compression", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--co", "COMPRESS=NOPE"], "COMPRESS = NONE"),
    ("unknown creation option", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--co", "FROB=1"], "no creation option FROB"),
    ("creation option below its minimum", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--co", "BLOCKSIZE=16"], "BLOCKSIZE ≥ 128"),
    ("creation option of the wrong type", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--co", "BLOCKSIZE=abc"], "integer"),
    ("dask with no workers", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--dask", "local:0"], "N ≥ 1"),
    ("evaluate without overlap", ["evaluate", "{T}/scene.tif", "{D}/" + NAIP, "--classes", "landcover"], "does not overlap"),
    ("300 classes", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--tiny", "--classes", "{T}/many.yaml"], "at most 254"),
    ("weights symlink loop", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover", "--weights", "{T}/loop_a"], "symbolic link loop"),
    ("scene symlink loop", ["segment", "{T}/loop_a", "-o", "{T}/o.gpkg", *ZS], "symbolic link loop"),
    ("evaluate a truncated mask", ["evaluate", "{D}/potsdam/masks/2_10_0_0_512_512.png", "{T}/halfmask_png", "--classes", "potsdam"], "IReadBlock failed"),
    ("tags from a truncated mask", ["tags", "from-raster", "{D}/potsdam/images/2_10_0_0_512_512.png", "--masks", "{T}/halfmasks", "--classes", "potsdam", "-o", "{T}/t.csv"], "IReadBlock failed"),
    ("config with a null key", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", *ZS, "--config", "{T}/nullkey.yaml"], "YAML mapping"),
    ("tags output is the vector layer", ["tags", "from-vector", "{T}/scene.tif", "--labels", "{T}/labels.gpkg", "--class-name", "building", "--classes", "landcover", "-o", "{T}/labels.gpkg", "--overwrite"], "is the input"),
]


def _raster(path, count=3, nodata=None, fill=None, colorinterp=None):
    data = np.random.default_rng(0).integers(1, 255, (count, 64, 64), dtype=np.uint8)
    if fill is not None:
        data[:] = fill
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=count, dtype="uint8", nodata=nodata,
                       crs="EPSG:32614", transform=from_origin(500000, 5000000, 1, 1)) as ds:
        ds.write(data)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, shared_data, trained_spacenet):
    import torch
    from safetensors.torch import save_file

    t = tmp_path_factory.mktemp("bad")
    (t / "ro").mkdir(mode=0o555)  # read-only for a normal user; root writes anywhere, so root gets /proc (below)
    (t / "adir").mkdir()
    (t / "multi").mkdir()
    (t / "corrupt.tif").write_bytes(b"II*\x00 this is not a tiff")
    (t / "empty.tif").write_bytes(b"")
    (t / "exists.gpkg").write_text("keep me")
    naip = shared_data / NAIP
    header = "image,col_off,row_off,width,height,labels\n"
    (t / "badclass.csv").write_text(f"{header}{naip},0,0,256,256,rooof\n")
    (t / "good.csv").write_text(f"{header}{naip},0,0,256,256,water\n")
    (t / "m2.log.csv").write_text(f"{header}{naip},0,0,256,256,water\n")  # tags named like a training log
    (t / "bg.csv").write_text(f"{header}{naip},0,0,256,256,background\n")
    (t / "outside.csv").write_text(f"{header}{naip},999999,0,256,256,water\n")
    (t / "inf.csv").write_text(f"{header}{naip},1e400,0,256,256,water\n")
    (t / "nocols.csv").write_text(f"image,labels\n{naip},water\n")
    (t / "latin1.csv").write_bytes(f"{header}{naip},0,0,256,256,eau".encode() + b"\xe9\n")
    (t / "nul.csv").write_bytes(f"{header}{naip},0,0,256,256,water\x00\n".encode())
    (t / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (t / "binary.gpkg").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    (t / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (t / "latin1.yaml").write_bytes(b"name: eaux\nclasses:\n  - name: riv\xe8re\n    color: '#0000FF'\n")
    (t / "latin1_config.yaml").write_bytes(b"usr:\n  alpha: 2 # caf\xe9\n")
    (t / "notyaml.yaml").write_text("classes: [\n  - {name: a\n")
    (t / "scalar.yaml").write_text("classes: 3\n")
    (t / "codesmap.yaml").write_text("classes:\n  - name: a\n    codes: {x: 1}\n")
    (t / "dupes.yaml").write_text("classes:\n  - name: a\n  - name: a\n")
    (t / "nullcolor.yaml").write_text("classes:\n  - name: a\n    color: #3C1098\n")
    levels = ["a: &a [" + ",".join(['"x"'] * 9) + "]"] + [
        f"{b}: &{b} [" + ",".join([f"*{a}"] * 9) + "]" for a, b in zip("abcdefghi", "bcdefghij")]
    (t / "bomb.yaml").write_text("\n".join(levels) + "\nclasses:\n  - name: a\n    descriptions: [*j]\n")  # 9^10
    _raster(t / "twoband.tif", count=2)
    _raster(t / "nodata.tif", nodata=0, fill=0)
    _raster(t / "scene.tif")
    (t / "link.tif").symlink_to(t / "scene.tif")
    os.link(t / "scene.tif", t / "hard.tif")
    shutil.copy(t / "scene.tif", t / "o_confidence.tif")
    shutil.copy(t / "scene.tif", t / "multi" / "a.tif")
    shutil.copy(t / "scene.tif", t / "multi" / "b.tif")
    shutil.copy(trained_spacenet / "model.pt", t / "ck.tif")  # a checkpoint under an unlucky name
    (t / "trunc.pt").write_bytes((trained_spacenet / "model.pt").read_bytes()[:2000])
    whole = (shared_data / NAIP).read_bytes()
    (t / "half.tif").write_bytes(whole[: len(whole) // 2])  # a download cut half-way
    (t / "gone.vrt").write_text(
        '<VRTDataset rasterXSize="64" rasterYSize="64"><SRS>EPSG:32614</SRS><GeoTransform>500000,1,0,5000000,0,-1'
        '</GeoTransform>' + "".join(
            f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource><SourceFilename relativeToVRT="1">'
            f'gone_source.tif</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>'
            for b in (1, 2, 3)) + "</VRTDataset>")
    (t / "text.pt").write_bytes(b"a")  # torch.load: IndexError (pop from empty list)
    (t / "random.pt").write_bytes(bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8)))
    (t / "many.yaml").write_text("classes:\n" + "".join(f"  - name: c{i}\n" for i in range(300)))
    (t / "nullkey.yaml").write_text("?\n")
    mask = (shared_data / "potsdam/masks/2_10_0_0_512_512.png").read_bytes()
    (t / "halfmask_png").write_bytes(mask[: len(mask) // 2])  # no .png suffix: "masks glob empty" globs *.png
    (t / "halfmasks").mkdir()
    (t / "halfmasks" / "2_10_0_0_512_512.png").write_bytes(mask[: len(mask) // 2])
    (t / "loop_a").symlink_to(t / "loop_b")
    (t / "loop_b").symlink_to(t / "loop_a")
    import geopandas as gpd
    from shapely.geometry import box

    gpd.GeoDataFrame({"kind": ["building"]}, geometry=[box(500000, 4999960, 500020, 5000000)],
                     crs="EPSG:32614").to_file(t / "labels.gpkg")
    save_file({"encoder.weight": torch.zeros(4, 4), "head.bias": torch.zeros(4)}, str(t / "names.safetensors"))
    torch.save({"visual.conv1.weight": torch.zeros(768, 3, 32, 32, dtype=torch.float16)}, t / "conv32.bin")
    (t / "trunc_weights.pt").write_bytes((t / "conv32.bin").read_bytes()[:5000])

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {t / 'pwned'}",))

    with zipfile.ZipFile(t / "evil.pt", "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps({"visual.proj": Evil()}, protocol=2))
    return t


def _snapshot(root) -> dict:
    """Every file (following no links) → sha256 of its bytes (a link → its target text)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[p] = "link:" + os.readlink(p)
        elif p.is_file():
            out[p] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[p] = "dir"
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_exit_2(case, workdir, shared_data, trained_spacenet, capfd, monkeypatch):
    _, args, words = case[:3]
    read_only = "/proc" if os.geteuid() == 0 else str(workdir / "ro")
    subs = {"{D}": str(shared_data), "{T}": str(workdir), "{M}": str(trained_spacenet / "model.pt"), "{RO}": read_only}
    argv = []
    for a in args:
        for k, v in subs.items():
            a = a.replace(k, v)
        argv.append(a)
    inputs = [shared_data / NAIP, shared_data / SPACENET, trained_spacenet / "model.pt"]
    before = _snapshot(workdir) | {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs}
    cwd = workdir / "adir"
    monkeypatch.chdir(cwd)  # relative outputs would land here: it must stay empty
    if SUB in case:
        # no CUDA in the child whatever this machine has, so "cuda absent" holds on GPU machines too
        p = subprocess.run([sys.executable, "-m", "rs_wsss_cli.main", *argv], capture_output=True, text=True,
                           timeout=600, env=dict(ENV, CUDA_VISIBLE_DEVICES=""), cwd=cwd, check=False)
        code, err = p.returncode, p.stderr
    else:
        code, err = run_main_in_process(argv, capfd)
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("rs-wsss: error: ") and words in lines[0], lines[0]
    after = _snapshot(workdir) | {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs}
    assert after == before  # nothing new, nothing removed, every byte of every input the same
    assert not (workdir / "pwned").exists()


def test_there_are_at_least_60_cases():
    assert len(CASES) >= 60


def test_the_installed_command_maps_a_bad_input_like_the_in_process_runs(workdir):
    p = run_cli("segment", workdir / "scene.tif", "-o", workdir / "scene.tif", *ZS, "--overwrite")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "is the input" in p.stderr
