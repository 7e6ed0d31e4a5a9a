"""The paper's protocol (Sect. 4.1–4.3), shared by ``potsdam.py`` and ``isaid.py``: tags from the ground-truth masks of
the training split → training with the paper's schedule → multi-scale + dense-CRF inference on the test split →
per-class IoU, mIoU, OA and F1 over the whole split, printed beside the paper's Table 1 / Table 2.

Every step is the ``rs-wsss`` command a user would run (called in-process, so each prints its own errors). A real run
needs real CLIP / DINOv2 weights (``--weights DIR``) and a GPU (40 000 iterations); ``--dry-run`` runs the same steps
with the tiny random architecture for a few iterations on the samples in ``../shared/data`` (numbers meaningless).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("RS_WSSS_SHARED_DATA", REPO.parent / "shared" / "data"))
SCALES = "0.75,1,1.25"  # infer.scales: the paper uses multi-scale testing without naming the scales


@dataclass
class Split:
    images: list[str]
    masks: list[str]


@dataclass
class Protocol:
    name: str  # also the packaged class set
    table: str  # "Table 1" / "Table 2"
    columns: list[tuple[str, str]]  # (paper's column, rs-wsss class name); the mean runs over these classes
    paper: dict[str, float]  # column → the paper's "Ours" value (%), plus mIoU / OA / F1
    summary: list[str]  # summary columns printed after the classes


def run_cli(*args: object) -> None:
    """One ``rs-wsss`` command, in this process; its error exits this script with its code and one-line message."""
    from rs_wsss_cli.main import main

    argv = [str(a) for a in args]
    shown = argv if len(argv) < 24 else argv[:10] + [f"... ({len(argv) - 14} more) ..."] + argv[-4:]
    print("$ rs-wsss " + " ".join(shown), flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    main(argv)
    print(f"  ({time.perf_counter() - t0:.1f} s, CPU {time.process_time() - c0:.1f} s)", flush=True)


def confusion(pred_paths: list[Path], mask_paths: list[str], class_set) -> object:
    """The confusion matrix summed over the split (each prediction on its mask's grid)."""
    import numpy as np

    from rs_wsss.raster.evaluate import confusion_matrix
    from rs_wsss.raster.io import open_dataset
    from rs_wsss.raster.masks import code_table, read_mask

    table = code_table(class_set, None)
    n = len(class_set.names)
    conf = np.zeros((n, n), np.int64)
    for p, m in zip(pred_paths, mask_paths):
        with open_dataset(p) as pr, open_dataset(m) as gt:
            if (pr.width, pr.height) != (gt.width, gt.height):
                raise SystemExit(f"{p} and {m} differ in size")
            conf += confusion_matrix(pr.read(1), read_mask(gt, None, table), n)
    return conf


def scores(conf, class_set, proto: Protocol) -> dict[str, float | None]:
    """Per-class IoU (%) of the paper's columns, their mean, OA and mean F1 over the same classes."""
    import numpy as np

    from rs_wsss.raster.evaluate import metrics

    m = metrics(conf, class_set.names)
    out: dict[str, float | None] = {}
    ious, f1s = [], []
    for col, name in proto.columns:
        iou, f1 = m["per_class"][name]["iou"], m["per_class"][name]["f1"]
        out[col] = None if iou is None else 100 * iou
        if iou is not None:
            ious.append(iou)
            f1s.append(f1)
    out["mIoU"] = 100 * float(np.mean(ious)) if ious else None
    out["OA"] = None if m["OA"] is None else 100 * m["OA"]
    out["F1"] = 100 * float(np.mean(f1s)) if f1s else None
    return out


def table(proto: Protocol, ours: dict[str, float | None], label: str,
          more: list[tuple[str, dict[str, float | None]]] = ()) -> str:  # type: ignore[assignment]
    cols = [c for c, _ in proto.columns] + proto.summary
    width = max(7, *(len(c) + 1 for c in cols))
    fmt = lambda v: f"{'-':>{width}}" if v is None else f"{v:>{width}.2f}"  # noqa: E731
    lines = [f"{proto.name}: per-class IoU (%) and summary beside the paper's {proto.table}",
             f"{'':<26}" + "".join(f"{c:>{width}}" for c in cols),
             f"{'paper (' + proto.table + ', Ours)':<26}" + "".join(fmt(proto.paper.get(c)) for c in cols),
             f"{label:<26}" + "".join(fmt(ours.get(c)) for c in cols)]
    lines += [f"{name:<26}" + "".join(fmt(row.get(c)) for c in cols) for name, row in more]
    return "\n".join(lines)


def parser(proto_name: str, layout: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=f"Reproduce the paper's {proto_name} numbers with rs-wsss.\n\n{layout}",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="dataset root in the layout above (not needed with --dry-run)")
    ap.add_argument("--weights", help="CLIP + DINOv2 weights directory (as rs-wsss weights resolves)")
    ap.add_argument("--work", type=Path, default=Path(f"paper_{proto_name}"), help="working directory (outputs)")
    ap.add_argument("--iters", type=int, help="training iterations (paper: 40000; dry run: 2)")
    ap.add_argument("--batch", type=int, help="batch size (paper: 4; dry run: 2)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny random architecture, a few iterations, the samples in ../shared/data")
    ap.add_argument("--tiny", action="store_true", help="tiny random architecture on --data (smoke run)")
    ap.add_argument("--no-crf", dest="crf", action="store_false",
                    help="skip the dense CRF (not the paper's protocol; faster smoke runs)")
    return ap


def run(proto: Protocol, train: Split, test: Split, args: argparse.Namespace) -> dict[str, float | None]:
    """Tags → train → segment → evaluate; prints the table and returns this run's scores."""
    from rs_wsss.classes import load_class_set

    tiny = args.dry_run or args.tiny
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tags = work / "tags.csv"
    run_cli("tags", "from-raster", *train.images, "--masks", str(Path(train.masks[0]).parent), "--classes", proto.name,
            "-o", tags, "--tile", "512", "--overlap", "0", "--overwrite")
    model = work / "model.pt"
    model.unlink(missing_ok=True)  # a fresh run, not a resume of an earlier one
    iters = args.iters or (2 if args.dry_run else 40000)  # Sect. 4.2: 40 000 iterations, batch 4
    batch = args.batch or (2 if args.dry_run else 4)
    extra = ["--tiny"] if tiny else ["--weights", args.weights] if args.weights else []
    run_cli("train", *train.images, "--tags", tags, "-o", model, "--classes", proto.name, "--iters", str(iters),
            "--batch", str(batch), "--device", args.device, *extra)
    pred_dir = work / "pred"
    seg_extra = ["--weights", "random"] if tiny else ["--weights", args.weights] if args.weights else []
    run_cli("segment", *test.images, "-o", f"{pred_dir}/", "--model", model, "--scales", SCALES,
            "--crf" if args.crf else "--no-crf",
            "--no-vectorize", "--overwrite", "--device", args.device, *seg_extra)
    preds = [pred_dir / f"{Path(s).stem}.tif" for s in test.images]
    cs = load_class_set(proto.name)
    ours = scores(confusion(preds, test.masks, cs), cs, proto)
    # the training-free baseline under the identical protocol (same test images, scales, CRF, scoring): users must
    # see how far training gets beyond zero-shot CAM + USR (training-free open-vocabulary RS methods such as
    # SegEarth-OV report Potsdam numbers close to the paper's)
    zs_dir = work / "zero_shot"
    run_cli("segment", *test.images, "-o", f"{zs_dir}/", "--zero-shot", "--classes", proto.name, "--scales", SCALES,
            "--crf" if args.crf else "--no-crf", "--no-vectorize", "--overwrite", "--device", args.device,
            *(["--tiny"] if tiny else seg_extra))
    zero = scores(confusion([zs_dir / f"{Path(s).stem}.tif" for s in test.images], test.masks, cs), cs, proto)
    label = "rs-wsss (dry run)" if args.dry_run else "rs-wsss (tiny)" if tiny else "rs-wsss (this run)"
    print()
    print(table(proto, ours, label, [("zero-shot (same protocol)", zero)]))
    print(f"\n{len(train.images)} training images, {len(test.images)} test images, {iters} iterations × batch {batch}, "
          f"scales {SCALES}, {'dense CRF' if args.crf else 'NO dense CRF'}; {time.perf_counter() - t0:.0f} s")
    if args.dry_run:
        print("dry run: tiny random backbones and a few iterations on the shared samples — the numbers only show the "
              "pipeline works end to end")
    return ours


def reproduce(proto: Protocol, layout: str, split: Callable[[Path, str], Split],
              samples: Callable[[], tuple[Split, Split]], argv: list[str] | None = None) -> None:
    """A script's entry point: the (train, test) splits are ``samples()`` with --dry-run, else ``split(DATA, "train")``
    and ``split(DATA, "val")`` under --data; then :func:`run`."""
    args = parser(proto.name, layout).parse_args(argv)
    if args.dry_run:
        train, test = samples()
    elif args.data is None:
        sys.exit("give --data ROOT (see --help for the layout) or --dry-run")
    else:
        train, test = split(args.data, "train"), split(args.data, "val")
    run(proto, train, test, args)


def need(path: Path, what: str) -> Path:
    if not path.exists():
        sys.exit(f"{path} not found ({what})")
    return path
