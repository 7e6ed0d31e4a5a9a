"""Training loop (Sect. 4.2): AdamW on the trainable parameters only, poly learning-rate decay, periodic atomic
checkpoints, and resume (optimiser, schedule, prototypes, step and RNG restored)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from ..config import Config, TrainConfig
from ..errors import TrainingDiverged
from ..model.checkpoint import (
    load_checkpoint,
    restore_model,
    save_checkpoint,
    set_rng_state,
)
from ..runtime import training_dtype
from .batches import Batch

log = logging.getLogger("rs_wsss")
Progress = Callable[[str, int, int], None]
# Preferred: a function of the step, so a resumed run sees exactly the batches the uninterrupted one would have seen;
# a plain iterable of batches is also accepted (a resumed run then simply continues from the iterable's start).
BatchSource = Callable[[int], Batch] | Iterable[Batch]


def poly_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Poly decay lr·(1 − step/iters)^power after an optional linear warm-up (the paper: "polynomial decay")."""

    def f(step: int) -> float:
        if step < cfg.warmup_iters:
            return (step + 1) / cfg.warmup_iters
        return max(0.0, 1 - step / max(1, cfg.iters)) ** cfg.poly_power

    return f


def compressed_schedule(cfg: Config, iters: int) -> dict[str, int]:
    """Settings that run the config's whole schedule in ``iters`` steps (``train --iters``): the poly decay ends at
    step ``iters`` (it always spans ``train.iters``), and the warm-ups (``train.warmup_iters``, ``usr.warmup_iters``)
    keep their share of the schedule, so a short run has the long one's shape instead of being all warm-up."""
    share = iters / max(1, cfg.train.iters)
    return {"train.iters": iters, "train.warmup_iters": round(cfg.train.warmup_iters * share),
            "usr.warmup_iters": round(cfg.usr.warmup_iters * share)}


def build_optimizer(model: Any, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (lr, weight decay of Sect. 4.2) over the adapters and decoder only; a backbone parameter is a bug."""
    params = model.trainable_parameters()
    frozen = {id(p) for m in (model.clip, model.dino) if m is not None for p in m.parameters()}
    assert not any(id(p) in frozen for p in params), "a frozen backbone parameter reached the optimiser"
    assert not any(p.requires_grad for m in (model.clip, model.dino) if m is not None for p in m.parameters()), \
        "a backbone parameter requires grad"
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, poly_lambda(cfg))


def _batch_getter(batches: BatchSource) -> Callable[[int], Batch]:
    if callable(batches):
        return batches
    it = iter(batches)

    def get(step: int) -> Batch:
        try:
            return next(it)
        except StopIteration:
            raise ValueError(f"the batch iterable ran out at step {step}; give at least train.iters batches") from None

    return get


def eta_text(rate: float | None, done: int, total: int) -> str:
    """", 0.56 it/s, ETA 19 h 44 min for steps 200–40000 of 40000" (empty before a rate is known)."""
    if not rate or done >= total:
        return ""
    left = (total - done) / rate
    h, m = divmod(round(left / 60), 60)
    return f", {rate:.3g} it/s, ETA {f'{h} h ' if h else ''}{m} min for steps {done}–{total} of {total}"


def projection(rate: float, done: int, cfg: TrainConfig, device: torch.device, cached: bool,
               dtype: torch.dtype) -> list[str]:
    """What the whole schedule will take at the measured rate, and on a CPU the switches that would make it cheaper
    (the frozen-feature cache; bf16 where the CPU has bf16 matrix units and fp32 was chosen)."""
    total = cfg.iters / rate
    h, m = divmod(round(total / 60), 60)
    took = f"{total:.0f} s" if total < 60 else f"{f'{h} h ' if h else ''}{m} min"
    prec = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")
    lines = [f"projected: the whole schedule, {cfg.iters} steps × batch {cfg.batch}, takes ≈ {took} at "
             f"{1 / rate:.2f} s/step ({device.type}, {prec}, frozen-feature cache "
             f"{'on' if cached else 'off'}){eta_text(rate, done, cfg.iters)}"]
    if device.type == "cpu":
        from ..runtime import cpu_has_bf16

        if not cached:
            lines.append("tip: --cache-features DIR runs the frozen backbones once per view instead of every step; "
                         "on a CPU that is most of a step's cost (benchmarks/RESULTS.md, training rows)")
        if dtype == torch.float32 and cpu_has_bf16():
            lines.append("tip: this CPU has bf16 matrix units (AMX/AVX512-BF16): --set train.precision=bf16 (what "
                         "auto picks here) runs the trainable step 2–3× faster (benchmarks/RESULTS.md)")
    return lines


def train(
    model: Any,
    batches: BatchSource,
    cfg: TrainConfig,
    out_path: str | Path,
    resume: bool = False,
    progress: Progress | None = None,
    extra: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    on_step: Callable[[int, Any, dict], None] | None = None,
) -> dict[str, Any]:
    """Train to ``cfg.iters`` steps, writing ``out_path`` every ``cfg.checkpoint_every`` steps and at the end.

    ``batches``: ``f(step) -> batch`` or an iterable of batches (see ``BatchSource``). ``resume`` continues
    ``out_path`` (when it exists) at its saved step with its optimiser, schedule, prototypes and RNG state.
    Returns ``{"start", "step", "losses", "seg", "aff"}`` (per-step histories of this call).
    Under torchrun the model is wrapped in DDP, ``batches`` must give this rank's slice of the global batch,
    and only rank 0 writes checkpoints."""
    from .ddp import all_reduce_sum, world, wrap

    rank, _ = world()
    model.all_reduce = all_reduce_sum  # VPE's prototype statistics summed over the ranks (itself for one process)
    out_path = Path(out_path)
    get_batch = _batch_getter(batches)
    opt, sched = build_optimizer(model, cfg)
    start = 0
    if resume and out_path.exists():
        state = load_checkpoint(out_path)
        restore_model(model, state, str(out_path))
        from ..model.adapter import upgrade_optimizer_state  # checkpoints from the per-level convolution layout

        opt.load_state_dict(upgrade_optimizer_state(state["optimizer"], model.trainable_modules(), state["trainable"]))
        sched.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start = state["step"]
        log.info("resuming %s at step %d of %d", out_path, start, cfg.iters)
    model.train()
    net = wrap(model, str(device))
    hist: dict[str, list[float]] = {"losses": [], "seg": [], "aff": []}
    model.train_dtype = training_dtype(cfg.precision, cfg.amp, device)
    clock: list[float] = []  # (first finished step, its time): the rate excludes the warm-up step
    eta_said = False
    for step in range(start, cfg.iters):
        batch = get_batch(step)
        if not isinstance(batch, Batch):
            raise TypeError(f"batches must give rs_wsss.train.batches.Batch objects, not {type(batch).__name__}")
        batch = batch.to(device)
        out = net(batch.images, batch.tags, batch.feats)  # feats: cached frozen features, or None
        loss = out["loss"]
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingDiverged(f"loss became {value} at step {step + 1}; lower train.lr (now {cfg.lr:g}) or "
                                   "check the tags and inputs")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hist["losses"].append(value)
        hist["seg"].append(float(out["seg"]))
        hist["aff"].append(float(out["aff"]))
        done = step + 1
        now = time.perf_counter()
        if not clock:
            clock = [done, now]
        rate = (done - clock[0]) / (now - clock[1]) if done > clock[0] and now > clock[1] else None
        if done % cfg.log_every == 0 or done == cfg.iters:
            log.info("step %d/%d loss %.4f (seg %.4f aff %.4f) lr %.2e%s", done, cfg.iters, value, hist["seg"][-1],
                     hist["aff"][-1], sched.get_last_lr()[0], eta_text(rate, done, cfg.iters))
        elif rate is not None and not eta_said:  # after the first timed step, once: the whole run's cost up front
            for line in projection(rate, done, cfg, torch.device(device), batch.feats is not None, model.train_dtype):
                log.info("%s", line)
            eta_said = True
        if on_step:
            on_step(done, model, out)
        if progress and rank == 0:
            progress("train", done, cfg.iters)
        if rank == 0 and (done % cfg.checkpoint_every == 0 or done == cfg.iters):
            save_checkpoint(out_path, model, opt, sched, done, {**(extra or {}), "last_loss": value})
    if start >= cfg.iters:
        log.info("%s already at step %d of %d", out_path, start, cfg.iters)
    return {"start": start, "step": max(start, cfg.iters), **hist}
