"""How fast a weights file for the wrong architecture is refused (goal < 2 s), for real-sized files.

Files (random values, exact layouts): a CLIP ViT-B/32 as OpenAI's fp16 TorchScript archive and as open_clip's
``.bin``, and a DINOv2 ViT-B/14 ``model.safetensors`` given as the CLIP file. Reported: the in-process time of
``build_priors`` to fail (torch already imported), and the whole CLI ``segment`` wall time beside the same command
failing on a missing weights path (process start + imports, the floor any check sits on).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import NAIP, cli, machine


def write_files(d: Path) -> dict[str, Path]:
    import torch
    from open_clip.factory import get_model_config
    from open_clip.model import CLIP, convert_weights_to_fp16
    from safetensors.torch import save_file

    from rs_wsss.priors.layouts import dino_shapes
    from rs_wsss.priors.specs import KNOWN

    model = CLIP(**get_model_config("ViT-B-32"), quick_gelu=True).eval()
    convert_weights_to_fp16(model)
    files = {"ViT-B-32 OpenAI TorchScript (ViT-B-32.pt)": d / "ViT-B-32.pt",
             "ViT-B-32 open_clip .bin": d / "open_clip_pytorch_model.bin",
             "DINOv2 ViT-B/14 timm safetensors": d / "model.safetensors"}
    torch.jit.save(torch.jit.script(model), str(files["ViT-B-32 OpenAI TorchScript (ViT-B-32.pt)"]))
    torch.save({k: v for k, v in model.state_dict().items() if not k.endswith("attn_mask")},
               files["ViT-B-32 open_clip .bin"])
    save_file({k: torch.zeros(s) for k, s in dino_shapes(KNOWN["dinov2-vit-b-14"]).items()},
              str(files["DINOv2 ViT-B/14 timm safetensors"]))
    return files


if __name__ == "__main__":
    from rs_wsss.config import load_config
    from rs_wsss.errors import WeightsNotFound
    from rs_wsss.priors import build_priors

    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        files = write_files(d)
        floor_cmd = cli() + ["segment", str(NAIP), "-o", str(d / "o.gpkg"), "--zero-shot", "--classes", "landcover"]
        t = time.perf_counter()
        p = subprocess.run(floor_cmd + ["--weights", str(d / "missing.bin")], capture_output=True, text=True,
                           check=False)
        floor = time.perf_counter() - t
        print(f"| for comparison: same command, weights path missing (reported after torch loads; exit {p.returncode}) "
              f"| {floor:.2f} s |")
        for name, path in files.items():
            size = path.stat().st_size / 2**20
            t = time.perf_counter()
            try:
                build_priors(load_config().priors, str(path))
                raise SystemExit(f"{name}: loaded, but it is the wrong architecture")
            except WeightsNotFound:
                inproc = time.perf_counter() - t
            t = time.perf_counter()
            p = subprocess.run(floor_cmd + ["--weights", str(path)], capture_output=True, text=True, check=False)
            wall = time.perf_counter() - t
            line = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
            print(f"| {name} ({size:.0f} MiB) | build_priors fails in {inproc * 1000:.0f} ms | CLI exit {p.returncode} "
                  f"in {wall:.2f} s | goal < 2 s |")
            print(f"|   {line[:200]}")
    sys.exit(0)
