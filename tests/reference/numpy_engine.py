"""An independent reference of the method: the paper's eqs 1–21 and PAR written again from the paper in plain numpy
(float64, loops where they read like the equations). Nothing here imports ``rs_wsss.model``; the choices the paper
leaves open are taken from the README's table "Choices where the paper is silent" (each marked *README* below), not
from the code under test.

Shapes follow the paper: one image at a time, token maps (D, hw) with hw = h·w in row-major order, CAMs (K, hw) with
K = C + 1 and the background at channel 0.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy.special import erf

# ---- small helpers -----------------------------------------------------------------------------------------------


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def gelu(x: np.ndarray) -> np.ndarray:
    """The exact (erf) GELU, σ of eq 5 (*README*: GELU)."""
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def unit(v: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """v / ‖v‖ of a single vector."""
    return v / max(float(np.sqrt((v * v).sum())), eps)


def norm01(v: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Norm(·) of eqs 9 and 20: rescale one map linearly to [0, 1] by its min and max (a flat map becomes 0)."""
    lo, hi = float(v.min()), float(v.max())
    return (v - lo) / max(hi - lo, eps)


def softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max())
    return e / e.sum()


def bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (C, H, W) to ``size`` with half-pixel centres (torch's ``align_corners=False``, no
    antialiasing): source coordinate (dst + ½)·in/out − ½, clamped at 0."""
    c, h, w = x.shape
    oh, ow = size
    if (oh, ow) == (h, w):
        return x.copy()

    def taps(n_in: int, n_out: int) -> list[tuple[int, int, float]]:
        out = []
        for d in range(n_out):
            s = max((d + 0.5) * n_in / n_out - 0.5, 0.0)
            i0 = min(int(math.floor(s)), n_in - 1)
            i1 = min(i0 + 1, n_in - 1)
            out.append((i0, i1, s - i0))
        return out

    ys, xs = taps(h, oh), taps(w, ow)
    res = np.zeros((c, oh, ow))
    for i, (y0, y1, ly) in enumerate(ys):
        for j, (x0, x1, lx) in enumerate(xs):
            res[:, i, j] = ((1 - ly) * ((1 - lx) * x[:, y0, x0] + lx * x[:, y0, x1])
                            + ly * ((1 - lx) * x[:, y1, x0] + lx * x[:, y1, x1]))
    return res


def nearest(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest resize of (H, W) labels: source index ⌊dst·in/out⌋ (torch's ``mode="nearest"``)."""
    h, w = x.shape
    oh, ow = size
    return np.array([[x[min(int(math.floor(i * h / oh)), h - 1), min(int(math.floor(j * w / ow)), w - 1)]
                      for j in range(ow)] for i in range(oh)])


# ---- TPE, eqs 3–4 (eq 1 is the text encoder, eq 2 KMeans: tested on controlled clusters) --------------------------


def enrich(t: np.ndarray, a: np.ndarray, topk: int, lam: float) -> np.ndarray:
    """Eqs 3–4 for every class: t (C, E) global template embeddings, a (B, E) prototypes → T (C, E).
    *README*: t_c is L2-normalised first; W_c = the K prototypes with the largest t̂_cᵀa_j; the softmax runs over
    those K scores."""
    out = np.zeros_like(t, dtype=np.float64)
    for c in range(t.shape[0]):
        tc = unit(t[c])
        scores = [float(tc @ a[j]) for j in range(a.shape[0])]
        top = sorted(range(len(scores)), key=lambda j: -scores[j])[: min(topk, len(scores))]  # eq 3
        w = softmax(np.array([scores[j] for j in top]))
        out[c] = tc + lam * sum(w[n] * a[j] for n, j in enumerate(top))  # eq 4
    return out


# ---- eq 9 ---------------------------------------------------------------------------------------------------------


def initial_cam(joint: np.ndarray, text: np.ndarray, tags: np.ndarray | None, bg_rule: str = "power",
                bg_power: float = 1.0, bg_score: float = 0.45) -> np.ndarray:
    """Eq 9 for one image: joint (E, hw) final-block tokens, text (C, E), tags (C,) 0/1 or None → M_init (C+1, hw).
    *README*: untagged classes are 0; background = (1 − max_c M_c)^p over the tagged maps, or a constant."""
    c_n, hw = text.shape[0], joint.shape[1]
    m = np.zeros((c_n + 1, hw))
    for c in range(c_n):
        tc = unit(text[c])
        cos = np.array([unit(joint[:, i]) @ tc for i in range(hw)])
        m[c + 1] = norm01(cos) * (1.0 if tags is None else float(tags[c]))
    if bg_rule == "power":
        m[0] = np.clip(1.0 - m[1:].max(axis=0), 0, None) ** bg_power
    else:
        m[0] = bg_score
    return m


# ---- USR, eqs 10–15 -----------------------------------------------------------------------------------------------


def joint_affinity(f_cd: np.ndarray) -> np.ndarray:
    """Eq 11: A_cd(i, j) = σ(F_cd(:, i)ᵀF_cd(:, j)); f_cd (D2, hw) → (hw, hw)."""
    hw = f_cd.shape[1]
    a = np.zeros((hw, hw))
    for i in range(hw):
        for j in range(hw):
            a[i, j] = sigmoid(float(f_cd[:, i] @ f_cd[:, j]))
    return a


def scores(a_cd: np.ndarray, attn: np.ndarray) -> np.ndarray:
    """Eq 12: S_l = Σ_i Σ_j |A_cd(i, j) − A_s^l(i, j)|; attn (N, hw, hw) → (N,)."""
    return np.array([np.abs(a_cd - attn[l]).sum() for l in range(attn.shape[0])])


def gates(s: np.ndarray, n0: int) -> np.ndarray:
    """Eq 13 (N0 1-based): G_l = 1 if S_l < mean_{l'=N0..N} S_l', for l ≥ N0; blocks before N0 never count."""
    n = len(s)
    thr = sum(s[l - 1] for l in range(n0, n + 1)) / (n - n0 + 1)
    return np.array([1.0 if (l >= n0 and s[l - 1] < thr) else 0.0 for l in range(1, n + 1)])


def refining_map(a_cd: np.ndarray, attn: np.ndarray, g: np.ndarray, n0: int) -> np.ndarray:
    """Eq 14: R = A_cd ⊙ (1/N_m) Σ_{l=N0..N} G_l A_s^l (*README*: N_m = 0 keeps every deep map)."""
    n = attn.shape[0]
    keep = [l for l in range(n0, n + 1) if g[l - 1] > 0] or list(range(n0, n + 1))
    return a_cd * (sum(attn[l - 1] for l in keep) / len(keep))


def transition(r: np.ndarray, alpha: int) -> np.ndarray:
    """Eq 15's operator ((R_nor + R_norᵀ)/2)^α (*README*: R_nor = columns then rows normalised, once; the power is
    the matrix power)."""
    rn = r / np.maximum(r.sum(axis=0, keepdims=True), 1e-8)  # every column sums to 1
    rn = rn / np.maximum(rn.sum(axis=1, keepdims=True), 1e-8)  # then every row
    sym = (rn + rn.T) / 2
    out = np.eye(len(r))
    for _ in range(alpha):
        out = out @ sym
    return out


def usr(m_init: np.ndarray, f_cd: np.ndarray, attn: np.ndarray, n0: int, alpha: int,
        use_affinity: bool = True) -> np.ndarray:
    """Eqs 11–15 for one image: M_f^c = T·M_init^c for every channel; m_init (K, hw) → (K, hw).
    ``use_affinity=False`` is the README's warm-up: R = mean of the frozen maps of blocks ≥ N0."""
    if use_affinity:
        a = joint_affinity(f_cd)
        r = refining_map(a, attn, gates(scores(a, attn), n0), n0)
    else:
        r = sum(attn[l - 1] for l in range(n0, attn.shape[0] + 1)) / (attn.shape[0] - n0 + 1)
    t = transition(r, alpha)
    return np.stack([t @ m_init[c] for c in range(m_init.shape[0])])


def normalise_vpe_off(m_init: np.ndarray, m_f: np.ndarray) -> np.ndarray:
    """*README*: without VPE the diffused maps are min–max normalised; a map flat before diffusion keeps M_init."""
    return np.stack([m_init[c] if np.ptp(m_init[c]) <= 1e-6 else norm01(m_f[c]) for c in range(len(m_f))])


# ---- VPE, eqs 16–20 -----------------------------------------------------------------------------------------------


def seeds(m_f: np.ndarray, tags_k: np.ndarray, k: float) -> np.ndarray:
    """Eqs 16–17 for one image: I_cam = argmax over the tagged channels; Q_c = the top ⌈k·n⌉ of the n nonzero values
    of M_f^c where I_cam = c (ties at the cut kept). → (K, hw) bool."""
    kk, hw = m_f.shape
    q = np.zeros((kk, hw), bool)
    tagged = [c for c in range(kk) if tags_k[c]]
    owner = [max(tagged, key=lambda c: (m_f[c, i], -c)) for i in range(hw)]  # eq 16, first channel on ties
    for c in tagged:
        vals = [m_f[c, i] for i in range(hw) if owner[i] == c and m_f[c, i] > 0]
        if not vals:
            continue
        n_seeds = max(1, math.ceil(Fraction(k).limit_denominator(10**6) * len(vals)))  # exact: 0.6·15 is 9, not 10
        cut = sorted(vals, reverse=True)[n_seeds - 1]
        for i in range(hw):
            q[c, i] = owner[i] == c and m_f[c, i] > 0 and m_f[c, i] >= cut  # eq 17
    return q


def update(protos: np.ndarray, init: np.ndarray, feats: list[np.ndarray], q: list[np.ndarray],
           tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Eq 18 over a batch: P_c ← τP_c + (1 − τ)·mean of f_i over Q_c (the seeds of every image of the batch);
    *README*: a class's first prototype is its seed mean; a class without seeds keeps its prototype."""
    protos, init = protos.copy(), init.copy()
    for c in range(protos.shape[0]):
        picked = [f[:, i] for f, qq in zip(feats, q) for i in range(f.shape[1]) if qq[c, i]]
        if not picked:
            continue
        mean = sum(picked) / len(picked)
        protos[c] = tau * protos[c] + (1 - tau) * mean if init[c] else mean
        init[c] = True
    return protos, init


def similarity(protos: np.ndarray, init: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Eq 19: S_c(i) = max(cos(P_c, F̂_cd(:, i)), 0); *README*: S_c = 1 for a class without a prototype yet."""
    kk, hw = protos.shape[0], f.shape[1]
    s = np.ones((kk, hw))
    for c in range(kk):
        if init[c]:
            pc = unit(protos[c])
            s[c] = [max(float(pc @ unit(f[:, i])), 0.0) for i in range(hw)]
    return s


def prototype_cam(m_f: np.ndarray, s: np.ndarray, tags_k: np.ndarray) -> np.ndarray:
    """Eq 20: M_c = Norm(M_f^c ⊙ S_c²), untagged channels 0."""
    return np.stack([norm01(m_f[c] * s[c] ** 2) * float(tags_k[c]) for c in range(len(m_f))])


# ---- PAR (Ru et al. 2022, AFA wetr/PAR.py) ------------------------------------------------------------------------

W1, W2 = 0.3, 0.01  # AFA's w1, w2 (README: weights divided by 1 + w2)


def par(image: np.ndarray, cam: np.ndarray, dilations: list[int], iters: int) -> np.ndarray:
    """image (3, H, W), cam (K, h, w) → (K, H, W): the cam is bilinearly resized to the image, then every iteration
    replaces each pixel by the affinity-weighted sum of its 8 neighbours at every dilation (replicate padding).
    Affinity of neighbour n of p: softmax_n(−mean_rgb(|I_n − I_p| / (std_n(I_n)·w1))²) + w2·softmax_n(−(d_n /
    (std(d)·w1))²), divided by 1 + w2; std is the sample standard deviation (torch.std, AFA)."""
    _, hh, ww = image.shape
    x = bilinear(cam, (hh, ww))
    offs = [(a * d, b * d) for d in dilations for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)]
    dist = np.array([math.hypot(a, b) for a, b in offs])
    pos = softmax(-((dist / (dist.std(ddof=1) + 1e-8) / W1) ** 2))

    def at(z: np.ndarray, i: int, j: int) -> np.ndarray:
        return z[:, min(max(i, 0), hh - 1), min(max(j, 0), ww - 1)]

    aff = {}
    for i in range(hh):
        for j in range(ww):
            nb = np.stack([at(image, i + a, j + b) for a, b in offs], axis=1)  # (3, n)
            sd = nb.std(axis=1, ddof=1, keepdims=True)
            colour = (-((np.abs(nb - image[:, i, j, None]) / (sd + 1e-8) / W1) ** 2)).mean(axis=0)
            aff[i, j] = (softmax(colour) + W2 * pos) / (1 + W2)
    for _ in range(iters):
        new = np.zeros_like(x)
        for i in range(hh):
            for j in range(ww):
                new[:, i, j] = sum(aff[i, j][n] * at(x, i + a, j + b) for n, (a, b) in enumerate(offs))
        x = new
    return x


# ---- pseudo labels, affinity labels, eq 21 ------------------------------------------------------------------------


def pseudo_labels(cam: np.ndarray, tags_k: np.ndarray, rule: str = "argmax", high: float = 0.55, low: float = 0.35,
                  ignore: int = 255) -> np.ndarray:
    """cam (K, H, W) → M_p (H, W). *README*: ``argmax`` over background + tagged classes (WeCLIP); ``band``: AFA's
    confident foreground (≥ high, above the background), confident background (< low, background ≥ it), else
    ignored."""
    kk, hh, ww = cam.shape
    out = np.zeros((hh, ww), np.int64)
    tagged = [c for c in range(kk) if tags_k[c]]
    for i in range(hh):
        for j in range(ww):
            if rule == "argmax":
                out[i, j] = max(tagged, key=lambda c: (cam[c, i, j], -c))
                continue
            fg = [c for c in tagged if c > 0]
            best = max(fg, key=lambda c: (cam[c, i, j], -c)) if fg else None
            s = cam[best, i, j] if best is not None else -np.inf
            if s >= high and s > cam[0, i, j]:
                out[i, j] = best
            elif s < low and cam[0, i, j] >= s:
                out[i, j] = 0
            else:
                out[i, j] = ignore
    return out


def affinity_labels(labels: np.ndarray, size: tuple[int, int], radius: int | None, ignore: int = 255) -> np.ndarray:
    """Pairwise targets on the (h, w) token grid: nearest-resized labels, 1 same / 0 different, ``ignore`` when either
    is uncertain or the pair is further apart than ``radius`` tokens in rows or columns (AFA/WeCLIP). → (hw, hw)."""
    small = nearest(labels, size).flatten()
    h, w = size
    n = h * w
    out = np.zeros((n, n), np.int64)
    for p in range(n):
        for q in range(n):
            far = radius is not None and (abs(p // w - q // w) > radius or abs(p % w - q % w) > radius)
            if far or small[p] == ignore or small[q] == ignore:
                out[p, q] = ignore
            else:
                out[p, q] = int(small[p] == small[q])
    return out


def seg_loss(logits: list[np.ndarray], labels: list[np.ndarray], ignore: int = 255) -> float:
    """L_seg: mean cross-entropy over every non-ignored pixel of the batch (0 when all are ignored)."""
    total, n = 0.0, 0
    for lg, lb in zip(logits, labels):
        for i in range(lb.shape[0]):
            for j in range(lb.shape[1]):
                if lb[i, j] == ignore:
                    continue
                z = lg[:, i, j]
                total += float(np.log(np.exp(z - z.max()).sum()) + z.max() - z[lb[i, j]])
                n += 1
    return total / n if n else 0.0


def aff_loss(aff: list[np.ndarray], lab: list[np.ndarray]) -> float:
    """L_aff (AFA): ½·Σ_pos(1 − a)/(n_pos + 1) + ½·Σ_neg a/(n_neg + 1) over the batch."""
    pos = sum(float(((1 - a) * (y == 1)).sum()) for a, y in zip(aff, lab))
    neg = sum(float((a * (y == 0)).sum()) for a, y in zip(aff, lab))
    n_pos = sum(int((y == 1).sum()) for y in lab)
    n_neg = sum(int((y == 0).sum()) for y in lab)
    return 0.5 * pos / (n_pos + 1) + 0.5 * neg / (n_neg + 1)


# ---- adapter (eqs 5–6) and decoder (eqs 7–8) from given weights ---------------------------------------------------


def adapter(levels: list[np.ndarray], w: dict) -> np.ndarray:
    """Eq 5 per level (F_new = W¹σ(W²F + b²) + b¹ at every location), eq 6 (1×1 fuse of the concatenation).
    levels: N arrays (D, hw); w: {"mlps": [(W2, b2, W1, b1)], "fuse": (Wf, bf)} → (d, hw)."""
    news = []
    for (w2, b2, w1, b1), f in zip(w["mlps"], levels):
        news.append(w1 @ gelu(w2 @ f + b2[:, None]) + b1[:, None])
    wf, bf = w["fuse"]
    return wf @ np.concatenate(news, axis=0) + bf[:, None]


def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def decoder(f_clip: np.ndarray, grid: tuple[int, int], out_size: tuple[int, int], w: dict, heads: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Eqs 7–8: D pre-norm transformer blocks on the hw tokens (*README*: pre-norm, no positional encoding), final
    LayerNorm, 1×1 classifier, bilinear upsampling. Also the last block's affinity: σ of its head-averaged,
    symmetrised attention logits. f_clip (d, hw) → (logits (K, H, W), affinity (hw, hw))."""
    x = f_clip.T.copy()  # (hw, d)
    n, d = x.shape
    hd = d // heads
    aff = np.zeros((n, n))
    for blk in w["blocks"]:
        qkv = layer_norm(x, *blk["norm1"]) @ blk["qkv"][0].T + blk["qkv"][1]  # (hw, 3d) ordered [q|k|v][head][hd]
        out = np.zeros((n, d))
        logit_sum = np.zeros((n, n))
        for hh in range(heads):
            q = qkv[:, hh * hd:(hh + 1) * hd]
            k = qkv[:, d + hh * hd:d + (hh + 1) * hd]
            v = qkv[:, 2 * d + hh * hd:2 * d + (hh + 1) * hd]
            lg = q @ k.T / math.sqrt(hd)
            logit_sum += lg
            p = np.exp(lg - lg.max(axis=1, keepdims=True))
            out[:, hh * hd:(hh + 1) * hd] = (p / p.sum(axis=1, keepdims=True)) @ v
        x = x + out @ blk["proj"][0].T + blk["proj"][1]
        hid = gelu(layer_norm(x, *blk["norm2"]) @ blk["fc1"][0].T + blk["fc1"][1])
        x = x + hid @ blk["fc2"][0].T + blk["fc2"][1]
        mean = logit_sum / heads
        aff = sigmoid((mean + mean.T) / 2)
    x = layer_norm(x, *w["norm"])
    wc, bc = w["classifier"]
    logits = (x @ wc.T + bc).T.reshape(-1, *grid)
    return bilinear(logits, out_size), aff


# ---- the training target path: refine_cam and step_from_features --------------------------------------------------


def refine(feats: dict, f_cd: list[np.ndarray], tags: np.ndarray, text: np.ndarray, protos: np.ndarray,
           init: np.ndarray, p: dict, update_protos: bool = True) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Initial CAM (eq 9) → USR (eqs 11–15) → VPE (eqs 16–20) for a batch; returns (cams (K, hw) per image, new
    prototypes, new init flags). ``p``: n0, alpha, topk, tau, usr, vpe, warm, bg_rule, bg_power, bg_score,
    bg_proto. The prototypes (eq 18) are updated from the whole batch's seeds before eq 19 uses them."""
    b = tags.shape[0]
    m_init = [initial_cam(feats["joint"][i].reshape(feats["joint"].shape[1], -1), text, tags[i], p["bg_rule"],
                          p["bg_power"], p["bg_score"]) for i in range(b)]
    cams = [m.copy() for m in m_init]
    if p["usr"]:
        cams = [usr(m_init[i], f_cd[i], feats["attn"][i], p["n0"], p["alpha"], use_affinity=not p["warm"])
                for i in range(b)]
    tags_k = [np.concatenate([[1.0], tags[i]]) for i in range(b)]
    if p["vpe"] and not p["warm"]:
        has = np.ones(len(protos), bool)
        has[0] = p["bg_proto"]
        if update_protos:
            q = [seeds(cams[i], tags_k[i], p["topk"]) & has[:, None] for i in range(b)]
            protos, init = update(protos, init, f_cd, q, p["tau"])
        cams = [prototype_cam(cams[i], similarity(protos, init & has, f_cd[i]), tags_k[i]) for i in range(b)]
    elif p["usr"]:
        cams = [normalise_vpe_off(m_init[i], cams[i]) for i in range(b)]
    if p["bg_rule"] == "constant":
        for i in range(b):
            cams[i][0] = m_init[i][0]
    elif p.get("bg_after"):  # *README*: WeCLIP's background, (1 − max of the refined tagged maps)^p
        for i in range(b):
            cams[i][0] = np.clip(1.0 - (cams[i][1:] * tags[i][:, None]).max(axis=0), 0, None) ** p["bg_power"]
    return cams, protos, init


def fcd(feats: dict, w_clip: dict, w_dino: dict | None) -> list[np.ndarray]:
    """Eqs 5–6 and 10 per image: F_cd = Concat(F_clip, F_dino), the DINO levels bilinearly resized to the CLIP grid
    before the DINO adapter."""
    tok = feats["tokens"]  # (B, N, D, h, w)
    b, n, d, h, w = tok.shape
    out = []
    for i in range(b):
        f_clip = adapter([tok[i, l].reshape(d, h * w) for l in range(n)], w_clip)
        if w_dino is None:
            out.append(f_clip)
            continue
        lv = feats["dino"][i]  # (n', D', h', w')
        f_dino = adapter([bilinear(lv[l], (h, w)).reshape(lv.shape[1], h * w) for l in range(lv.shape[0])], w_dino)
        out.append(np.concatenate([f_clip, f_dino], axis=0))
    return out


def step(feats: dict, images: np.ndarray, tags: np.ndarray, text: np.ndarray, w: dict, protos: np.ndarray,
         init: np.ndarray, p: dict) -> dict:
    """One training step's targets and loss (eq 21) for a batch: adapters → decoder logits; eq 9 → USR → VPE → resize
    to the crop → PAR at ``p["par_scale"]`` of the crop → pseudo labels → L_seg, affinity labels → L_aff on A_cd."""
    b, _, hh, ww = images.shape
    h, wd = feats["tokens"].shape[-2:]
    f_cd = fcd(feats, w["adapter"], w.get("dino_adapter"))
    cams, protos, init = refine(feats, f_cd, tags, text, protos, init, p)
    out_cams, labels, logits = [], [], []
    for i in range(b):
        c = bilinear(cams[i].reshape(-1, h, wd), (hh, ww))
        if p["par"]:
            small = bilinear(images[i], (max(1, round(hh * p["par_scale"])), max(1, round(ww * p["par_scale"]))))
            c = bilinear(par(small, c, p["dilations"], p["par_iters"]), (hh, ww))
        out_cams.append(c)
        labels.append(pseudo_labels(c, np.concatenate([[1.0], tags[i]]), p["rule"], p["high"], p["low"]))
        f_clip = f_cd[i][: w["adapter"]["fuse"][0].shape[0]]
        logits.append(decoder(f_clip, (h, wd), (hh, ww), w["decoder"], p["heads"])[0])
    seg = seg_loss(logits, labels)
    aff = aff_loss([joint_affinity(f) for f in f_cd], [affinity_labels(lb, (h, wd), p["radius"]) for lb in labels])
    return {"cam": np.stack(out_cams), "labels": np.stack(labels), "logits": np.stack(logits), "seg": seg,
            "aff": aff, "loss": p["seg_w"] * seg + p["aff_w"] * aff, "protos": protos, "init": init,
            "refined": np.stack(cams), "f_cd": np.stack(f_cd)}


# ---- zero-shot: eq 9 → USR on the raw frozen tokens, no decoder ---------------------------------------------------


def zero_shot_probs(clip_tokens: np.ndarray, attn: np.ndarray, joint: np.ndarray, dino: np.ndarray | None,
                    text: np.ndarray, tags: np.ndarray | None, n0: int, alpha: int, out_size: tuple[int, int],
                    use_usr: bool = True) -> np.ndarray:
    """Training-free segmentation of one image at one scale (*README*: F_cd = the L2-normalised final CLIP tokens
    concatenated with the L2-normalised DINO tokens resized to the CLIP grid; the diffused maps min–max normalised as
    without VPE; probabilities = CAM scores / their sum over background + tagged classes, 1e-6 added to each allowed
    class). clip_tokens (D, h, w), attn (N, hw, hw), joint (E, h, w), dino (D', h', w') or None → (C+1, H, W)."""
    _, h, w = clip_tokens.shape
    m_init = initial_cam(joint.reshape(joint.shape[0], -1), text, tags)
    cams = m_init
    if use_usr:
        parts = [np.stack([unit(v) for v in clip_tokens.reshape(clip_tokens.shape[0], -1).T], axis=1)]
        if dino is not None:
            d = bilinear(dino, (h, w)).reshape(dino.shape[0], -1)
            parts.append(np.stack([unit(v) for v in d.T], axis=1))
        m_f = usr(m_init, np.concatenate(parts, axis=0), attn, n0, alpha)
        cams = normalise_vpe_off(m_init, m_f)
    allowed = np.ones(len(cams)) if tags is None else np.concatenate([[1.0], (tags > 0).astype(float)])
    c = np.clip(bilinear(cams.reshape(-1, h, w), out_size), 0, None) + 1e-6 * allowed[:, None, None]
    return c / c.sum(axis=0, keepdims=True)
