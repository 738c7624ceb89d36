"""Why a trained GaussianTalker cell's mouth moves as little as it does: offset ablations, the Δμ field, head-frame
jitter — on its training frames (logic: :mod:`gt_core.methods.gaussiantalker.diagnose`).

    .venv/bin/python benchmarks/gaussiantalker_mouth.py CELL_DIR METHOD_DIR [--json OUT.json]

CELL_DIR is ``results/{subject}/{D}s/cell``, METHOD_DIR the trained ``results/{subject}/{D}s/gaussiantalker``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from gt_core.data.cell import load_cell  # noqa: E402
from gt_core.methods.gaussiantalker import diagnose as D  # noqa: E402
from gt_core.methods.gaussiantalker import train as T  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cell")
    ap.add_argument("method_dir")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    device = torch.device("cpu")
    cell = load_cell(args.cell)
    model, ckpt = T.load_checkpoint(Path(args.method_dir) / "checkpoint.pt", device)
    sh = T.sh_degree_at(T.TrainConfig.from_dict(ckpt["train_config"]), "deform", 1)
    out = {"jitter": D.head_frame_jitter(cell), "offset_field": D.offset_field(model, cell, device),
           "ablation": D.offset_ablation(model, cell, sh, device)}
    print(f"head frame: mouth-centre jitter {out['jitter']['mouth_centre_jitter_px']:.2f} px vs lip gap std "
          f"{out['jitter']['lip_gap_std_px']:.2f} px")
    f = out["offset_field"]
    print(f"Δμ: constant {f['constant_mm']:.2f} mm, frame-varying {f['varying_mm']:.2f} mm (global translation std "
          f"{[round(v, 2) for v in f['global_translation_std_mm']]} mm, non-rigid {f['non_rigid_mm']:.2f} mm); lip "
          f"separation std {f['lip_separation_std_mm']:.2f} mm, r vs GT gap {f['lip_separation_vs_gap_r']:+.2f}")
    print("| offsets kept | PSNR | mouth r | mouth std ratio | blink r | eye std ratio |\n|---|---|---|---|---|---|")
    for name, m in out["ablation"].items():
        print(f"| {name} | {m['psnr']:.2f} | {m['mouth_r']:.2f} | {m['mouth_std_ratio']:.2f} | {m['blink_r']:.2f} | "
              f"{m['eye_std_ratio']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
