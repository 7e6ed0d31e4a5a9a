"""``rs-wsss doctor``: exit 0 when usable, 2 with the fix otherwise; every check reports what it found."""

from __future__ import annotations

import json

import rasterio

from ..conftest import run_main_in_process


def _doctor(capfd, *args: str) -> tuple[int, str]:
    return run_main_in_process(["doctor", *args], capfd)


def test_without_weights_it_is_not_usable_and_names_the_fix(capfd, monkeypatch, tmp_path):
    monkeypatch.delenv("RS_WSSS_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hub"))  # an empty hub cache: nothing resolves
    monkeypatch.setenv("RS_WSSS_CACHE", str(tmp_path / "cache"))
    from rs_wsss_cli.main import main

    capfd.readouterr()
    try:
        main(["doctor"])
    except SystemExit as exc:
        code = exc.code
    out, err = capfd.readouterr()
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--weights" in lines[0] and "clip weights" in lines[0], err
    assert "FAIL clip weights" in out and "FAIL dino weights" in out


def test_random_weights_are_usable_and_every_check_reports(capfd, monkeypatch, tmp_path):
    monkeypatch.setenv("RS_WSSS_CACHE", str(tmp_path / "cache"))
    from rs_wsss_cli.main import main

    capfd.readouterr()
    main(["doctor", "--weights", "random", "--device", "cpu", "--json"])  # returns: exit 0
    report = json.loads(capfd.readouterr().out)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["usable"] is True
    assert {"torch", "GDAL/PROJ", "CPU", "GPU", "precision", "clip weights", "dino weights", "cache folder",
            "temporary folder"} <= set(checks)
    assert f"GDAL {rasterio.__gdal_version__}" in checks["GDAL/PROJ"]["found"]
    import torch

    from rs_wsss.runtime import choose_precision

    picked = str(choose_precision("auto", "cpu")).removeprefix("torch.")
    assert f"auto → {picked}" in checks["precision"]["found"] and "runs on cpu" in checks["precision"]["found"]
    assert torch.__version__ in checks["torch"]["found"]
    assert str(tmp_path / "cache") in checks["cache folder"]["found"]
    assert "random weights" in checks["clip weights"]["found"]


def test_an_unwritable_cache_folder_is_not_usable(capfd, monkeypatch, tmp_path):
    (tmp_path / "file").write_text("a file where the cache folder should be")
    monkeypatch.setenv("RS_WSSS_CACHE", str(tmp_path / "file" / "cache"))
    code, err = _doctor(capfd, "--weights", "random", "--device", "cpu")
    assert code == 2 and "cache folder" in err and "RS_WSSS_CACHE" in err, err


def test_a_hidden_gpu_is_explained_and_fails_only_when_asked_for(capfd, monkeypatch, tmp_path):
    monkeypatch.setenv("RS_WSSS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    code, err = _doctor(capfd, "--weights", "random", "--device", "cuda")
    assert code == 2 and "GPU" in err, err
    from rs_wsss_cli.main import main

    capfd.readouterr()
    main(["doctor", "--weights", "random", "--json"])  # --device auto: the CPU is enough
    checks = {c["name"]: c for c in json.loads(capfd.readouterr().out)["checks"]}
    assert checks["GPU"]["ok"] is False and checks["GPU"]["fix"] and "not used" in checks["GPU"]["found"]
