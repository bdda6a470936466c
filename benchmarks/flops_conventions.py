"""Why cozoo's per-frame GFLOPs of CoX3D sit 5-7% under the Co3D table: the table counted with ptflops.

The Co3D paper's figures come from ptflops 0.6.8 with continual-inference's hooks, which count ReLU,
pooling and conv/linear biases on top of the convolution MACs; cozoo counts in fvcore's convention (conv /
matmul MACs and batch norm only). This script counts the same networks both ways: ptflops on our regular
model (a clip) and on the continual-inference build of it (one step in steady state, forward_step call
mode), beside `cozoo.count_flops` (batch norm eval-mode, as ``cozoo flops --protocol co3d``). Needs the
bench extra (continual-inference, ptflops). Usage::

    python benchmarks/flops_conventions.py [--out benchmarks/results/flops_conventions.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cozoo  # noqa: E402
from benchmarks import peers  # noqa: E402
from cozoo.commands.flops import CO3D  # noqa: E402
from cozoo.continual import to_continual  # noqa: E402

MODELS = (("x3d_xs", 4), ("x3d_s", 13), ("x3d_m", 16), ("x3d_l", 16))


def ptflops_gmacs(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    from ptflops import get_model_complexity_info

    macs, _ = get_model_complexity_info(model, shape, as_strings=False, print_per_layer_stat=False,
                                        verbose=False)
    return macs / 1e9


def compare(name: str, frames: int, crop: int | None = None) -> dict[str, float | None]:
    """Clip and per-step GMACs of ``name`` (at the Co3D crop by default): ptflops, cozoo (fvcore), and the
    table's figures (None at another crop)."""
    table = CO3D[name] if crop in (None, CO3D[name].crop) else None
    crop = crop or CO3D[name].crop
    regular = cozoo.create_model(name).eval()
    ours = to_continual(regular, pool_window=frames).eval()
    peer = peers.to_co_inference(regular, peers.global_pool_window(ours))
    with torch.no_grad():
        frame = torch.randn(1, 3, crop, crop)
        for _ in range(int(ours.first_output) + 3):  # steady state
            peer.forward_step(frame)
        peer.call_mode = "forward_step"
        step_ptflops = ptflops_gmacs(peer, (3, crop, crop))
    return {
        "crop": crop,
        "clip_ptflops": ptflops_gmacs(regular, (3, frames, crop, crop)),
        "clip_cozoo": cozoo.count_flops(regular, (1, 3, frames, crop, crop)).gmacs,
        "clip_co3d_table": table.clip if table else None,
        "step_ptflops": step_ptflops,
        "step_cozoo": cozoo.count_flops(ours, (1, 3, crop, crop)).gmacs,
        "step_co3d_table": table.frame if table else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if peers.available() is None:
        raise SystemExit("needs continual-inference and ptflops: pip install -e '.[bench]'")
    results = {name: compare(name, frames) for name, frames in MODELS}
    print(f"{'model':8s} {'crop':>4s}  clip: {'ptflops':>8s} {'cozoo':>7s} {'table':>6s}   "
          f"step: {'ptflops':>8s} {'cozoo':>7s} {'table':>6s}")
    for name, r in results.items():
        table = "-" if r["step_co3d_table"] is None else f"{r['step_co3d_table']:.2f}"
        print(f"{name:8s} {r['crop']:4d}        {r['clip_ptflops']:8.3f} {r['clip_cozoo']:7.3f} "
              f"{r['clip_co3d_table']:6.2f}         {r['step_ptflops']:8.4f} {r['step_cozoo']:7.4f} "
              f"{table:>6s}")
    if args.out:
        figures = {"unit": "GMACs", "ptflops": "0.6.8", "models": results}
        args.out.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
