"""Packaged class sets (configs/classes/*.yaml): structure, knowledge-base quality, and decoding of the real masks."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re

import numpy as np
import pytest
from PIL import Image

from rs_wsss.classes import class_set_from_dict, load_class_set, packaged_class_sets
from rs_wsss.errors import RsWsssError

EXPECTED = {
    "isaid": 15,
    "potsdam": 5,  # + clutter/background as the background channel (ISPRS's sixth class)
    "loveda": 6,
    "landcover": 5,
}
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
CLIP_CONTEXT = 77  # open_clip truncates longer texts silently: a description must fit whole


def _body_words(description: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", description.split("It exhibits", 1)[1].lower()))


def _rgb_colours(path) -> set[tuple[int, int, int]]:
    """Distinct RGB colours of a mask; palette PNGs (mode P) go through their palette."""
    rgb = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(np.int64)
    packed = np.unique((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2])
    return {(int(v >> 16), int((v >> 8) & 255), int(v & 255)) for v in packed}


def _codes(cs, kind) -> dict:
    """code → output class name, over background and classes, for int (index) or tuple (RGB) codes."""
    return {code: c.name for c in (cs.background, *cs.classes) for code in c.codes if isinstance(code, kind)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_packaged_set_loads_by_name_with_expected_classes(name):
    assert name in packaged_class_sets()
    cs = load_class_set(name)
    assert cs.name == name and cs.num_classes == EXPECTED[name]
    assert cs.names[0] == cs.background.name and len(cs.names) == EXPECTED[name] + 1
    for c in (cs.background, *cs.classes):
        assert SNAKE.match(c.name), c.name
    for c in cs.classes:
        assert c.prompt and "_" not in c.prompt, f"{c.name}: prompt must be natural words"
        assert c.codes, f"{c.name}: no ground-truth code"
    assert len(set(cs.colors)) == len(cs.colors), f"{name}: colours are not unique"
    # what a checkpoint stores reloads to the same set
    assert dataclasses.replace(class_set_from_dict(cs.to_dict()), source=cs.source) == cs


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_knowledge_base_follows_the_paper_form_and_is_diverse(name):
    import open_clip

    tokenizer = open_clip.get_tokenizer("ViT-B-16")  # bundled BPE vocabulary, no download
    cs = load_class_set(name)
    all_descriptions = [d for c in cs.classes for d in c.descriptions]
    assert len(set(all_descriptions)) == len(all_descriptions), f"{name}: repeated description"
    for c in cs.classes:
        assert len(c.descriptions) >= 20, f"{c.name}: {len(c.descriptions)} descriptions"
        prefix = f"an overhead satellite image of {c.prompt}. It exhibits "
        for d in c.descriptions:
            assert d.startswith(prefix) and len(d) > len(prefix) + 20, d
            assert len(tokenizer.encode(d)) + 2 <= CLIP_CONTEXT, f"truncated by CLIP: {d}"
        # near-duplicates: no two descriptions of a class share more than 80 % of their (body) words
        for a, b in itertools.combinations(c.descriptions, 2):
            wa, wb = _body_words(a), _body_words(b)
            assert len(wa & wb) / min(len(wa), len(wb)) <= 0.8, (a, b)


def test_landcover_decodes_every_colour_of_the_real_dubai_masks(shared_data):
    cs = load_class_set("landcover")
    known = _codes(cs, tuple)
    ignore = set(cs.ignore_codes)
    masks = sorted((shared_data / "dubai" / "masks").glob("*.png"))
    assert len(masks) >= 50
    seen: set[tuple[int, int, int]] = set()
    modes = set()
    for path in masks:
        modes.add(Image.open(path).mode)
        colours = _rgb_colours(path)
        assert colours <= set(known) | ignore, f"{path.name}: undecodable {colours - set(known) - ignore}"
        seen |= colours
    assert "P" in modes, "the palette PNGs of tiles 2 and 4 were not exercised"
    # every class code is used by the data (no stale colours), and Dubai 'land' is bare_land
    assert {known[c] for c in seen if c in known} == set(cs.names[1:])
    assert known[(0x84, 0x29, 0xF6)] == "bare_land"
    assert (0x9B, 0x9B, 0x9B) in ignore and (0, 0, 0) in ignore


def test_isaid_codes_are_the_devkit_palette_and_ids(shared_data):
    cs = load_class_set("isaid")
    doc = json.loads((shared_data / "isaid" / "classes.json").read_text())["classes"]
    assert set(doc) == set(cs.names)
    rgb, ids = _codes(cs, tuple), _codes(cs, int)
    for name, entry in doc.items():
        colour = tuple(entry["rgb"])
        assert rgb[colour] == name and ids[entry["id"]] == name
        assert cs.colors[cs.index(name)] == colour  # output colours are the iSAID palette
    measured = set().union(*(_rgb_colours(p) for p in (shared_data / "isaid" / "masks").glob("*.png")))
    assert len(measured) >= 4 and measured <= set(rgb)
    assert {rgb[c] for c in measured} >= {"background", "small_vehicle", "large_vehicle", "storage_tank"}


@pytest.mark.parametrize("name", ["potsdam", "loveda"])
def test_index_coded_sets_match_the_real_masks(shared_data, name):
    cs = load_class_set(name)
    doc = json.loads((shared_data / name / "classes.json").read_text())
    ids = _codes(cs, int)
    for cls, entry in doc["classes"].items():
        assert ids[entry["value"]] == cls
    assert {int(v) for v in doc["ignore"]} == {c for c in cs.ignore_codes if isinstance(c, int)}
    for path in (shared_data / name / "masks").glob("*.png"):
        values = {int(v) for v in np.unique(np.asarray(Image.open(path)))}
        assert values <= set(ids) | set(cs.ignore_codes), f"{path.name}: {values}"
    if name == "potsdam":  # the original ISPRS RGB label colours decode too
        rgb = _codes(cs, tuple)
        for cls, entry in doc["classes"].items():
            hexcode = entry["isprs_color"]
            assert rgb[tuple(int(hexcode[i : i + 2], 16) for i in (1, 3, 5))] == cls


USER_YAML = """
name: my_sites
background: {name: other, color: "#101010"}
ignore_codes: [255]
classes:
  - name: solar_farm
    color: "#FF8800"
    codes: [1]
    descriptions:
      - "an overhead satellite image of solar farm. It exhibits long parallel rows of dark blue panels."
  - name: greenhouse
    prompt: plastic greenhouse
    color: [200, 200, 255]
    codes: ["#C8C8FF", 2]
"""


def test_user_yaml_loads_without_code_changes(tmp_path):
    path = tmp_path / "my_sites.yaml"
    path.write_text(USER_YAML)
    for ref in (path, str(path)):
        cs = load_class_set(ref)
        assert cs.names == ["other", "solar_farm", "greenhouse"] and cs.num_classes == 2
        assert cs.prompts == ["solar farm", "plastic greenhouse"]  # default prompt = name with spaces
        assert cs.classes[1].codes == ((200, 200, 255), 2) and cs.ignore_codes == (255,)
        assert cs.index("greenhouse") == 2 and cs.colors[0] == (16, 16, 16)


def test_kb_hash_tracks_descriptions():
    cs = load_class_set("potsdam")
    assert cs.kb_hash() == load_class_set("potsdam").kb_hash()
    car = cs.classes[4]
    edited = dataclasses.replace(car, descriptions=car.descriptions[:-1] + (car.descriptions[-1] + " Edited.",))
    changed = dataclasses.replace(cs, classes=cs.classes[:4] + (edited,) + cs.classes[5:])
    assert changed.kb_hash() != cs.kb_hash()
    assert load_class_set("isaid").kb_hash() != cs.kb_hash()


def test_unknown_names_and_bad_sets_raise_one_line_errors(tmp_path):
    cs = load_class_set("isaid")
    assert cs.index("Small_Vehicle") == cs.index("small_vehicle") == 9
    with pytest.raises(RsWsssError, match="unknown class 'airplane'"):
        cs.index("airplane")
    with pytest.raises(RsWsssError, match="unknown class set 'nope'"):
        load_class_set("nope")
    bad = {
        "dup.yaml": USER_YAML.replace('codes: ["#C8C8FF", 2]', "codes: [1]"),
        "ign.yaml": USER_YAML.replace("ignore_codes: [255]", "ignore_codes: [2]"),
        "hex.yaml": USER_YAML.replace('color: "#FF8800"', "color: #FF8800"),  # YAML comment → null
    }
    for file, text in bad.items():
        (tmp_path / file).write_text(text)
    for file, message in [("dup.yaml", "belongs to both"), ("ign.yaml", "ignore code"), ("hex.yaml", "quote hex")]:
        with pytest.raises(RsWsssError, match=message) as err:
            load_class_set(tmp_path / file)
        assert "\n" not in str(err.value)


def test_a_folder_named_like_a_packaged_set_does_not_shadow_it(tmp_path, monkeypatch):
    (tmp_path / "loveda").mkdir()  # e.g. the user's data folder
    monkeypatch.chdir(tmp_path)
    assert load_class_set("loveda").background.codes == (1,)


def test_landcover_shows_conventional_colours_and_still_decodes_the_dubai_codes():
    cs = load_class_set("landcover")
    r, g, b = cs.colors[cs.index("water")]
    assert b > max(r, g) + 50  # water blue
    r, g, b = cs.colors[cs.index("vegetation")]
    assert g > max(r, b) + 50  # vegetation green
    from rs_wsss.raster.masks import code_table

    table = code_table(cs)
    assert table[(0xE2, 0xA9, 0x29)] == cs.index("water") and table[(0xFE, 0xDD, 0x3A)] == cs.index("vegetation")
