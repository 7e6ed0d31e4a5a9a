"""The model card's priors and licences come from each prior's registry spec, not from the paper's pair: published
facts (issue 23's table: RemoteCLIP Apache-2.0, SkyCLIP MIT, FarSLIP MIT, DINOv2 Apache-2.0, OpenAI CLIP MIT)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rs_wsss.export.card import _priors, architecture
from rs_wsss.priors.specs import KNOWN


def _model(clip: str, dino: str, weights: str = "file") -> SimpleNamespace:
    """A stand-in for ``WSSS`` with what the card reads of it: each prior's spec and identifier."""
    def prior(name: str, role: str) -> SimpleNamespace:
        ident = f"{name}|{role}:random" if weights == "random" else f"{name}|{role}:{name}.pt:123:abcdef012345"
        return SimpleNamespace(spec=KNOWN[name], identifier=ident)

    return SimpleNamespace(clip=prior(clip, "clip"), dino=prior(dino, "dino"))


@pytest.mark.parametrize("clip, dino, licences", [
    ("openai-vit-b-16", "dinov2-vit-b-14", ("MIT", "Apache-2.0")),
    ("remoteclip-vit-b-32", "dinov2-vit-l-14-reg", ("Apache-2.0", "Apache-2.0")),
    ("skyclip-vit-l-14", "dinov2-vit-s-14", ("MIT", "Apache-2.0")),
    ("farslip-vit-b-16", "dinov2-vit-b-14", ("MIT", "Apache-2.0")),
])
def test_each_prior_is_carded_with_its_own_licence_and_source(clip, dino, licences):
    priors = _priors(_model(clip, dino), exported=False)
    assert [(p["prior"], p["model"], p["license"]) for p in priors] == [("clip", clip, licences[0]),
                                                                       ("dino", dino, licences[1])]
    arch = {"openai": "ViT-B-16", "remoteclip": "ViT-B-32", "skyclip": "ViT-L-14", "farslip": "ViT-B-16"}
    assert arch[clip.split("-")[0]] in priors[0]["pretrained_on"] and clip in architecture(_model(clip, dino))
    assert "huggingface.co" in priors[1]["pretrained_on"] or "dl.fbaipublicfiles.com" in priors[1]["pretrained_on"]
    # an export has no DINO (decoder inference never runs it); random weights carry no licence
    assert [p["prior"] for p in _priors(_model(clip, dino), exported=True)] == ["clip"]
    random = _priors(_model(clip, dino, "random"), exported=False)
    assert all(p["pretrained_on"] is None and p["license"].startswith("none (random") for p in random)
