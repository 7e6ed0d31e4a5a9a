"""ISPRS Potsdam, the paper's Table 2: per-class IoU, mIoU, OA and F1 on the 14 test images.

    python benchmarks/paper/potsdam.py --data /data/potsdam_mmseg --weights ~/weights      # GPU, real weights
    python benchmarks/paper/potsdam.py --dry-run                                            # CI: the shared sample
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _protocol import DATA, Protocol, Split, need, reproduce  # noqa: E402

LAYOUT = """Layout (the output of mmsegmentation's tools/dataset_converters/potsdam.py on 2_Ortho_RGB.zip and
5_Labels_all_noBoundary.zip: the standard split of 24 training / 14 test images cut into 512 px patches, 3,456 and
2,016 of them as in Sect. 4.1; index masks, 0 = ignored, 1..6 the classes):
  DATA/img_dir/train/*.png  DATA/ann_dir/train/*.png  DATA/img_dir/val/*.png  DATA/ann_dir/val/*.png"""

PROTOCOL = Protocol(
    name="potsdam",
    table="Table 2",
    columns=[("Surface", "impervious_surface"), ("Building", "building"), ("LowVeg", "low_vegetation"),
             ("Tree", "tree"), ("Car", "car"), ("Clutter", "clutter")],
    paper={"Surface": 55.40, "Building": 52.43, "LowVeg": 50.85, "Tree": 52.67, "Car": 50.41, "Clutter": 20.31,
           "mIoU": 47.01, "OA": 66.89, "F1": 56.70},
    summary=["mIoU", "OA", "F1"],
)


def split(root: Path, part: str) -> Split:
    images = sorted(str(p) for p in need(root / "img_dir" / part, "images").glob("*.png"))
    masks = [str(need(root / "ann_dir" / part / Path(p).name, "mask of " + Path(p).name)) for p in images]
    return Split(images, masks)


def samples() -> tuple[Split, Split]:
    """--dry-run: the one real Potsdam crop in the shared pack serves as both splits."""
    sample = Split([str(DATA / "potsdam/images/2_10_0_0_512_512.png")],
                   [str(DATA / "potsdam/masks/2_10_0_0_512_512.png")])
    return sample, sample


def main(argv: list[str] | None = None) -> None:
    reproduce(PROTOCOL, LAYOUT, split, samples, argv)


if __name__ == "__main__":
    main()
