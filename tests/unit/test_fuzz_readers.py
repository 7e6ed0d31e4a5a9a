"""Every file reader against arbitrary bytes and truncations of real files (issue 26): a checkpoint, a weights file
(zip, safetensors, pickle), tags CSV/GPKG, class-set and config YAML, an AOI layer, masks and rasters (GeoTIFF, PNG,
VRT). Each either reads the file or raises the one user-facing error (RsWsssError, one line); never another
exception, which the CLI would print as "internal error" with exit 1.

Truncations cut a real file (from ``../shared/data`` or written here by the library itself) at an arbitrary byte.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rs_wsss.errors import RsWsssError

FUZZ = settings(max_examples=int(os.environ.get("RS_WSSS_FUZZ_EXAMPLES", "40")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
NAIP = "naip/m_4709963_se_14_1_20200831.tif"
POTSDAM_MASK = "potsdam/masks/2_10_0_0_512_512.png"
LABELS = "spacenet/geotiff_labels.geojson"


def _refused_in_one_line(read, path: Path) -> None:
    """``read(path)`` succeeds or raises RsWsssError with a one-line message that names the file."""
    try:
        read(path)
    except RsWsssError as exc:
        text = str(exc)
        assert "\n" not in text and "\r" not in text, repr(text)
        assert path.name in text, text  # the message names the file it refuses


# ---- the readers ---------------------------------------------------------------------------------------------
def _checkpoint(path: Path) -> None:
    from rs_wsss.model.checkpoint import load_checkpoint

    load_checkpoint(path)


def _weights(path: Path) -> None:
    from rs_wsss.priors.archive import read_shapes, read_tensors

    read_shapes(path)
    read_tensors(path)


def _tags(path: Path, scene: Path) -> None:
    from rs_wsss.classes import load_class_set
    from rs_wsss.raster.tags import read_tags

    read_tags(path, [str(scene)], load_class_set("landcover"))


def _class_set(path: Path) -> None:
    from rs_wsss.classes import load_class_set

    load_class_set(str(path))


def _config(path: Path) -> None:
    from rs_wsss.config import load_config

    load_config(path)


def _aoi(path: Path) -> None:
    from rs_wsss.raster.extent import read_aoi

    read_aoi(path, "EPSG:32614")


def _raster(path: Path) -> None:
    """What segment, train, tags from-raster and evaluate do first: open and preflight every band."""
    from rs_wsss.raster.io import check_bands

    check_bands([str(path)], None)


def _mask(path: Path) -> None:
    from rs_wsss.classes import load_class_set
    from rs_wsss.raster.io import open_dataset, preflight
    from rs_wsss.raster.masks import code_table, read_mask

    with open_dataset(path) as ds:
        preflight(ds, path)
        read_mask(ds, None, code_table(load_class_set("potsdam")))


# ---- real files to cut ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(tmp_path_factory, shared_data) -> dict[str, bytes]:
    """Name → bytes of a real file of each kind."""
    import torch
    from safetensors.torch import save_file

    from rs_wsss.classes import load_class_set
    from rs_wsss.config import tiny_config
    from rs_wsss.model.checkpoint import save_checkpoint
    from rs_wsss.model.wsss import WSSS
    from rs_wsss.priors import build_priors

    d = tmp_path_factory.mktemp("real")
    cfg = tiny_config()
    model = WSSS(cfg, load_class_set("landcover"), *build_priors(cfg.priors))
    save_checkpoint(d / "m.pt", model)
    tensors = {"visual.conv1.weight": torch.randn(8, 3, 16, 16), "visual.proj": torch.randn(8, 4)}
    torch.save(tensors, d / "w.pt")
    torch.save(tensors, d / "legacy.pt", _use_new_zipfile_serialization=False)
    save_file(tensors, str(d / "w.safetensors"))
    (d / "t.csv").write_text("image,col_off,row_off,width,height,labels\n"
                             f"{shared_data / NAIP},0,0,256,256,water;vegetation\n")
    vrt = (f'<VRTDataset rasterXSize="64" rasterYSize="64"><SRS>EPSG:32614</SRS>'
           '<GeoTransform>500000,1,0,5000000,0,-1</GeoTransform><VRTRasterBand dataType="Byte" band="1">'
           f'<SimpleSource><SourceFilename relativeToVRT="0">{shared_data / NAIP}</SourceFilename>'
           '<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>')
    root = Path(__file__).resolve().parents[2]
    files = {"m.pt": (d / "m.pt").read_bytes(), "w.pt": (d / "w.pt").read_bytes(),
             "legacy.pt": (d / "legacy.pt").read_bytes(), "w.safetensors": (d / "w.safetensors").read_bytes(),
             "t.csv": (d / "t.csv").read_bytes(), "scene.vrt": vrt.encode(),
             "landcover.yaml": (root / "configs/classes/landcover.yaml").read_bytes(),
             "tiny.yaml": (root / "configs/tiny.yaml").read_bytes(),
             "aoi.geojson": (shared_data / LABELS).read_bytes(), "mask.png": (shared_data / POTSDAM_MASK).read_bytes(),
             "scene.tif": (shared_data / NAIP).read_bytes()}
    import geopandas as gpd

    gpd.read_file(shared_data / LABELS).to_file(d / "aoi.gpkg", driver="GPKG")
    files["aoi.gpkg"] = (d / "aoi.gpkg").read_bytes()
    from rs_wsss.raster.tags import TagRow, template_grid, write_tags

    grid = [TagRow(r.image, r.window, ("water",), r.row) for r in template_grid([str(shared_data / NAIP)], 256, 0)]
    write_tags(grid[:4], d / "t.gpkg")
    files["t.gpkg"] = (d / "t.gpkg").read_bytes()
    return _Files(files)


class _Files(dict):
    def __repr__(self) -> str:  # hypothesis prints its arguments when a case fails: names, not megabytes
        return f"<real files: {', '.join(self)}>"


READERS = {  # reader → (suffix written, real files it is fed truncated)
    "checkpoint": (_checkpoint, ".pt", ["m.pt"]),
    "weights zip": (_weights, ".pt", ["w.pt"]),
    "weights pickle": (_weights, ".bin", ["legacy.pt"]),
    "weights safetensors": (_weights, ".safetensors", ["w.safetensors"]),
    "class set": (_class_set, ".yaml", ["landcover.yaml"]),
    "config": (_config, ".yaml", ["tiny.yaml"]),
    "aoi geojson": (_aoi, ".geojson", ["aoi.geojson"]),
    "aoi gpkg": (_aoi, ".gpkg", ["aoi.gpkg"]),
    "raster tif": (_raster, ".tif", ["scene.tif"]),
    "raster vrt": (_raster, ".vrt", ["scene.vrt"]),
    "mask png": (_mask, ".png", ["mask.png"]),
}


@pytest.mark.parametrize("name", list(READERS))
@FUZZ
@given(data=st.binary(max_size=400))
def test_any_bytes(tmp_path, name, data):
    read, suffix, _ = READERS[name]
    path = tmp_path / f"fuzzed{suffix}"
    path.write_bytes(data)
    _refused_in_one_line(read, path)


@pytest.mark.parametrize("name", list(READERS))
@FUZZ
@given(cut=st.floats(0, 1, exclude_max=True), flip=st.integers(0, 2**31))
def test_truncations_and_flipped_bytes_of_a_real_file(tmp_path, real, name, cut, flip):
    read, suffix, sources = READERS[name]
    whole = real[sources[0]]
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(whole[: int(cut * len(whole))])
    _refused_in_one_line(read, path)
    damaged = bytearray(whole)  # the same file, whole but with one byte changed
    damaged[flip % len(damaged)] ^= 0xFF
    path.write_bytes(bytes(damaged))
    _refused_in_one_line(read, path)


@pytest.mark.parametrize("source, suffix", [("t.csv", ".csv"), ("t.gpkg", ".gpkg")])
@FUZZ
@given(cut=st.floats(0, 1, exclude_max=True), flip=st.integers(0, 2**31))
def test_tags_truncated_or_flipped(tmp_path, shared_data, real, source, suffix, cut, flip):
    whole = real[source]
    path = tmp_path / f"tags{suffix}"
    path.write_bytes(whole[: int(cut * len(whole))])
    _refused_in_one_line(lambda p: _tags(p, shared_data / NAIP), path)
    damaged = bytearray(whole)
    damaged[flip % len(damaged)] ^= 0xFF
    path.write_bytes(bytes(damaged))
    _refused_in_one_line(lambda p: _tags(p, shared_data / NAIP), path)


def test_the_real_files_read(tmp_path, shared_data, real):
    """The uncut files read: the refusals above are about the damage, not the reader."""
    for read, suffix, sources in READERS.values():
        path = tmp_path / f"whole{suffix}"
        path.write_bytes(real[sources[0]])
        read(path)
    for name in ("t.csv", "t.gpkg"):
        path = tmp_path / name
        path.write_bytes(real[name])
        _tags(path, shared_data / NAIP)


def test_a_truncated_tiff_is_refused_naming_gdal_s_reason(tmp_path, real):
    path = tmp_path / "half.tif"
    path.write_bytes(real["scene.tif"][: len(real["scene.tif"]) // 2])
    with pytest.raises(RsWsssError, match=r"half\.tif.*(TIFFRead|IReadBlock|failed)"):
        _raster(path)


def test_a_vrt_with_a_missing_source_names_the_source(tmp_path, real):
    path = tmp_path / "scene.vrt"
    path.write_bytes(real["scene.vrt"].replace(b".tif</Source", b"_gone.tif</Source"))
    with pytest.raises(RsWsssError, match=r"scene\.vrt.*_gone\.tif"):
        _raster(path)



def test_a_truncated_png_mask_is_refused_though_gdal_reads_it_whole_without_error(tmp_path, real):
    path = tmp_path / "half.png"
    path.write_bytes(real["mask.png"][: len(real["mask.png"]) // 2])
    with pytest.raises(RsWsssError, match=r"half\.png.*IReadBlock failed"):
        _mask(path)
