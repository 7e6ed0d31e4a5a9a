"""The prior registry (``priors/specs.py``): every known prior's spec matches the libraries' models at its real size,
loads from a random-valued file in its published layout under its published name, and a file that is not the named
prior is refused before any model is built.

Real sizes are checked on the meta device (no memory). Files are written for *narrow stand-ins*: the known prior's
spec with its patch, activation, text positions, registers and layout kept, but width 64 and 2 blocks (and a small
text tower), registered with open_clip / built by timm under the same key names, because random files of ViT-L size
(1.7 GB) do not fit CI. Refusal tests use header-only safetensors files holding the real names and shapes (the check
reads names and shapes only, so no tensor data is needed).
"""

from __future__ import annotations

import json
import struct
import zipfile

import pytest
import torch

from rs_wsss.config import PriorsConfig
from rs_wsss.errors import RsWsssError, WeightsNotFound
from rs_wsss.priors import build_priors
from rs_wsss.priors.clip import ClipPrior, build_clip
from rs_wsss.priors.dino import DinoPrior
from rs_wsss.priors.layouts import clip_shapes, dino_shapes, expected_shapes
from rs_wsss.priors.specs import KNOWN, TRAINING, crop_size, names, spec_for, with_overrides
from rs_wsss.priors.weights import resolve

CLIPS, DINOS = names("clip"), names("dino")
# the crops the issue states: the paper's 20 × 20 CLIP grid and 22 × 22 DINO grid at each patch size
CROPS = {"openai-vit-b-16": 320, "farslip-vit-b-16": 320, "remoteclip-vit-b-32": 640, "georsclip-vit-b-32": 640,
         "skyclip-vit-b-32": 640, "remoteclip-vit-l-14": 280, "georsclip-vit-l-14": 280, "skyclip-vit-l-14": 280,
         **{n: 308 for n in DINOS}}
GELU_ONLY = {"skyclip-vit-b-32"}  # SkyCLIP ViT-B-32 starts from LAION-2B: GELU; every other CLIP is OpenAI-based


def test_the_registry_holds_the_issues_names_and_crops():
    assert set(CLIPS) == {"openai-vit-b-16", "remoteclip-vit-b-32", "remoteclip-vit-l-14", "georsclip-vit-b-32",
                          "georsclip-vit-l-14", "skyclip-vit-b-32", "skyclip-vit-l-14", "farslip-vit-b-16"}
    assert set(DINOS) == {f"dinov2-vit-{s}-14{r}" for s in "sbl" for r in ("", "-reg")}
    for name, crop in CROPS.items():
        assert crop_size(PriorsConfig(**{spec_for(name, KNOWN[name].role).role: name}), KNOWN[name].role) == crop
    assert crop_size(PriorsConfig(clip="remoteclip-vit-l-14", clip_grid=32), "clip") == 32 * 14  # grid from config
    assert crop_size(PriorsConfig(clip="remoteclip-vit-l-14", clip_size=336), "clip") == 336  # or the size itself


@pytest.mark.parametrize("name", CLIPS)
def test_clip_specs_match_open_clip_at_the_real_size(name):
    """Built on the meta device from the spec: patch, width, depth, heads, activation and text positions are the
    spec's, and the fast check's name/shape table is exactly the model's."""
    spec = KNOWN[name]
    with torch.device("meta"):
        model = build_clip(spec.clip_config())
    v = model.visual
    assert (v.conv1.kernel_size[0], v.conv1.out_channels, len(v.transformer.resblocks)) == (
        spec.patch, spec.width, spec.blocks)
    assert v.transformer.resblocks[0].attn.num_heads == spec.heads
    act = type(v.transformer.resblocks[0].mlp.gelu).__name__
    assert act == ("GELU" if name in GELU_ONLY else "QuickGELU")
    assert model.positional_embedding.shape[0] == (248 if name.startswith("farslip") else 77)
    shapes = {k: tuple(t.shape) for k, t in model.state_dict().items() if not k.endswith("attn_mask")}
    assert expected_shapes(spec) == shapes


@pytest.mark.parametrize("name", DINOS)
def test_dino_specs_match_timm_at_the_real_size(name):
    import timm

    spec = KNOWN[name]
    with torch.device("meta"):
        model = timm.create_model(spec.arch, pretrained=False, num_classes=0)  # timm's own defaults, no spec kwargs
    assert (model.embed_dim, len(model.blocks), model.blocks[0].attn.num_heads) == (spec.width, spec.blocks,
                                                                                    spec.heads)
    assert model.num_prefix_tokens == 1 + spec.registers
    assert dino_shapes(spec) == {k: tuple(t.shape) for k, t in model.state_dict().items()}


# ---- narrow stand-ins, written in each published layout ----------------------------------------------------------
def _narrow_clip(name, tmp_path, monkeypatch):
    """The spec of ``name`` with width 64 and 2 blocks (text tower 32 wide, 1 block), registered with open_clip."""
    import open_clip

    spec = KNOWN[name]
    arch = f"rs-wsss-narrow-{name}"
    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 4 * spec.patch, "layers": 2, "width": 64, "head_width": 16,
                                           "patch_size": spec.patch},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / f"{arch}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / f"{arch}.json")
    narrow = with_overrides(spec, arch=arch, width=64, blocks=2, heads=4)
    monkeypatch.setitem(KNOWN, name, narrow)
    return narrow


def _write_clip(spec, source: dict, folder) -> object:
    """``source`` (a state dict) in ``spec``'s published layout under its published name; the file's path."""
    if spec.layouts[0] == TRAINING:  # SkyScript: {"epoch", "state_dict" (module.…), "optimizer"} zipped
        params = [torch.nn.Parameter(v.clone()) for v in source.values() if v.is_floating_point()]
        opt = torch.optim.AdamW(params)
        sum(p.sum() for p in params).backward()
        opt.step()  # the optimizer state holds tensors too: they must not be taken for the model's
        inner = folder / spec.files[0]
        torch.save({"epoch": 20, "name": "skyclip", "state_dict": {f"module.{k}": v for k, v in source.items()},
                    "optimizer": opt.state_dict()}, inner)
        path = folder / "SkyCLIP_release.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.write(inner, f"SkyCLIP_release/{spec.files[0]}")
            zf.writestr("SkyCLIP_release/params.txt", "lr: 0.0001\n")
        inner.unlink()
        return path
    path = folder / spec.files[0]
    torch.save(source, path)  # RemoteCLIP / GeoRSCLIP / FarSLIP: a bare state dict; open_clip's hub .bin likewise
    return path


@pytest.mark.parametrize("name", CLIPS)
def test_every_known_clip_prior_loads_from_its_published_file(name, tmp_path, monkeypatch):
    spec = _narrow_clip(name, tmp_path, monkeypatch)
    torch.manual_seed(5)
    source_model = build_clip(spec.clip_config())
    source = {k: v for k, v in source_model.state_dict().items() if not k.endswith("attn_mask")}
    folder = tmp_path / "weights"
    folder.mkdir()
    path = _write_clip(spec, source, folder)
    cfg = PriorsConfig(clip=name, clip_size=4 * spec.patch)
    rw = resolve("clip", cfg, str(folder))  # found in the folder by its published name (or, zipped, its hint)
    assert rw.path == path
    prior = ClipPrior(cfg, rw)
    loaded = prior.model.state_dict()
    for k, v in source.items():
        assert torch.equal(loaded[k], v), k
    act = type(prior.model.visual.transformer.resblocks[0].mlp.gelu).__name__
    assert act == ("GELU" if name in GELU_ONLY else "QuickGELU")  # from the spec: the file cannot tell
    tokens = prior.tokenizer(["an overhead satellite image of a roof."])
    assert tokens.shape == (1, spec.context_length)  # Long-CLIP's 248 for FarSLIP, open_clip's tokenizer
    assert prior.encode_text(["a roof"]).shape == (1, 32)
    assert prior.identifier.startswith(f"{name}|clip:{path.name}:")  # the KB cache and checkpoints key on it
    import hashlib

    from rs_wsss.priors.specs import prior_record

    assert prior_record(prior) == {"name": name, "arch": spec.arch, "file": path.name, "size": path.stat().st_size,
                                   "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}  # what checkpoints keep
    x = torch.rand(1, 3, 4 * spec.patch, 4 * spec.patch)
    f = prior(x)
    assert len(f.tokens) == 2 and f.tokens[0].shape == (1, 64, 4, 4)
    assert not torch.equal(f.joint, ClipPrior(cfg, resolve("clip", cfg, "random"))(x).joint)


def _narrow_dino(name, monkeypatch):
    import timm

    spec = with_overrides(KNOWN[name], width=64, blocks=2, heads=4)
    monkeypatch.setitem(KNOWN, name, spec)
    torch.manual_seed(6)
    model = timm.create_model(spec.arch, pretrained=False, num_classes=0, embed_dim=64, depth=2, num_heads=4,
                              dynamic_img_size=True)
    return spec, model.eval()


@pytest.mark.parametrize("layout", ["meta-torchhub-pth", "timm-safetensors"])
@pytest.mark.parametrize("name", DINOS)
def test_every_known_dino_prior_loads_from_its_published_file(name, layout, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    spec, source = _narrow_dino(name, monkeypatch)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    folder = tmp_path / "weights"
    folder.mkdir()
    if layout == "timm-safetensors":
        path = folder / "model.safetensors"
        save_file(state, str(path))
    else:  # Meta: timm's names + mask_token; with registers the position table keeps a CLS row
        path = folder / f"dinov2_vit{name.split('-')[2]}14{'_reg4' if spec.registers else ''}_pretrain.pth"
        assert path.name in spec.files
        meta = {**state, "mask_token": torch.zeros(1, 64)}
        if spec.registers:
            cls_pos = torch.randn(1, 1, 64)
            meta.pop("reg_token")
            meta.update(register_tokens=state["reg_token"], cls_token=state["cls_token"] - cls_pos,
                        pos_embed=torch.cat([cls_pos, state["pos_embed"]], 1))
        torch.save(meta, path)
    cfg = PriorsConfig(dino=name, dino_size=56)
    rw = resolve("dino", cfg, str(folder))
    assert rw.path == path
    prior = DinoPrior(cfg, rw)
    x = torch.rand(1, 3, 56, 56)
    with torch.no_grad():
        want = source.forward_intermediates(prior._input(x), indices=1, norm=True, output_fmt="NCHW",
                                            intermediates_only=True)[0]
    assert torch.allclose(prior(x), want, atol=1e-5)
    assert prior.identifier.startswith(f"{name}|dino:")


# ---- refusals ----------------------------------------------------------------------------------------------------
def _header_only(path, table):
    """A safetensors file with these names and shapes (float16) and no tensor data: enough for the shape check."""
    header, offset = {}, 0
    for k, shape in table.items():
        n = 2 * int(torch.tensor(shape).prod().item()) if shape else 2
        header[k] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


@pytest.fixture
def nothing_built(monkeypatch):
    import open_clip.model
    import timm

    def built(*a, **k):
        raise AssertionError("a model was built before the file was checked")

    monkeypatch.setattr(open_clip.model, "CLIP", built)
    monkeypatch.setattr(timm, "create_model", built)


@pytest.mark.usefixtures("nothing_built")
@pytest.mark.parametrize(("table", "prior", "says"), [
    ("ViT-L-14", "remoteclip-vit-b-32", "looks like open_clip ViT-L-14 (width 1024, 24 blocks, patch 14), like "
                                        "remoteclip-vit-l-14, georsclip-vit-l-14, skyclip-vit-l-14"),
    ("ViT-B-32", "openai-vit-b-16", "looks like open_clip ViT-B-32 (width 768, 12 blocks, patch 32), like "
                                    "remoteclip-vit-b-32"),
    ("ViT-B-16", "farslip-vit-b-16", "positional_embedding is 77x512, expected 248x512"),  # 77 text positions
    ("ViT-B-32", "open_clip:ViT-L-14-quickgelu", "looks like open_clip ViT-B-32"),
])
def test_a_clip_file_for_another_prior_is_refused_in_one_line(table, prior, says, tmp_path):
    path = _header_only(tmp_path / "weights.safetensors", clip_shapes(table))
    with pytest.raises(WeightsNotFound) as exc:
        build_priors(PriorsConfig(clip=prior), str(path), need_dino=False)
    msg = str(exc.value)
    assert says in msg and f"not {prior}" in msg and "\n" not in msg


@pytest.mark.usefixtures("nothing_built")
@pytest.mark.parametrize(("have", "prior", "says"), [
    ("dinov2-vit-s-14", "dinov2-vit-b-14", "looks like DINOv2 ViT-S/14 (width 384, 12 blocks, patch 14), like "
                                           "dinov2-vit-s-14"),
    ("dinov2-vit-b-14-reg", "dinov2-vit-b-14", "1 unexpected, e.g. reg_token"),
    ("dinov2-vit-l-14", "dinov2-vit-l-14-reg", "1 tensors missing, e.g. reg_token"),
])
def test_a_dino_file_for_another_prior_is_refused_in_one_line(have, prior, says, tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    _header_only(folder / "model.safetensors", dino_shapes(KNOWN[have]))
    _header_only(folder / "open_clip_model.safetensors", clip_shapes("ViT-B-16"))
    with pytest.raises(WeightsNotFound) as exc:
        build_priors(PriorsConfig(dino=prior), str(folder), need_dino=True)
    msg = str(exc.value)
    assert says in msg and f"not {prior}" in msg and "\n" not in msg


def test_a_training_checkpoint_with_a_stray_key_names_it(tmp_path, monkeypatch):
    spec = _narrow_clip("skyclip-vit-b-32", tmp_path, monkeypatch)
    source = {k: v for k, v in build_clip(spec.clip_config()).state_dict().items() if not k.endswith("attn_mask")}
    source["visual.extra_head.weight"] = torch.zeros(2, 2)
    folder = tmp_path / "w"
    folder.mkdir()
    path = _write_clip(spec, source, folder)
    with pytest.raises(WeightsNotFound, match=r"1 unexpected, e\.g\. visual\.extra_head\.weight"):
        build_priors(PriorsConfig(clip="skyclip-vit-b-32"), str(path), need_dino=False)


def test_a_zip_with_several_weights_files_is_refused(tmp_path):
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a/epoch_10.pt", b"x")
        zf.writestr("a/epoch_20.pt", b"y")
    with pytest.raises(RsWsssError, match="epoch_10.pt, a/epoch_20.pt; unzip the one you mean"):
        build_priors(PriorsConfig(), str(path), need_dino=False)


def test_unknown_or_misplaced_prior_names_are_config_errors():
    from rs_wsss.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown clip prior 'remoteclip-vit-b-16'.*openai-vit-b-16"):
        spec_for("remoteclip-vit-b-16", "clip")
    with pytest.raises(ConfigError, match="is a dino prior, not a clip one"):
        spec_for("dinov2-vit-b-14", "clip")
    with pytest.raises(ConfigError, match="not an open_clip ViT"):
        spec_for("open_clip:RN50", "clip")
    assert spec_for("open_clip:ViT-L-14-quickgelu", "clip").activation == "quick_gelu"
    assert spec_for("open_clip:ViT-L-14", "clip").activation == "gelu"
    assert spec_for("ViT-B-16-quickgelu", "clip").name == "openai-vit-b-16"  # what checkpoints before recorded


def test_a_single_weights_file_is_the_clip_priors_and_dino_is_looked_for_beside_it(tmp_path, monkeypatch):
    from rs_wsss.priors.weights import ENV_DIR

    clip = tmp_path / "my-finetune.pt"
    clip.write_bytes(b"x")
    cfg = PriorsConfig(clip="open_clip:ViT-L-14-quickgelu")
    assert resolve("clip", cfg, str(clip)).path == clip
    env = tmp_path / "env"
    env.mkdir()
    (env / "dinov2_vitb14.safetensors").write_bytes(b"y")
    monkeypatch.setenv(ENV_DIR, str(env))
    r = resolve("dino", cfg, str(clip))  # not the CLIP file: the environment's folder
    assert (r.path, r.source) == (env / "dinov2_vitb14.safetensors", "env")
    (tmp_path / "dinov2_vitb14_pretrain.pth").write_bytes(b"z")
    assert resolve("dino", cfg, str(clip)).path == tmp_path / "dinov2_vitb14_pretrain.pth"  # beside the CLIP file
