"""iSAID, the paper's Table 1: per-class IoU and mIoU (16 classes with the background) on the validation images.

    python benchmarks/paper/isaid.py --data /data/iSAID --weights ~/weights      # GPU, real weights
    python benchmarks/paper/isaid.py --dry-run                                   # CI: the shared samples
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _protocol import DATA, Protocol, Split, need, reproduce  # noqa: E402

LAYOUT = """Layout (the iSAID devkit's, as CAPTAIN-WHU/iSAID_Devkit preprocess/dataset/iSAID; RGB-coded semantic masks
*_instance_color_RGB.png beside the images or in a masks/ folder). Training tags come from the training masks on a
grid of 512 px tiles without overlap (Sect. 4.1 "crop each image into 512×512 tiles"); the validation images are the
test set (iSAID's test masks are not public):
  DATA/train/images/P*.png  DATA/train/images/P*_instance_color_RGB.png   (or DATA/train/masks/)
  DATA/val/images/P*.png    DATA/val/images/P*_instance_color_RGB.png     (or DATA/val/masks/)"""

PROTOCOL = Protocol(
    name="isaid",
    table="Table 1",
    columns=[("BG", "background"), ("GTF", "ground_track_field"), ("SBF", "soccer_ball_field"),
             ("SV", "small_vehicle"), ("SH", "ship"), ("BR", "bridge"), ("BC", "basketball_court"),
             ("BD", "baseball_diamond"), ("RA", "roundabout"), ("PL", "plane"), ("TC", "tennis_court"),
             ("LV", "large_vehicle"), ("ST", "storage_tank"), ("HA", "harbor"), ("SP", "swimming_pool"),
             ("HC", "helicopter")],
    paper={"BG": 83.40, "GTF": 49.94, "SBF": 53.55, "SV": 11.96, "SH": 29.61, "BR": 18.76, "BC": 49.21, "BD": 40.96,
           "RA": 17.16, "PL": 39.26, "TC": 47.97, "LV": 29.75, "ST": 45.83, "HA": 25.41, "SP": 38.02, "HC": 27.40,
           "mIoU": 38.01},
    summary=["mIoU"],
)


def split(root: Path, part: str) -> Split:
    folder = need(root / part / "images", "images")
    images = sorted(str(p) for p in folder.glob("*.png") if "_instance_" not in p.stem)
    masks = []
    for p in images:
        name = f"{Path(p).stem}_instance_color_RGB.png"
        here, there = folder / name, root / part / "masks" / name
        masks.append(str(here if here.exists() else need(there, "mask of " + Path(p).name)))
    return Split(images, masks)


def samples() -> tuple[Split, Split]:
    """--dry-run: devkit samples, P0005 a training image and P0003 a validation image (P0004, too, is left out to keep
    the CI dry run short)."""

    def sample(names: list[str]) -> Split:
        return Split([str(DATA / f"isaid/images/{n}.png") for n in names],
                     [str(DATA / f"isaid/masks/{n}_instance_color_RGB.png") for n in names])

    return sample(["P0005"]), sample(["P0003"])


def main(argv: list[str] | None = None) -> None:
    reproduce(PROTOCOL, LAYOUT, split, samples, argv)


if __name__ == "__main__":
    main()
