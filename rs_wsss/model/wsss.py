"""The rs-wsss model: frozen priors + trainable adapter/decoder, online CAM refinement and pseudo labels (Sect. 3).

Tensors in, tensors out: images are float32 (B, 3, H, W) RGB in [0, 1], tags multi-hot (B, C) over the foreground
classes; channel 0 of every CAM / logit tensor is the background.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..classes import ClassSet
from ..config import Config
from ..errors import ConfigError, RsWsssError
from ..paths import cache_dir
from ..priors.specs import PAPER_DEPTH, depth_scaled
from ..runtime import autocast
from . import cam as cam_mod
from . import losses, usr, vpe
from .adapter import FeatureAdapter
from .decoder import Decoder
from .multiscale import multi_scale
from .multiscale import resize as _resize
from .par import PAR
from .tpe import text_embeddings

if TYPE_CHECKING:
    from ..priors.clip import ClipPrior
    from ..priors.dino import DinoPrior


class WSSS(nn.Module):
    """Frozen priors + trainable adapters/decoder (Sect. 3).

    Trainable: ``adapter`` (CLIP, eqs 5–6, over all N blocks), ``dino_adapter`` (DINO, Sect. 3.5.1: the same
    multi-level adapter over the last ``adapter.dino_levels`` DINO blocks; only when ``usr.use_dino``) and
    ``decoder`` (eqs 7–8). Buffers: VPE ``prototypes`` (K, D2) + ``proto_init`` (eq 18). CLIP and DINO stay frozen
    (asserted here and in the optimiser). ``dino`` may be None for decoder inference; pass the DINO width as
    ``dino_width`` (a checkpoint's ``dims``) so a checkpoint trained with DINO still loads its ``dino_adapter``.

    - :meth:`train_step` = :meth:`frozen_features` (backbones, cacheable) + :meth:`step_from_features` (trainable
      forward, targets eq 9 → USR → VPE → PAR → pseudo labels under no_grad, loss eq 21);
    - :meth:`predict`: decoder probabilities, multi-scale (+ flip), no DINO;
    - :meth:`zero_shot`: TPE → eq 9 → USR, no decoder.
    """

    clip: ClipPrior
    dino: DinoPrior | None
    prototypes: torch.Tensor
    proto_init: torch.Tensor

    def __init__(self, cfg: Config, class_set: ClassSet, clip: ClipPrior, dino: DinoPrior | None,
                 dino_width: int | None = None,
                 all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        # sums VPE's seed statistics over the data-parallel ranks (eq 18); the training loop sets it (train.ddp)
        self.all_reduce: Callable[[torch.Tensor], torch.Tensor] = all_reduce or _identity
        # usr.n0 counts blocks of the paper's 12-block ViT-B/16; a deeper prior keeps the same share of deep blocks
        self.n0 = depth_scaled(cfg.usr.n0, clip.spec.blocks)
        if cfg.usr.enabled and not 1 <= self.n0 <= clip.num_blocks:  # the range depends on the backbone
            spec = clip.spec
            scaled = f"; it is block {self.n0} of {spec.name}'s {spec.blocks}" if self.n0 != cfg.usr.n0 else ""
            raise ConfigError(f"usr.n0={cfg.usr.n0} is outside 1..{clip.num_blocks} (the backbone has "
                              f"{clip.num_blocks} blocks{scaled}); set usr.n0 in that range (counted on a "
                              f"{PAPER_DEPTH}-block ViT-B)")
        self.cfg, self.class_set = cfg, class_set
        self.clip, self.dino = clip, dino
        a = cfg.adapter
        k = class_set.num_classes + 1
        self.adapter = FeatureAdapter(clip.width, a.hidden_dim, a.dim, clip.num_blocks, a.fuse_kernel)
        dino_width = dino.width if dino is not None else dino_width
        self.dino_adapter = None
        if cfg.usr.use_dino and dino_width:
            self.dino_adapter = FeatureAdapter(dino_width, a.dino_hidden_dim, a.dino_dim, a.dino_levels, a.fuse_kernel)
        d = cfg.decoder
        self.decoder = Decoder(a.dim, k, d.layers, d.heads, d.mlp_ratio, d.dropout)
        self.par = PAR(cfg.par.dilations, cfg.par.iters)
        f_cd_dim = a.dim + (a.dino_dim if self.dino_adapter is not None else 0)
        self.register_buffer("prototypes", torch.zeros(k, f_cd_dim))  # VPE momentum prototypes (eq 18)
        self.register_buffer("proto_init", torch.zeros(k, dtype=torch.bool))
        self._text: torch.Tensor | None = None  # derived from class set + weights: built on first use, not saved
        self.steps_done = 0  # training steps taken (usr.warmup_iters); restore_model sets it from a checkpoint
        # autocast dtype of the trainable forward in training (train.precision; the loop sets it), not saved
        self.train_dtype = torch.float32
        for m in (clip, dino):
            if m is not None:
                assert not any(p.requires_grad for p in m.parameters()), "backbones must stay frozen"

    @property
    def text(self) -> torch.Tensor:
        """Class text embeddings T (C, E) (eqs 1–4); decoder inference never needs them, so they are lazy."""
        if self._text is None:
            t = text_embeddings(self.class_set, self.clip.encode_text, self.cfg.tpe, cache_dir(), self.clip.identifier)
            self._text = t.to(self.prototypes.device)
        return self._text.to(self.prototypes.device)

    # ---- parameters -------------------------------------------------------------------------------------------
    def trainable_modules(self) -> dict[str, nn.Module]:
        """The trained parts by checkpoint key: adapter, decoder and (with DINOv2) the DINO adapter."""
        mods = {"adapter": self.adapter, "decoder": self.decoder}
        if self.dino_adapter is not None:
            mods["dino_adapter"] = self.dino_adapter
        return mods

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Every parameter the optimiser updates (the priors are frozen)."""
        return [p for m in self.trainable_modules().values() for p in m.parameters()]

    def param_counts(self) -> dict[str, int]:
        """Parameters per trainable module and per prior, ``trainable`` and ``total``."""
        def n(m: nn.Module | None) -> int:
            return sum(p.numel() for p in m.parameters()) if m is not None else 0

        counts = {name: n(m) for name, m in self.trainable_modules().items()}
        counts.update(clip=n(self.clip), clip_visual=n(self.clip.model.visual), dino=n(self.dino))
        counts["trainable"] = sum(p.numel() for p in self.trainable_parameters())
        counts["total"] = counts["trainable"] + counts["clip"] + counts["dino"]
        return counts

    def train(self, mode: bool = True) -> WSSS:
        """Set the trainable parts' mode; the frozen priors stay in eval mode."""
        super().train(mode)
        for m in (self.clip, self.dino):  # frozen priors never leave eval mode
            if m is not None:
                m.eval()
        return self

    # ---- training -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def frozen_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the trainable part needs from the frozen priors for one batch (cacheable: it never changes)."""
        f = self.clip(_resize(images, (self.clip.size, self.clip.size)))  # crop sizes: the priors' (specs.crop_size)
        out = {"tokens": torch.stack(f.tokens, 1), "attn": f.attn, "joint": f.joint}
        if self.dino_adapter is not None:  # F_cd needs DINO (eq 10)
            if self.dino is None:
                raise RsWsssError("training with usr.use_dino needs the DINO prior")
            # on F_clip's token grid already (eq 10 concatenates there): done once per view when cached, and the
            # cache entry is smaller; f_cd resizes levels of another grid (entries cached before) itself
            size = self.dino.size
            lv = self.dino.levels(_resize(images, (size, size)), self.cfg.adapter.dino_levels)
            b, n, d = lv.shape[:3]
            grid = tuple(f.joint.shape[-2:])
            out["dino"] = _resize(lv.flatten(0, 1), grid).view(b, n, d, *grid)
        return out

    def forward(self, images: torch.Tensor, tags: torch.Tensor, feats: dict | None = None) -> dict[str, torch.Tensor]:
        """The training forward (what DistributedDataParallel calls): cached ``feats`` or the frozen priors."""
        return self.step_from_features(feats if feats is not None else self.frozen_features(images), images, tags)

    def train_step(self, images: torch.Tensor, tags: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward + loss of one batch (the caller runs backward and the optimiser)."""
        return self.step_from_features(self.frozen_features(images), images, tags)

    def f_cd(self, f_clip: torch.Tensor, dino_levels: torch.Tensor | None) -> torch.Tensor:
        """Eq 10: F_cd = Concat(F_clip, F_dino), F_dino = the DINO adapter over the DINO levels (B, n, D, h', w')
        resized to F_clip's grid; F_clip alone when the DINO prior is switched off."""
        if self.dino_adapter is None:
            return f_clip
        n = self.dino_adapter.n_levels
        if dino_levels is None or dino_levels.ndim != 5 or dino_levels.shape[1] != n:
            got = "none" if dino_levels is None else tuple(dino_levels.shape)
            raise RsWsssError(f"DINO features {got} do not hold the {n} levels adapter.dino_levels asks for; "
                              "features cached by an older version or another config: delete that feature cache")
        b, _, d = dino_levels.shape[:3]
        grid = tuple(f_clip.shape[-2:])
        x = _resize(dino_levels.flatten(0, 1), grid).view(b, n, d, *grid)  # type: ignore[arg-type]
        return torch.cat([f_clip, self.dino_adapter(x)], dim=1)

    def step_from_features(self, feats: dict[str, torch.Tensor], images: torch.Tensor,
                           tags: torch.Tensor) -> dict[str, torch.Tensor]:
        """One training forward from the priors' outputs: logits (eqs 5–8), refined CAMs and pseudo labels
        (eqs 9–20) and the losses (eq 21).

        Args:
            feats: the priors' outputs (``tokens``, ``attn``, ``joint``, optional ``dino``), live or cached.
            images: the crops (B, 3, H, W) in [0, 1].
            tags: multi-hot tile tags (B, C) over the foreground classes.

        Returns:
            ``loss`` (with gradients), detached ``seg`` and ``aff`` terms, ``labels``, ``cam`` and ``logits``.
        """
        cfg = self.cfg
        b, _, height, width = images.shape
        with autocast(images.device, self.train_dtype):  # train.precision: only the trainable forward
            f_clip = self.adapter(feats["tokens"])  # eqs 5–6
            logits, dec_aff = self.decoder(f_clip, (height, width), want_affinity=cfg.loss.aff_on == "decoder")
            f_cd = self.f_cd(f_clip, feats.get("dino"))  # eq 10 (with gradients, for L_aff)
        # targets, pseudo labels and the losses' reductions in float32 (no-ops in float32)
        logits, f_cd = logits.float(), f_cd.float()
        h, w = f_clip.shape[-2:]
        warm = self.training and self.steps_done < cfg.usr.warmup_iters
        if self.training:
            self.steps_done += 1
        with torch.no_grad():
            tags_k = torch.cat([torch.ones_like(tags[:, :1]), tags], dim=1).bool()
            cams = self.refine_cam(feats, f_cd.detach(), tags, tags_k, update=self.training, warm=warm)
            cams = _resize(cams.view(b, -1, h, w), (height, width))
            if cfg.par.enabled:  # at cfg.par.scale of the crop, as AFA (down_scale 2): PAR costs O(pixels)
                small = _resize(images, (max(1, round(height * cfg.par.scale)), max(1, round(width * cfg.par.scale))))
                cams = _resize(self.par(small, cams), (height, width))
            labels = losses.pseudo_labels(cams, tags_k, cfg.pseudo.high, cfg.pseudo.low, cfg.pseudo.ignore_index,
                                          cfg.pseudo.rule)
        seg = losses.seg_loss(logits, labels, cfg.pseudo.ignore_index)
        if cfg.loss.aff_on == "joint":
            aff_pred = usr.joint_affinity(f_cd.flatten(2), cfg.usr.normalize_affinity)
        else:
            assert dec_aff is not None  # asked of the decoder above
            aff_pred = dec_aff.float()
        aff_lab = losses.affinity_labels(labels, (h, w), cfg.pseudo.ignore_index, cfg.loss.aff_radius)
        aff = losses.affinity_loss(aff_pred, aff_lab, cfg.pseudo.ignore_index)
        loss = losses.total_loss(seg, aff, cfg.loss)  # eq 21
        return {"loss": loss, "seg": seg.detach(), "aff": aff.detach(), "labels": labels, "cam": cams, "logits": logits}

    @torch.no_grad()
    def refine_cam(self, feats: dict[str, torch.Tensor], f_cd: torch.Tensor, tags: torch.Tensor, tags_k: torch.Tensor,
                   update: bool, warm: bool = False) -> torch.Tensor:
        """Initial CAM (eq 9) → USR (eqs 11–15) → VPE (eqs 16–20), each behind its switch; returns (B, K, hw).

        ``warm`` (the first ``usr.warmup_iters`` training steps): USR without the learned A_cd and no VPE.
        Without VPE the diffused maps are min–max normalised for the pseudo labels (eq 20 does it otherwise).
        A ``constant`` background (cam.bg_rule) is AFA's threshold written as a channel and is not refined."""
        cfg = self.cfg
        m_init = cam_mod.initial_cam(feats["joint"], self.text, tags, cfg.cam).flatten(2)
        fcd = f_cd.flatten(2)
        cams = m_init
        if cfg.usr.enabled:
            cams = usr.usr_refine(cams, fcd, feats["attn"], self.n0, cfg.usr.alpha,
                                  normalize=cfg.usr.normalize_affinity, use_affinity=not warm)
        if cfg.vpe.enabled and not warm:
            # prototypes "for each class" of an image labelled c: tagged foreground classes; the background only
            # with vpe.background_prototype (without one, its S_0 = 1 in eq 20)
            has_proto = torch.ones_like(self.proto_init)
            has_proto[0] = cfg.vpe.background_prototype
            if update:
                seeds = vpe.seed_mask(cams, tags_k, cfg.vpe.topk_percent) & has_proto[None, :, None]
                protos, init = vpe.update_prototypes(self.prototypes, self.proto_init, fcd, seeds, cfg.vpe.momentum,
                                                     reduce=self.all_reduce)
                self.prototypes.copy_(protos)
                self.proto_init.copy_(init)
            # a class without a prototype yet is left as USR made it (S_c = 1) rather than erased
            sim = vpe.prototype_similarity(self.prototypes, fcd, self.proto_init & has_proto)
            cams = vpe.prototype_cam(cams, sim, tags_k)
        elif cfg.usr.enabled:
            cams = usr.normalise_maps(m_init, cams)
        if cfg.cam.bg_rule == "constant":
            cams = torch.cat([m_init[:, :1].to(cams), cams[:, 1:]], dim=1)
        elif cfg.cam.bg_after_refine:  # WeCLIP: the background from the refined (tagged) maps, not diffused
            fg = cams[:, 1:] * tags.to(cams)[:, :, None]
            cams = torch.cat([cam_mod.background(fg, cfg.cam), cams[:, 1:]], dim=1)
        return cams.float()  # USR works in float64 (usr.usr_refine); the targets are float32

    # ---- inference ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, images: torch.Tensor, scales: list[float] | None = None,
                flip: bool | None = None) -> torch.Tensor:
        """Decoder probabilities (B, C+1, H, W), averaged over scales (and horizontal flips). DINO is not run."""
        def probs(x: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
            logits, _ = self.decoder(self.adapter(self.clip(x, need_attn=False).tokens), out_size)
            return logits.softmax(1)

        return multi_scale(probs, images, self.cfg.infer.scales if scales is None else scales,
                           self.cfg.infer.flip if flip is None else flip, self.clip.patch)

    @torch.no_grad()
    def zero_shot(self, images: torch.Tensor, tags: torch.Tensor | None = None, scales: list[float] | None = None,
                  flip: bool | None = None) -> torch.Tensor:
        """Training-free segmentation: initial CAM (eq 9) from the (TPE-enriched, eqs 1–4) text embeddings, for every
        class when ``tags`` is None, refined by USR (eqs 11–15) when ``usr.enabled``; no decoder. Returns
        (B, C+1, H, W) probabilities (CAM scores divided by their sum over classes), averaged over ``scales`` (and
        horizontal flips) as :meth:`predict`.

        Without a trained adapter there is no F_clip / F_dino: F_cd (eq 10) is the concatenation of the L2-normalised
        raw final-block CLIP tokens and DINO tokens (DINO run at DINO-patch/CLIP-patch of the CLIP input so both grids
        match), so A_cd = σ(F_cdᵀF_cd) is a sigmoid of summed cosines. Without a DINO prior (or ``usr.use_dino``
        false) F_cd is the CLIP part alone."""
        # background + tagged classes (every class without tags); the others keep probability 0
        allowed = torch.ones(images.shape[0], self.class_set.num_classes + 1, 1, 1, device=images.device)
        if tags is not None:
            allowed[:, 1:, 0, 0] = tags.to(allowed) > 0

        def probs(x: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
            cams = _resize(self._zero_shot_cam(x, tags), out_size).clamp_min(0)
            cams = cams + 1e-6 * allowed  # a pixel where every map is 0 is uniform over the allowed classes
            return cams / cams.sum(1, keepdim=True)

        return multi_scale(probs, images, self.cfg.infer.scales if scales is None else scales,
                           self.cfg.infer.flip if flip is None else flip, self.clip.patch)

    def _zero_shot_cam(self, x: torch.Tensor, tags: torch.Tensor | None) -> torch.Tensor:
        """(B, C+1, h, w) CAM on the CLIP token grid of ``x``: eq 9, then eqs 11–15 when USR is on (normalised per
        channel as the pseudo labels are without VPE, :func:`usr.normalise_maps`)."""
        f = self.clip(x, need_attn=self.cfg.usr.enabled)
        h, w = f.joint.shape[-2:]
        cams = cam_mod.initial_cam(f.joint, self.text, tags, self.cfg.cam).flatten(2)
        if self.cfg.usr.enabled:
            parts = [F.normalize(f.tokens[-1], dim=1)]
            if self.dino is not None and self.cfg.usr.use_dino:
                p = self.dino.patch
                dino = self.dino(_resize(x, (h * p, w * p)))
                parts.append(F.normalize(_resize(dino, (h, w)), dim=1))
            n0 = min(self.n0, self.clip.num_blocks)
            m_f = usr.usr_refine(cams, torch.cat(parts, 1).flatten(2), f.attn, n0, self.cfg.usr.alpha)
            cams = usr.normalise_maps(cams, m_f).float()  # normalised in float64, as usr_refine returns it
        return cams.view(cams.shape[0], -1, h, w)


def _identity(t: torch.Tensor) -> torch.Tensor:
    """The all-reduce of a single process."""
    return t
