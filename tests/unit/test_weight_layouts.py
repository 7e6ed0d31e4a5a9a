"""Every published weights layout loads (read without running code), and a wrong file fails before any ViT is built.

Files are random-valued, written in each exact layout: OpenAI's TorchScript archive (an open_clip CLIP in OpenAI's
names, fp16 as OpenAI ships it, scripted and saved), open_clip's hub ``.bin`` and ``.safetensors``, timm's DINOv2
``model.safetensors`` and Meta's torch-hub ``dinov2_vitb14_pretrain.pth`` (timm names + ``mask_token``).
"""

from __future__ import annotations

import json
import math
import pickle
import zipfile

import pytest
import torch

from rs_wsss.config import PriorsConfig
from rs_wsss.errors import RsWsssError, WeightsNotFound
from rs_wsss.priors import build_priors
from rs_wsss.priors.archive import read_shapes, read_tensors
from rs_wsss.priors.clip import ClipPrior
from rs_wsss.priors.dino import DinoPrior
from rs_wsss.priors.layouts import clip_shapes, dino_shapes
from rs_wsss.priors.specs import KNOWN
from rs_wsss.priors.weights import ResolvedWeights, check_file

B16, DINO_B = KNOWN["openai-vit-b-16"], KNOWN["dinov2-vit-b-14"]

TINY = "rs-wsss-test-tiny-clip"
TINY_CFG = {"embed_dim": 48, "quick_gelu": True,
            "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 16, "patch_size": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2}}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny CLIP registered with open_clip under its own name, and its random source model."""
    import open_clip
    from open_clip.model import CLIP

    d = tmp_path_factory.mktemp("cfg")
    (d / f"{TINY}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(d / f"{TINY}.json")
    torch.manual_seed(3)
    cfg = {k: v for k, v in TINY_CFG.items()}
    return CLIP(**cfg).eval()


def _shapes(model) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("attn_mask")}


def test_expected_tables_equal_the_libraries_models():
    """The name/shape tables the fast check uses are exactly open_clip's and timm's (built on the meta device)."""
    import timm
    from open_clip.factory import get_model_config
    from open_clip.model import CLIP

    for name in ("ViT-B-16-quickgelu", "ViT-B-16", "ViT-L-14"):
        with torch.device("meta"):
            model = CLIP(**get_model_config(name))
        assert clip_shapes(name) == _shapes(model), name
    with torch.device("meta"):
        dino = timm.create_model("vit_base_patch14_dinov2", pretrained=False, num_classes=0)
    assert dino_shapes(DINO_B) == _shapes(dino)


def _write_openai_torchscript(model, path):
    """OpenAI's layout: the model's own parameter names, weights converted to fp16 (as clip.model.convert_weights
    does), a TorchScript archive (torch.jit.save)."""
    import copy

    from open_clip.model import convert_weights_to_fp16

    m = copy.deepcopy(model)
    convert_weights_to_fp16(m)
    torch.jit.save(torch.jit.script(m), str(path))
    return {k: v.float() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("layout", ["openai-torchscript", "open_clip-bin", "open_clip-safetensors"])
def test_every_clip_layout_loads_the_same_model(layout, tiny_clip, tmp_path):
    from safetensors.torch import save_file

    if layout == "openai-torchscript":
        path = tmp_path / "ViT-B-16.pt"
        source = _write_openai_torchscript(tiny_clip, path)
        assert any(n.endswith("/code/__torch__/open_clip/model.py") for n in zipfile.ZipFile(path).namelist())
        with pytest.raises(Exception, match="TorchScript"):  # why a plain weights_only load is not enough
            torch.load(path, weights_only=True)
    else:
        source = {k: v for k, v in tiny_clip.state_dict().items() if not k.endswith("attn_mask")}
        if layout == "open_clip-bin":
            path = tmp_path / "open_clip_pytorch_model.bin"
            torch.save(source, path)
        else:
            path = tmp_path / "open_clip_model.safetensors"
            save_file({k: v.contiguous() for k, v in source.items()}, str(path))
    cfg = PriorsConfig(clip="open_clip:" + TINY, clip_size=64)
    prior = ClipPrior(cfg, ResolvedWeights("clip", path, "explicit"))
    loaded = prior.model.state_dict()
    for k, v in source.items():
        assert torch.equal(loaded[k], v.float()), k
    random = ClipPrior(cfg, ResolvedWeights("clip", None, "random"))
    x = torch.rand(1, 3, 64, 64)
    assert not torch.equal(prior(x).joint, random(x).joint)  # the load did something
    # decoder inference (text=False): the image tower alone, the same tensors and the same outputs, bit for bit
    image = ClipPrior(cfg, ResolvedWeights("clip", path, "explicit"), text=False)
    assert type(image.model).__name__ == "ImageOnlyClip"
    visual = {k: v for k, v in source.items() if k.startswith("visual.")}
    assert set(image.model.state_dict()) == set(visual)
    for k, v in visual.items():
        assert torch.equal(image.model.state_dict()[k], v.float()), k
    full, alone = prior(x), image(x)
    assert torch.equal(full.joint, alone.joint) and torch.equal(full.attn, alone.attn)
    assert all(torch.equal(a, b) for a, b in zip(full.tokens, alone.tokens, strict=True))
    with pytest.raises(RuntimeError, match="without its text tower"):
        image.encode_text(["building"])
    wanted = set(list(visual)[:3])
    assert set(read_tensors(path, wanted)) == wanted  # only the tensors asked for are read


def test_an_image_only_prior_neither_imports_open_clip_nor_reads_the_text_tower(tmp_path):
    """``segment`` with a trained model builds CLIP without its text tower: open_clip (and torchvision) stay
    unimported, and the load reads the image tower's tensors only; the full prior imports both."""
    import subprocess
    import sys

    path = tmp_path / "open_clip_vit_b16_openai.bin"
    _table_file(path, clip_shapes("ViT-B-16"))
    code = ("import sys\nfrom pathlib import Path\n"
            "from rs_wsss.config import PriorsConfig\n"
            "from rs_wsss.priors.clip import ClipPrior\n"
            "from rs_wsss.priors.weights import ResolvedWeights\n"
            f"p = ClipPrior(PriorsConfig(), ResolvedWeights('clip', Path({str(path)!r}), 'explicit'), text={{}})\n"
            "n = sum(t.numel() for t in p.model.state_dict().values())\n"
            "print('open_clip' in sys.modules, 'torchvision' in sys.modules, n)\n")
    runs = {text: subprocess.run([sys.executable, "-c", code.format(text)], capture_output=True, text=True,
                                 check=True).stdout.split() for text in (False, True)}
    visual = sum(math.prod(s) for k, s in clip_shapes("ViT-B-16").items() if k.startswith("visual."))
    assert runs[False] == ["False", "False", str(visual)]
    assert runs[True][:2] == ["True", "True"] and int(runs[True][2]) > visual


@pytest.fixture(scope="module")
def dino_source():
    torch.manual_seed(4)
    return DinoPrior(PriorsConfig(dino_size=56), ResolvedWeights("dino", None, "random"))


@pytest.mark.parametrize("layout", ["timm-safetensors", "meta-torchhub-pth"])
def test_every_dino_layout_loads_the_same_model(layout, dino_source, tmp_path):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in dino_source.model.state_dict().items()}
    if layout == "timm-safetensors":
        path = tmp_path / "model.safetensors"
        save_file(state, str(path))
    else:  # Meta's names are timm's, plus the iBOT mask token, as a torch.save zip
        path = tmp_path / "dinov2_vitb14_pretrain.pth"
        torch.save({**state, "mask_token": torch.zeros(1, 768)}, path)
    b = DinoPrior(PriorsConfig(dino_size=56), ResolvedWeights("dino", path, "explicit"))
    x = torch.rand(1, 3, 56, 56)
    assert torch.equal(dino_source(x), b(x))


def _table_file(path, table, dtype=torch.float16):
    torch.save({k: torch.zeros(s, dtype=dtype) for k, s in table.items()}, path)


def test_a_wrong_architecture_fails_before_any_model_is_built(tmp_path, monkeypatch):
    import open_clip
    import timm

    def built(*a, **k):
        raise AssertionError("a model was built before the file was checked")

    monkeypatch.setattr(open_clip, "create_model", built)
    monkeypatch.setattr(timm, "create_model", built)
    b32 = tmp_path / "clip_b32.bin"
    _table_file(b32, clip_shapes("ViT-B-32"))
    dino = tmp_path / "dinov2_vitb14.bin"
    _table_file(dino, dino_shapes(DINO_B))
    cfg = PriorsConfig()
    with pytest.raises(WeightsNotFound) as exc:
        build_priors(cfg, str(b32), need_dino=False)
    msg = str(exc.value)
    assert "looks like open_clip ViT-B-32 (width 768, 12 blocks, patch 32), like remoteclip-vit-b-32" in msg
    assert "visual.conv1.weight is 768x3x32x32" in msg and "--clip-prior" in msg
    assert "\n" not in msg
    with pytest.raises(WeightsNotFound, match=r"looks like DINOv2 ViT-B/14 \(width 768, 12 blocks, patch 14\)"):
        build_priors(cfg, str(dino), need_dino=False)  # a DINOv2 file given as CLIP
    clip_file = tmp_path / "open_clip_vit_b16_openai.bin"
    _table_file(clip_file, clip_shapes("ViT-B-16"))
    d = tmp_path / "dir"
    d.mkdir()
    (d / "open_clip_vit_b16_openai.bin").symlink_to(clip_file)
    (d / "dinov2_vitb14.bin").symlink_to(b32)  # the DINO slot holds a CLIP file: refused before CLIP is built
    with pytest.raises(WeightsNotFound, match="not dinov2-vit-b-14"):
        build_priors(cfg, str(d))


def test_missing_and_extra_tensors_are_named(tmp_path):
    table = dict(clip_shapes("ViT-B-16"))
    table.pop("visual.proj")
    table["visual.extra_head.weight"] = (3, 3)
    path = tmp_path / "clip.bin"
    _table_file(path, table)
    with pytest.raises(WeightsNotFound) as exc:
        check_file(ResolvedWeights("clip", path, "explicit"), B16)
    assert "1 tensors missing, e.g. visual.proj" in str(exc.value) and "visual.extra_head.weight" in str(exc.value)


def test_wrapped_and_prefixed_state_dicts_are_unwrapped(tmp_path):
    table = dino_shapes(DINO_B)
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": torch.zeros(s, dtype=torch.float16) for k, s in table.items()}}, path)
    check_file(ResolvedWeights("dino", path, "explicit"), DINO_B)  # no error


def test_a_malicious_pickle_is_refused_without_running(tmp_path):
    """A zip whose data.pkl calls os.system: torch.jit.load/torch.load(weights_only=False) would run it; we do not."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps({"visual.proj": Evil()}, protocol=2))
        zf.writestr("evil/version", "3\n")
    for reader in (read_shapes, read_tensors):
        with pytest.raises(Exception, match="os|posix|system"):
            reader(path)
    assert not marker.exists()
    with pytest.raises(RsWsssError, match="not a readable weights file"):
        check_file(ResolvedWeights("clip", path, "explicit"), B16)


@pytest.mark.parametrize("content", [b"", b"hello,world\n", b"PK\x03\x04broken zip", b"\x80\x02garbage"])
def test_files_that_are_not_weights_are_one_line_errors(content, tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(content)
    with pytest.raises(RsWsssError) as exc:
        check_file(ResolvedWeights("clip", path, "explicit"), B16)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_the_cli_refuses_a_wrong_file_before_torch_is_imported(tmp_path, shared_data):
    """segment --zero-shot / train check --weights files from names and shapes before importing torch."""
    import subprocess
    import sys

    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"cls_token": torch.zeros(1, 1, 8), "blocks.0.attn.qkv.weight": torch.zeros(24, 8)}, str(path))
    code = ("import sys\nfrom rs_wsss_cli.main import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print('exit', e.code, 'torch' in sys.modules)\n")
    scene = shared_data / "spacenet/sample_geotiff.tif"
    p = subprocess.run([sys.executable, "-c", code, "segment", str(scene), "-o", str(tmp_path / "o.gpkg"),
                        "--zero-shot", "--classes", "landcover", "--weights", str(path)], capture_output=True,
                       text=True, timeout=300, check=False)
    assert p.stdout.strip() == "exit 2 False", (p.stdout, p.stderr)
    assert "none of the expected names" in p.stderr and p.stderr.count("\n") == 1
