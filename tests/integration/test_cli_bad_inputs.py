"""Every bad input: exit code 2, exactly one line on stderr naming the problem, no traceback, no output left."""

from __future__ import annotations

import os

import pytest

from .conftest import run_cli

NAIP = "naip/m_4709963_se_14_1_20200831.tif"
SPACENET = "spacenet/sample_geotiff.tif"

# (id, args with {D}=shared data, {T}=tmp dir, {M}=a trained model, {RO}=an unwritable directory, expected words in the message)
CASES = [
    ("missing raster", ["segment", "{T}/nope.tif", "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover"], "not found"),
    ("corrupt raster", ["segment", "{T}/corrupt.tif", "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover"], "cannot read raster"),
    ("unknown class set", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "nosuchset"], "unknown class set"),
    ("output exists", ["segment", "{D}/" + NAIP, "-o", "{T}/exists.gpkg", "--zero-shot", "--classes", "landcover", "--tiny"], "output exists"),
    ("missing output dir", ["segment", "{D}/" + NAIP, "-o", "{T}/no/such/dir/o.gpkg", "--zero-shot", "--classes", "landcover"], "does not exist"),
    ("cuda absent", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover", "--tiny", "--device", "cuda"], "CUDA"),
    ("model and zero-shot", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--model", "{M}", "--classes", "landcover"], "either"),
    ("zero-shot without classes", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--tiny"], "--classes"),
    ("not a checkpoint", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--model", "{T}/corrupt.tif"], "not an rs-wsss checkpoint"),
    ("checkpoint for another class set", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--model", "{M}", "--classes", "potsdam"], "trained for classes"),
    ("bad output suffix", ["segment", "{D}/" + NAIP, "-o", "{T}/o.png", "--zero-shot", "--classes", "landcover"], "must end in"),
    ("bad scales", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover", "--tiny", "--scales", "a,b"], "--scales"),
    ("bad band numbers", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover", "--tiny", "--bands", "9,1,2"], "bands"),
    ("unknown config key", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover", "--tiny", "--set", "usr.alpah=2"], "unknown key"),
    ("tags with unknown class", ["train", "--tags", "{T}/badclass.csv", "{D}/" + NAIP, "-o", "{T}/m.pt", "--classes", "landcover", "--tiny"], "unknown class 'rooof'"),
    ("tags not matching scenes", ["train", "--tags", "{T}/good.csv", "{D}/" + NAIP, "{D}/" + SPACENET, "-o", "{T}/m.pt", "--classes", "landcover", "--tiny"], "has no rows"),
    ("missing tags file", ["train", "--tags", "{T}/none.csv", "{D}/" + NAIP, "-o", "{T}/m.pt", "--classes", "landcover", "--tiny"], "tags file not found"),
    ("train output exists", ["train", "--tags", "{T}/good.csv", "{D}/" + NAIP, "-o", "{T}/exists.gpkg", "--classes", "landcover", "--tiny"], "output exists"),
    ("vector field missing", ["tags", "from-vector", "{D}/" + SPACENET, "--labels", "{D}/spacenet/geotiff_labels.geojson", "--field", "kind", "-o", "{T}/t.csv"], "field 'kind' not found"),
    ("vector value not a class", ["tags", "from-vector", "{D}/" + SPACENET, "--labels", "{D}/spacenet/geotiff_labels.geojson", "--field", "building", "-o", "{T}/t.csv"], "not classes"),
    ("masks glob empty", ["tags", "from-raster", "{D}/" + SPACENET, "--masks", "{T}/*.png", "--classes", "landcover", "-o", "{T}/t.csv"], "no files"),
    ("evaluate size mismatch", ["evaluate", "{D}/potsdam/masks/2_10_0_0_512_512.png", "{D}/spacenet/sample_fp_mask_from_geojson.tif", "--classes", "potsdam"], "cannot align"),
    ("unknown option", ["segment", "{D}/" + NAIP, "--frobnicate"], "No such option"),
    ("unwritable output dir", ["segment", "{D}/" + NAIP, "-o", "{RO}/o.gpkg", "--zero-shot", "--classes", "landcover", "--tiny"], "not writable"),
    ("train into unwritable dir", ["train", "--tags", "{T}/good.csv", "{D}/" + NAIP, "-o", "{RO}/m.pt", "--classes", "landcover", "--tiny"], "not writable"),
    ("weights file is not weights", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover", "--weights", "{T}/good.csv"], "not a weights file"),
    ("weights dir without weights", ["segment", "{D}/" + NAIP, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover", "--weights", "{T}/ro"], "no clip weights"),
    ("config is not a mapping", ["train", "--tags", "{T}/good.csv", "{D}/" + NAIP, "-o", "{T}/m.pt", "--classes", "landcover", "--config", "{T}/good.csv"], "YAML mapping"),
    ("zero iterations", ["train", "--tags", "{T}/good.csv", "{D}/" + NAIP, "-o", "{T}/m.pt", "--classes", "landcover", "--tiny", "--iters", "0"], "--iters"),
    ("tile too small", ["tags", "template", "{D}/" + NAIP, "-o", "{T}/t.csv", "--tile", "0"], "--tile"),
    ("several scenes into one file", ["segment", "{D}/" + NAIP, "{D}/" + SPACENET, "-o", "{T}/o.gpkg", "--zero-shot", "--classes", "landcover", "--tiny"], "directory"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, shared_data):
    t = tmp_path_factory.mktemp("bad")
    (t / "ro").mkdir(mode=0o555)  # read-only for a normal user; root writes anywhere, so root gets /proc (below)
    (t / "corrupt.tif").write_bytes(b"II*\x00 this is not a tiff")
    (t / "exists.gpkg").write_text("keep me")
    naip = shared_data / NAIP
    (t / "badclass.csv").write_text(f"image,col_off,row_off,width,height,labels\n{naip},0,0,256,256,rooof\n")
    (t / "good.csv").write_text(f"image,col_off,row_off,width,height,labels\n{naip},0,0,256,256,water\n")
    return t


@pytest.mark.parametrize("name,args,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_exit_2(name, args, words, workdir, shared_data, trained_spacenet):
    before = {p: p.stat().st_mtime for p in workdir.rglob("*")}
    read_only = "/proc" if os.geteuid() == 0 else str(workdir / "ro")
    subs = {"{D}": str(shared_data), "{T}": str(workdir), "{M}": str(trained_spacenet / "model.pt"), "{RO}": read_only}
    argv = []
    for a in args:
        for k, v in subs.items():
            a = a.replace(k, v)
        argv.append(a)
    p = run_cli(*argv)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert words in lines[0], lines[0]
    after = {p: p.stat().st_mtime for p in workdir.rglob("*")}
    assert after == before  # nothing new, nothing touched
    assert (workdir / "exists.gpkg").read_text() == "keep me"
