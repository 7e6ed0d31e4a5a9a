"""The one model factory: (config, class set, backbones, model, checkpoint state) from a checkpoint or from a config.

Every command that needs a run's config or model comes here: ``segment`` (and its Dask workers, which rebuild the
same model from the JSON form of a :class:`ModelSpec`), the API, ``train``, ``info`` and ``config show``. So they
cannot disagree about the model a checkpoint describes. The order is the same for all of them:

1. a checkpoint's config (``model_path``), or the dataclass defaults, then ``configs/tiny.yaml`` (``tiny``), then the
   user YAML (``config_path``); a checkpoint carries its own config, so it excludes ``config_path`` and ``tiny``;
2. ``overrides`` (``--set section.key=value``);
3. ``settings`` (typed values by ``section.key`` from CLI options such as ``--tile``).

The class set is the checkpoint's (a ``class_set`` given beside it must name the same classes) or ``class_set``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .classes import ClassSet, class_set_from_dict, load_class_set
from .config import Config, configure, load_config
from .errors import ConfigError, RsWsssError

if TYPE_CHECKING:

    from .model.wsss import WSSS
    from .priors.clip import ClipPrior
    from .priors.dino import DinoPrior

# what the model is built for, which decides whether DINO and CLIP's text tower are loaded: decoder inference never
# runs either, zero-shot DINO only for USR's joint affinity, training (and ``info``, which counts both backbones)
# DINO whenever usr.use_dino
Use = Literal["predict", "zero_shot", "train", "describe"]


@dataclass(frozen=True)
class ModelSpec:
    """What a run's config and model are built from. Plain values only (:meth:`to_dict` is JSON-able), so a Dask
    worker rebuilds exactly the driver's model."""

    model_path: str | None = None  # a checkpoint from training
    class_set: str | None = None  # a packaged class set or a YAML (must match the checkpoint's when both are given)
    config_path: str | None = None  # a user YAML (not with a checkpoint)
    overrides: tuple[str, ...] = ()  # ``section.key=value`` strings (--set)
    tiny: bool = False  # the tiny test architecture (not with a checkpoint)
    settings: dict[str, Any] = field(default_factory=dict, hash=False)  # typed values by section.key, applied last
    weights: str | None = None  # backbone weights directory/file, or "random"

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain values (JSON-able)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """The spec back from :meth:`to_dict` (after a JSON round trip, too)."""
        return cls(**{**data, "overrides": tuple(data.get("overrides") or ()), "settings": data.get("settings") or {}})


@dataclass
class Built:
    """A built run: its resolved config, class set, frozen backbones, the model and the checkpoint it came from."""

    cfg: Config
    class_set: ClassSet
    clip: ClipPrior
    dino: DinoPrior | None
    model: WSSS
    state: dict[str, Any] | None = None  # the checkpoint (None: built from a config)


def resolve_config(spec: ModelSpec) -> tuple[Config, dict[str, Any] | None]:
    """The config a run uses and the checkpoint it came from (None without one). What ``config show`` prints.

    Raises:
        ConfigError: a checkpoint together with ``config_path``/``tiny``; a bad file, key or value.
        RsWsssError: ``model_path`` is not an rs-wsss checkpoint.
    """
    if spec.model_path is None:
        return load_config(spec.config_path, spec.overrides, tiny=spec.tiny, settings=spec.settings), None
    if spec.config_path is not None or spec.tiny:
        raise ConfigError("a checkpoint carries its own config: give --model or --config/--tiny, not both")
    from .model.checkpoint import load_checkpoint

    state = load_checkpoint(spec.model_path)
    cfg = Config.from_dict(state["config"], source=str(spec.model_path))
    return configure(cfg, spec.overrides, spec.settings), state


def resolve_class_set(spec: ModelSpec, state: dict[str, Any] | None) -> ClassSet:
    """The checkpoint's class set (``spec.class_set``, if given, must name the same classes) or ``spec.class_set``.

    Raises:
        RsWsssError: no class set at all, an unknown or bad one, or one that is not the checkpoint's.
    """
    if state is None:
        if not spec.class_set:
            raise RsWsssError("give --classes SET (a packaged set or a YAML file) or --model CKPT")
        return load_class_set(spec.class_set)
    cs = class_set_from_dict(state["class_set"], source=str(spec.model_path))
    if spec.class_set and load_class_set(spec.class_set).names != cs.names:
        raise RsWsssError(f"{spec.model_path} was trained for classes {', '.join(cs.names[1:])}, not "
                          f"'{spec.class_set}'; drop --classes or retrain")
    return cs


def needs_dino(cfg: Config, use: Use) -> bool:
    """Whether a model built for ``use`` loads the DINO prior."""
    if use == "predict":
        return False
    if use == "zero_shot":
        return cfg.usr.enabled and cfg.usr.use_dino
    return cfg.usr.use_dino


def assemble(cfg: Config, class_set: ClassSet, weights: str | None, use: Use,
             state: dict[str, Any] | None = None, source: str = "checkpoint") -> Built:
    """Backbones (weights resolved, one line when missing or wrong) + the WSSS model (+ a checkpoint's weights).

    Without DINO the width a checkpoint was trained with comes from its ``dims``, so its DINO adapter still loads.

    Raises:
        WeightsNotFound / RsWsssError: missing or wrong backbone weights; a checkpoint that does not fit.
    """
    from .model.wsss import WSSS
    from .priors import build_priors

    clip, dino = build_priors(cfg.priors, weights, need_dino=needs_dino(cfg, use), need_text=use != "predict")
    dino_width = state["dims"]["dino_width"] if state is not None and dino is None else None
    model = WSSS(cfg, class_set, clip, dino, dino_width=dino_width)
    if state is not None:
        from .model.checkpoint import restore_model

        restore_model(model, state, source)
    return Built(cfg, class_set, clip, dino, model, state)


def build(spec: ModelSpec, use: Use) -> Built:
    """Config, class set, backbones and model of ``spec``, built for ``use`` (the model is on the CPU, in train mode
    as torch makes it; callers move it and pick ``eval()``).

    Raises:
        ConfigError, RsWsssError, WeightsNotFound: see :func:`resolve_config`, :func:`resolve_class_set`,
            :func:`assemble`.
    """
    cfg, state = resolve_config(spec)
    cs = resolve_class_set(spec, state)
    return assemble(cfg, cs, spec.weights, use, state, source=str(spec.model_path))
