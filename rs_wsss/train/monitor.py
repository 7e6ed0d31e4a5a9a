"""What a training run leaves beside its checkpoint for a person: the train loop's ``on_step`` hook.

- ``MODEL.log.csv``: one row per step (step, loss, L_seg, L_aff, lr, seconds, pseudo_fraction);
- ``MODEL.report.html`` + ``MODEL.curves.png`` (+ ``MODEL.previews.png``): loss curves, previews of fixed tiles
  every ``train.report_every`` steps, validation history;
- ``MODEL.best.pt``: the checkpoint with the best validation score (``--val-masks`` / ``--val-tags``); the last
  one stays ``MODEL.pt``.

Every file is written under a temporary name and renamed. The CSV is rewritten every ``report_every`` steps, at
checkpoints and at the end (not per step: that would cost O(steps²) bytes); on resume, rows past the checkpoint's
step are dropped, as those steps are run again.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..classes import ClassSet
from ..config import Config
from ..errors import OutputExists

if TYPE_CHECKING:
    from ..model.wsss import WSSS
    from .sampler import TileSampler
    from .validate import Validator

log = logging.getLogger("rs_wsss")
FIELDS = ["step", "loss", "L_seg", "L_aff", "lr", "seconds", "pseudo_fraction"]
KEEP_PREVIEWS = 4  # preview grids embedded in the report: the first and the latest ones (bounded file size)


def monitor_paths(out_path: str | Path) -> dict[str, Path]:
    """model.pt → model.log.csv, model.report.html, model.curves.png, model.previews.png, model.best.pt."""
    p = Path(out_path)
    stem = p.with_suffix("")
    return {"log": Path(f"{stem}.log.csv"), "report": Path(f"{stem}.report.html"), "curves": Path(f"{stem}.curves.png"),
            "previews": Path(f"{stem}.previews.png"), "best": Path(f"{stem}.best.pt")}


def refuse_stale_best(out_path: str | Path, resume: bool) -> None:
    """A ``MODEL.best.pt`` left by an earlier run must not pass for this run's best: refuse it unless resuming."""
    best = monitor_paths(out_path)["best"]
    if best.exists() and not resume:
        raise OutputExists(f"output exists: {best} (from an earlier run); remove it, pass --resume, or choose another "
                           "-o")


def read_log(path: str | Path) -> list[dict[str, float]]:
    """The rows of a training log CSV (``step`` as int, every other column as float), e.g. to resume a run."""
    with open(path, newline="") as fh:
        return [{k: (int(v) if k == "step" else float(v)) for k, v in rec.items()} for rec in csv.DictReader(fh)]


class TrainMonitor:
    """Call as ``on_step(step, model, out)``; ``finish(model)`` after the loop writes the final log and report.

    ``previews``: (images (N,3,S,S), tags (N,C), labels) of fixed tiles or None; ``validator``: a
    ``train.validate.Validator`` or None; ``extra``: what every checkpoint carries (norms, bands) for ``best``."""

    def __init__(self, out_path: str | Path, cfg: Config, class_set: ClassSet, resume: bool = False,
                 previews: tuple | None = None, validator: Validator | None = None, extra: dict | None = None,
                 meta: dict | None = None, write_files: bool = True) -> None:
        from .loop import poly_lambda

        self.paths = monitor_paths(out_path)
        self.cfg, self.class_set = cfg, class_set
        self.previews_in, self.validator = previews, validator
        self.extra, self.meta = extra or {}, meta or {}
        self.lr_of = poly_lambda(cfg.train)
        self.rows: list[dict] = []
        # the validation history lives in ``extra``, which every checkpoint of the loop carries: a resumed run
        # gets back the evaluations up to its checkpoint's step
        self.val: list[dict] = self.extra.setdefault("validation", [])
        self.previews: list[tuple[int, bytes]] = []
        self.best = -math.inf
        self.write_files = write_files
        if resume and self.paths["log"].exists():
            self.rows = read_log(self.paths["log"])
        if resume and Path(out_path).exists():
            from ..model.checkpoint import load_checkpoint

            self.val[:] = load_checkpoint(out_path)["extra"].get("validation", [])
        refuse_stale_best(out_path, resume)
        if self.paths["best"].exists():
            from ..model.checkpoint import load_checkpoint

            score = load_checkpoint(self.paths["best"])["extra"].get("val", {}).get("score")
            self.best = -math.inf if score is None else float(score)
        self.t_last = time.perf_counter()
        self.first = True

    def __call__(self, step: int, model: WSSS, out: dict[str, Any]) -> None:
        """Log step ``step``'s losses from ``out``; at report steps run :meth:`checkpoint_hook` and the report."""
        now = time.perf_counter()
        if self.first:  # a resumed run redoes the steps after its checkpoint: their old rows go
            self.rows = [r for r in self.rows if r["step"] < step]
            self.val[:] = [v for v in self.val if v["step"] < step]
            self.first = False
        labels = out.get("labels")
        frac = float((labels != self.cfg.pseudo.ignore_index).float().mean()) if labels is not None else math.nan
        self.rows.append({"step": step, "loss": float(out["loss"].detach()), "L_seg": float(out["seg"]),
                          "L_aff": float(out["aff"]), "lr": self.cfg.train.lr * self.lr_of(step - 1),
                          "seconds": now - self.t_last,
                          "pseudo_fraction": frac})
        t = self.cfg.train
        if step % t.report_every == 0 or step == t.iters:  # the last step too, before the loop's final checkpoint
            self.checkpoint_hook(step, model)
            self.write_report(model, step)
        elif step % t.checkpoint_every == 0 and self.write_files:
            self.write_log()
        self.t_last = time.perf_counter()  # the hook's own time is not the step's

    def checkpoint_hook(self, step: int, model: WSSS) -> None:
        """Previews and validation at a report step; a better score replaces ``MODEL.best.pt``."""
        if self.previews_in is not None:
            from ..report.train_report import png_bytes, previews_figure
            from .previews import preview_maps

            images, tags, labels = self.previews_in
            maps = preview_maps(model, images, tags)
            png = png_bytes(previews_figure(maps, self.class_set.names, self.class_set.colors, step, labels))
            self.previews = ([self.previews[0]] if self.previews else []) + self.previews[1:][-(KEEP_PREVIEWS - 2):]
            self.previews.append((step, png))
            from ..report.html import write_atomic

            write_atomic(self.paths["previews"], png)
        if self.validator is not None:
            res = self.validator.evaluate(model) | {"step": step}
            self.val.append(res)
            score = res["score"]
            log.info("step %d: validation %s %s", step, res["metric"], "n/a" if score is None else f"{score:.4f}")
            if score is not None and score > self.best:
                from ..model.checkpoint import save_checkpoint

                self.best = score
                save_checkpoint(self.paths["best"], model, None, None, step, {**self.extra, "val": res})

    def finish(self, model: WSSS) -> dict[str, str]:
        """The files written (the last step's previews, validation and report were done by the hook itself)."""
        return {k: str(p) for k, p in self.paths.items() if p.exists()}

    def write_log(self) -> None:
        """Write the per-step log CSV (atomically)."""
        from ..report.html import write_atomic

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
        w.writeheader()
        for r in self.rows:
            w.writerow({k: (r[k] if k == "step" else f"{r[k]:.6g}") for k in FIELDS})
        write_atomic(self.paths["log"], buf.getvalue())

    def write_report(self, model: WSSS, step: int) -> None:
        """Write the log, the curves and the HTML report (nothing when ``write_files`` is off)."""
        if not self.write_files:
            return
        from ..report import html
        from ..report.train_report import curves_figure, png_bytes, render_html

        self.write_log()
        curves = png_bytes(curves_figure(self.rows, self.val)) if self.rows else None
        if curves:
            html.write_atomic(self.paths["curves"], curves)
        random_weights = "random" in model.clip.identifier
        best = max((v for v in self.val if v["score"] is not None), key=lambda v: v["score"], default=None)
        secs = [r["seconds"] for r in self.rows[1:]]  # the first step carries the warm-up
        mean = sum(secs) / len(secs) if secs else None
        prec = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(getattr(model, "train_dtype", torch.float32), "fp32")
        summary = {"steps done": step, "of": self.cfg.train.iters, "batch": self.cfg.train.batch,
                   "last loss": self.rows[-1]["loss"] if self.rows else None,
                   "mean seconds/step": mean, "steps/s": 1 / mean if mean else None, "precision": prec}
        if best:
            summary |= {f"best {best['metric']}": best["score"], "best step": best["step"], "best checkpoint":
                        str(self.paths["best"])}
        meta = {**self.meta, "CLIP": model.clip.identifier,
                "DINO": model.dino.identifier if model.dino is not None else "—"}
        params = {k: v for k, v in self.cfg.train.__dict__.items()}
        files = {k: str(p) for k, p in self.paths.items() if k != "report"}
        page = render_html(f"rs-wsss train: {self.paths['best'].name.replace('.best.pt', '')}", meta, summary, curves,
                           self.previews, self.val, params, files,
                           html.RANDOM_BANNER if random_weights else None)
        html.write_atomic(self.paths["report"], page)


def fixed_previews(sampler: TileSampler, k: int) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    """``k`` tag rows spread over the tag file (tagged ones first), read once at the crop size."""
    from .previews import pick_evenly, read_tiles

    if k <= 0 or not sampler.rows:
        return None
    order = sorted(range(len(sampler.rows)), key=lambda i: (not sampler.rows[i].labels, i))
    tagged = [i for i in order if sampler.rows[i].labels] or order
    idx = [tagged[j] for j in pick_evenly(len(tagged), k)]
    rows = [sampler.rows[i] for i in idx]
    images = read_tiles(sampler.scenes, [(r.image, r.window) for r in rows], sampler.crop)
    tags = torch.from_numpy(sampler.tags[idx])
    labels = [f"{Path(r.image).name} {int(r.window.col_off)},{int(r.window.row_off)}\n{';'.join(r.labels) or '—'}"
              for r in rows]
    return images, tags, labels
