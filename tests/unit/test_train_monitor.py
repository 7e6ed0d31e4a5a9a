"""Training log, report and validation on real Potsdam crops with the tiny model: one CSV row per step (also across an
interrupted and resumed run), previews and curves in the report, and validation keeping the best checkpoint beside the
last one."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from rasterio.windows import Window

from rs_wsss.classes import load_class_set
from rs_wsss.config import tiny_config
from rs_wsss.errors import RsWsssError
from rs_wsss.model.checkpoint import load_checkpoint
from rs_wsss.model.wsss import WSSS
from rs_wsss.priors import build_priors
from rs_wsss.raster.io import open_scene
from rs_wsss.train import validate
from rs_wsss.train.batches import Batch
from rs_wsss.train.loop import poly_lambda, train
from rs_wsss.train.monitor import FIELDS, TrainMonitor, monitor_paths, read_log
from rs_wsss.train.previews import read_tiles

CS = load_class_set("potsdam")
SETS = ["train.report_every=3", "train.checkpoint_every=4", "train.val_tiles=4"]


@pytest.fixture(scope="module", autouse=True)
def _cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RS_WSSS_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def data(shared_data):
    """The Potsdam scene opened as training reads it, two 128 px windows at 64 px, tags from the index mask."""
    path = str(shared_data / "potsdam/images/2_10_0_0_512_512.png")
    mask = np.asarray(Image.open(shared_data / "potsdam/masks/2_10_0_0_512_512.png"))
    scene = open_scene(path)
    wins = [Window(0, 0, 128, 128), Window(256, 192, 128, 128)]
    images = read_tiles({path: scene}, [(path, w) for w in wins], 64)
    tags = torch.zeros(len(wins), CS.num_classes)
    for i, w in enumerate(wins):
        for v in np.unique(mask[w.row_off : w.row_off + 128, w.col_off : w.col_off + 128]):
            if v > 0:
                tags[i, v - 1] = 1
    yield {"path": path, "scenes": {path: scene}, "images": images, "tags": tags,
           "masks": shared_data / "potsdam/masks"}
    scene.close()


def _run(data, out, iters, resume=False, fail_at=None, validator=True):
    cfg = tiny_config([f"train.iters={iters}", *SETS])
    torch.manual_seed(0)
    model = WSSS(cfg, CS, *build_priors(cfg.priors))
    val = validate.from_masks(data["masks"], data["scenes"], CS, cfg) if validator else None
    extra = {"norms": {}}  # one dict for the monitor and the loop's checkpoints, as run_training passes it
    mon = TrainMonitor(out, cfg, CS, resume, (data["images"], data["tags"], ["a", "b"]), val, extra)

    def batch(step):
        if step == fail_at:
            raise KeyboardInterrupt
        return Batch(data["images"], data["tags"])

    res = train(model, batch, cfg.train, out, resume, extra=extra, on_step=mon)
    return mon, mon.finish(model), res, cfg


def test_log_report_and_best_checkpoint(data, tmp_path):
    out = tmp_path / "model.pt"
    mon, files, res, cfg = _run(data, out, 7)
    paths = monitor_paths(out)
    assert set(files) == {"log", "report", "curves", "previews", "best"}
    rows = read_log(paths["log"])
    assert [r["step"] for r in rows] == list(range(1, 8))  # one row per step
    assert list(rows[0]) == FIELDS
    assert [r["loss"] for r in rows] == pytest.approx(res["losses"], rel=1e-5)
    assert [r["L_seg"] for r in rows] == pytest.approx(res["seg"], rel=1e-5)
    f = poly_lambda(cfg.train)
    assert [r["lr"] for r in rows] == pytest.approx([cfg.train.lr * f(s) for s in range(7)], rel=1e-5)
    assert all(0 <= r["pseudo_fraction"] <= 1 for r in rows) and all(r["seconds"] > 0 for r in rows)
    # validation at steps 3 and 6 (report_every) and at the last step 7; best = the highest score, last = model.pt
    assert [v["step"] for v in mon.val] == [3, 6, 7]
    best = max(mon.val, key=lambda v: v["score"])
    state = load_checkpoint(paths["best"])
    assert state["step"] == best["step"] and state["extra"]["val"]["score"] == pytest.approx(best["score"])
    assert state["optimizer"] is None and "norms" in state["extra"]  # an inference checkpoint, segment-ready
    assert load_checkpoint(out)["step"] == 7
    page = paths["report"].read_text()
    assert 'id="random-weights"' in page and 'id="validation"' in page
    assert page.count("data:image/png") == 1 + 3  # curves + previews at steps 3, 6, 7
    from rs_wsss.report.html import _fmt

    secs = [r["seconds"] for r in mon.rows[1:]]  # the rate leaves the warm-up step out
    assert "steps/s" in page and _fmt(len(secs) / sum(secs)) in page and "<td>fp32</td>" in page
    for p in ("curves", "previews"):
        png = np.asarray(Image.open(io.BytesIO(paths[p].read_bytes())).convert("RGB")).astype(int)
        assert png.std() > 20
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_resume_keeps_one_row_per_step_and_the_validation_history(data, tmp_path):
    out = tmp_path / "model.pt"
    with pytest.raises(KeyboardInterrupt):
        _run(data, out, 10, fail_at=6)  # log flushed at 3 (report) and 4 (checkpoint) and 6 (report)
    assert [r["step"] for r in read_log(monitor_paths(out)["log"])] == list(range(1, 7))
    state = load_checkpoint(out)
    assert state["step"] == 4 and [v["step"] for v in state["extra"]["validation"]] == [3]
    mon, *_ = _run(data, out, 10, resume=True)  # steps 5, 6 are run again: their old rows go
    assert [r["step"] for r in read_log(monitor_paths(out)["log"])] == list(range(1, 11))
    assert [v["step"] for v in mon.val] == [3, 6, 9, 10]  # step 3 from the checkpoint, then this run's
    assert [v["step"] for v in load_checkpoint(out)["extra"]["validation"]] == [3, 6, 9, 10]


def test_stale_best_checkpoint_is_refused(data, tmp_path):
    out = tmp_path / "model.pt"
    monitor_paths(out)["best"].write_bytes(b"old")
    with pytest.raises(RsWsssError, match="model.best.pt"):
        TrainMonitor(out, tiny_config(), CS)


def test_tag_miou_by_hand():
    """Two classes counted over three tiles: class 1 TP 1, FP 1, FN 0 → 1/2; class 2 TP 0, FP 0, FN 1 → 0."""
    cs = load_class_set("potsdam")
    cfg = tiny_config(["train.val_min_fraction=0.25"])
    valid = np.ones((2, 2), bool)

    def lab(*c):
        return np.isin(np.arange(1, cs.num_classes + 1), c)

    v = validate.Validator("tags", [], [(lab(1), valid), (lab(2), valid), (lab(), valid)], cs, cfg, "t")
    preds = [np.array([[1, 0], [0, 0]]), np.array([[0, 0], [0, 3]]), np.array([[1, 1], [0, 0]])]
    res = v._tags([p.astype(np.uint8) for p in preds])
    per = res["per_class"]
    assert per[cs.names[1]] == pytest.approx(0.5) and per[cs.names[2]] == 0.0
    assert per[cs.names[3]] == 0.0 and per[cs.names[4]] is None  # class 3: a false positive only; 4: never seen
    assert res["score"] == pytest.approx(np.nanmean([0.5, 0.0, 0.0]))


def test_val_masks_need_matching_names(data, tmp_path):
    with pytest.raises(RsWsssError, match="no mask named like"):
        validate.from_masks(tmp_path, data["scenes"], CS, tiny_config())
