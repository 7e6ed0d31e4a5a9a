"""Class sets and their description knowledge bases (``configs/classes/*.yaml``).

A class set is a YAML file; a user adds one with no code edit and passes its path (or a packaged name)::

    name: landcover
    background: {name: background, color: "#000000"}
    ignore_codes: ["#9B9B9B"]          # optional: ground-truth codes that mean "unlabelled"
    classes:
      - name: building                 # identifier used in tags and outputs
        prompt: building               # [CLASS] in the prompt template (defaults to name with spaces)
        color: "#3C1098"
        codes: ["#3C1098", 2]          # optional: ground-truth values (int) or RGB colours for masks
        descriptions:                  # the TPE knowledge base (eq 1), >= 20 per class
          - "an overhead satellite image of building. It exhibits ..."

Output class index 0 is always the background; class ``i`` of the list is index ``i + 1``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import RsWsssError

_HEX = re.compile(r"^#?[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class ClassDef:
    """One class: its name, display colour, CLIP prompt, knowledge-base descriptions and ground-truth mask codes."""

    name: str
    color: tuple[int, int, int]
    prompt: str = ""
    descriptions: tuple[str, ...] = ()
    codes: tuple[int | tuple[int, int, int], ...] = ()


@dataclass(frozen=True)
class ClassSet:
    """The classes a model segments: foreground classes after the background (id 0), and mask codes to ignore."""

    name: str
    classes: tuple[ClassDef, ...]
    background: ClassDef = field(default_factory=lambda: ClassDef("background", (0, 0, 0)))
    ignore_codes: tuple[int | tuple[int, int, int], ...] = ()
    source: str = ""

    @property
    def names(self) -> list[str]:
        """All output class names, background first (index = class id in the output raster)."""
        return [self.background.name] + [c.name for c in self.classes]

    @property
    def colors(self) -> list[tuple[int, int, int]]:
        """RGB colours by class id, background first (the output palette)."""
        return [self.background.color] + [c.color for c in self.classes]

    @property
    def prompts(self) -> list[str]:
        """The foreground classes' CLIP prompts (eqs 1–4 start from them)."""
        return [c.prompt for c in self.classes]

    @property
    def num_classes(self) -> int:
        """C, the foreground classes (the model outputs C + 1 channels)."""
        return len(self.classes)

    def index(self, name: str) -> int:
        """Output index of a class name (0 = background); RsWsssError for an unknown name."""
        names = self.names
        key = name.strip()
        if key in names:
            return names.index(key)
        lowered = [n.lower() for n in names]
        if key.lower() in lowered:
            return lowered.index(key.lower())
        raise RsWsssError(f"unknown class '{name}' for class set '{self.name}' (known: {', '.join(names)})")

    def kb_hash(self) -> str:
        """Hash of everything the text side depends on: names, prompts and descriptions."""
        payload = json.dumps([[c.name, c.prompt, list(c.descriptions)] for c in self.classes])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        """Plain-value form stored in checkpoints (weights_only loadable)."""
        return {
            "name": self.name,
            "background": _class_to_dict(self.background),
            "ignore_codes": [_code_out(c) for c in self.ignore_codes],
            "classes": [_class_to_dict(c) for c in self.classes],
        }


def packaged_class_sets() -> list[str]:
    """Names of the class sets shipped in ``configs/classes/``."""
    from .config import packaged_config

    return sorted(p.stem for p in packaged_config("classes").glob("*.yaml"))


def load_class_set(name_or_path: str | Path) -> ClassSet:
    """A packaged set by name (``potsdam``, ``isaid``, ``loveda``, ``landcover``) or a YAML path."""
    from .config import packaged_config

    path = Path(name_or_path)
    # a folder that happens to share a packaged set's name (e.g. ./loveda data) must not shadow the set
    if not (path.suffix in (".yaml", ".yml") or path.is_file()):
        path = packaged_config(f"classes/{name_or_path}.yaml")
        if not path.exists():
            raise RsWsssError(
                f"unknown class set '{name_or_path}': give a YAML file or one of {', '.join(packaged_class_sets())}"
            )
    if not path.exists():
        raise RsWsssError(f"class set file not found: {path}")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise RsWsssError(f"class set {path} is not UTF-8 text (byte at offset {exc.start}); "
                          "save it as UTF-8 YAML") from None
    except yaml.YAMLError as exc:
        raise RsWsssError(f"class set {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise RsWsssError(f"class set {path} nests too deeply to be a class set") from None
    return class_set_from_dict(data, source=str(path))


def _text(value: object, what: str, source: str) -> str:
    """A YAML scalar as text; a list or mapping there (e.g. a YAML alias bomb) is refused, never stringified."""
    if isinstance(value, (list, dict)):
        raise RsWsssError(f"{source}: '{what}' must be text, not a {type(value).__name__}")
    return str(value)


def _as_list(value: object, what: str, source: str) -> list:
    """A YAML list field (absent/null = empty); a scalar or mapping there is a user error, not a TypeError later."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise RsWsssError(f"{source}: '{what}' must be a list, not {type(value).__name__}")
    return value


MAX_CLASSES = 254  # + background = ids 0..254 of the uint8 class raster; 255 is its nodata


def class_set_from_dict(data: dict, source: str = "class set") -> ClassSet:
    """A class set from its YAML mapping (``classes`` list, optional ``background`` and ``ignore_codes``).

    Raises:
        RsWsssError: a malformed set, naming ``source`` and the bad entry.
    """
    if not isinstance(data, dict) or not data.get("classes") or not isinstance(data["classes"], list):
        raise RsWsssError(f"{source}: a class set needs a 'classes' list")
    classes = tuple(_class_from_dict(c, source) for c in data["classes"])
    names = [c.name for c in classes]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RsWsssError(f"{source}: duplicate class names: {', '.join(dupes)}")
    if len(classes) > MAX_CLASSES:  # refused before any work, rather than ids wrapping in the uint8 raster
        raise RsWsssError(f"{source}: {len(classes)} classes; at most {MAX_CLASSES} fit the class raster (uint8 ids "
                          "0-254 with the background, 255 = nodata): merge or split the class set")
    bg = _class_from_dict(data.get("background") or {"name": "background", "color": "#000000"}, source)
    if bg.name in names:
        raise RsWsssError(f"{source}: background name '{bg.name}' is also a class")
    ignore = _as_list(data.get("ignore_codes"), "ignore_codes", source)
    _check_codes_disjoint((bg, *classes), ignore, source)
    return ClassSet(
        name=str(data.get("name") or Path(source).stem),
        classes=classes,
        background=bg,
        ignore_codes=tuple(_code_in(c, source) for c in ignore),
        source=source,
    )


def parse_color(value: str | list | tuple, source: str = "colour") -> tuple[int, int, int]:
    """``#RRGGBB`` or ``[r, g, b]`` → an RGB tuple."""
    if value is None:  # an unquoted #RRGGBB is a YAML comment, so the key reads as null
        raise RsWsssError(f'{source}: colour is empty; quote hex colours in YAML ("#RRGGBB") or give [r, g, b]')
    if isinstance(value, str) and _HEX.match(value.strip()):
        h = value.strip().lstrip("#")
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, int) and 0 <= v < 256 for v in value):
        return (int(value[0]), int(value[1]), int(value[2]))
    raise RsWsssError(f"{source}: '{value}' is not a colour (#RRGGBB or [r, g, b])")


def color_hex(rgb: tuple[int, int, int]) -> str:
    """``(r, g, b)`` as ``#RRGGBB``."""
    return "#{:02X}{:02X}{:02X}".format(*rgb)


def _class_from_dict(d: dict, source: str) -> ClassDef:
    if not isinstance(d, dict) or not d.get("name"):
        raise RsWsssError(f"{source}: every class needs a 'name'")
    name = _text(d["name"], "name", source).strip()
    if ";" in name or "," in name:
        raise RsWsssError(f"{source}: class name '{name}' may not contain ';' or ','")
    return ClassDef(
        name=name,
        color=parse_color(d.get("color", "#808080"), f"{source}: class {name}"),
        prompt=_text(d.get("prompt") or name.replace("_", " "), f"{name}.prompt", source),
        descriptions=tuple(_text(s, f"{name}.descriptions", source)
                           for s in _as_list(d.get("descriptions"), f"{name}.descriptions", source)),
        codes=tuple(_code_in(c, f"{source}: class {name}") for c in _as_list(d.get("codes"), f"{name}.codes", source)),
    )


def _class_to_dict(c: ClassDef) -> dict:
    return {
        "name": c.name,
        "color": color_hex(c.color),
        "prompt": c.prompt,
        "descriptions": list(c.descriptions),
        "codes": [_code_out(x) for x in c.codes],
    }


def _code_in(value: Any, source: str) -> int | tuple[int, int, int]:
    if isinstance(value, bool):
        raise RsWsssError(f"{source}: code {value!r} is neither an integer nor a colour")
    if isinstance(value, int):
        return value
    return parse_color(value, source)


def _check_codes_disjoint(classes: tuple[ClassDef, ...], ignore: tuple | list, source: str) -> None:
    """A ground-truth code must decode to one class only (or be ignored), else masks are ambiguous."""
    owner: dict[int | tuple[int, int, int], str] = {}
    for c in classes:
        for code in c.codes:
            if code in owner and owner[code] != c.name:
                raise RsWsssError(
                    f"{source}: code {_code_out(code)} belongs to both '{owner[code]}' and '{c.name}'; "
                    "give each code to one class"
                )
            owner[code] = c.name
    for code in (_code_in(x, source) for x in ignore):
        if code in owner:
            raise RsWsssError(
                f"{source}: code {_code_out(code)} is both an ignore code and a code of '{owner[code]}'; "
                "keep it in one place"
            )


def _code_out(value: int | tuple[int, int, int]) -> int | str:
    return value if isinstance(value, int) else color_hex(value)
