"""The ``cozoo`` sub-commands' arguments, declared without torch or any model: the parser (``--help``,
``--version``) builds in milliseconds, and each handler imports its command's implementation
(`cozoo.commands.<name>`) only when that command runs."""

from __future__ import annotations

import argparse

from cozoo.commands import (
    STEP_THREADS,
    add_quiet_argument,
    add_threads_argument,
    positive_float,
    positive_int,
)
from cozoo.commands.choices import FLOPS_PROTOCOLS, WARMUP_MODES
from cozoo.evaluation.modes import DEFAULT_MODES, MODES

_WEIGHTS_DOC = """``cozoo weights fetch|import|list``: manage the cache of pretrained checkpoints."""
_FLOPS_DOC = """``cozoo flops NAME [--per-frame]`` and ``cozoo flops --all``: compute cost against the
published figures.

Two counting protocols, each compared only with figures produced the same way:

* ``pytorchvideo`` (default): 1 clip at the model's test crop, batch norm counted as fvcore does in train
  mode; compared with the checkpoint's GFLOPs in ``weights_manifest.json`` (PyTorchVideo model zoo,
  torchvision metadata for R(2+1)D-18).
* ``co3d``: batch norm in eval mode, at the crop that reproduces the Co3D paper's table (the paper does
  not state it per model; inferred in `cozoo.commands.flops`); compared with its 1-clip and
  per-frame-step GFLOPs. The paper counted with ptflops 0.6.8, which adds ReLU, pooling and biases to the
  MACs: about +1% per clip and +5-6% per CoX3D step over this count (measured by
  ``benchmarks/flops_conventions.py``).
"""
_FINETUNE_DOC = """``cozoo finetune CONFIG.yaml [key.sub=value ...]`` and ``cozoo finetune --resume RUN_DIR``:
fine-tune a model from a YAML recipe.

Recipes live in ``configs/finetune/``; overrides such as ``train.epochs=3 output_dir=runs/try`` apply on top.
The run folder gets ``last.pt`` (every epoch), ``best.pt`` (best validation accuracy), ``metrics.jsonl``,
``config.yaml`` (the recipe with its overrides) and the label map.
Several GPUs or machines: ``torchrun --nproc_per_node=G -m cozoo finetune CONFIG.yaml`` (``data.batch_size``
stays the global batch).

Resuming continues from ``last.pt`` exactly where it stopped:
  cozoo finetune --resume runs/synthetic_x3d        # the run folder: its config.yaml, overrides included
  cozoo finetune CONFIG.yaml [key=value ...] --resume   # the same recipe and overrides as the first run
"""
_EXTRACT_DOC = """``cozoo extract --model NAME --videos DIR|CSV --out DIR``: features of every video, one
safetensors file each (see `cozoo.inference.extract`): per clip for a regular model, per frame for a continual
one. Reruns skip finished videos; ``torchrun -m cozoo extract ...`` shares the videos among the processes."""

PROTOCOLS = tuple(FLOPS_PROTOCOLS)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``cozoo eval`` and ``cozoo stream``: model, weights, class names, preprocessing."""
    parser.add_argument("--model", required=True, help="registered name, e.g. x3d_s or cox3d_s_64")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", metavar="PATH",
                         help="weights file: a fine-tuning checkpoint, a state dict or a published file")
    weights.add_argument("--pretrained", action="store_true", help="the published weights (cached download)")
    parser.add_argument("--label-map", metavar="JSON",
                        help="class names of the outputs ({\"classes\": [...]}), overriding the checkpoint's")
    parser.add_argument("--crop", type=positive_int,
                        help="test crop and short side (default: the model's test crop)")
    parser.add_argument("--sampling-rate", type=positive_int, metavar="N",
                        help="continual models see every N-th frame (default: the clip sampling rate)")
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument("--target-fps", type=positive_float, metavar="FPS",
                        help="sample by time on a timeline at FPS frames/s, whatever each video's rate "
                        "(default: the fine-tuning recipe's, else the model publisher's: 30 for PyTorchVideo "
                        "models, 15 for torchvision's R(2+1)D-18, none for C3D)")
    timing.add_argument("--by-index", action="store_true",
                        help="sample by frame index (every sampling-rate-th frame), whatever the "
                        "video's rate")
    parser.add_argument("--pool-window", type=positive_int, metavar="FRAMES",
                        help="temporal window of the continual global pool (default: the model's)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def _models_list(args: argparse.Namespace) -> int:
    from cozoo.commands import models

    return models._list(args)


def _models_info(args: argparse.Namespace) -> int:
    from cozoo.commands import models

    return models._info(args)


def _weights_fetch(args: argparse.Namespace) -> int:
    from cozoo.commands import weights

    return weights._fetch(args)


def _weights_import(args: argparse.Namespace) -> int:
    from cozoo.commands import weights

    return weights._import(args)


def _weights_list(args: argparse.Namespace) -> int:
    from cozoo.commands import weights

    return weights._list(args)


def _flops(args: argparse.Namespace) -> int:
    from cozoo.commands import flops

    return flops._run(args)


def _evaluate(args: argparse.Namespace) -> int:
    from cozoo.commands import evaluate

    return evaluate._eval(args)


def _stream(args: argparse.Namespace) -> int:
    from cozoo.commands import stream

    return stream._stream(args)


def _finetune(args: argparse.Namespace) -> int:
    from cozoo.commands import finetune

    return finetune._run(args)


def _extract(args: argparse.Namespace) -> int:
    from cozoo.commands import extract

    return extract._extract(args)


def _export(args: argparse.Namespace) -> int:
    from cozoo.commands import export

    return export._export(args)

def add_models(subparsers: argparse._SubParsersAction) -> None:
    listing = subparsers.add_parser("models", help="list registered models (wildcards allowed)")
    listing.add_argument("pattern", nargs="?", default="*",
                         help="shell-style wildcard, e.g. '*x3d*' (a plain word matches names containing it)")
    listing.add_argument("--pretrained", choices=("yes", "no", "any"), default="any",
                         help="only models with (yes) or without (no) a published checkpoint")
    listing.add_argument("--table", action="store_true",
                         help="the zoo table: published top-1, GFLOPs per clip and per frame, params, "
                         "receptive field, delay, first output in seconds (stored figures: instant)")
    listing.set_defaults(handler=_models_list)
    info = subparsers.add_parser("info", help="config and published figures of one model")
    info.add_argument("name")
    info.add_argument("--json", action="store_true", help="every field, as JSON")
    info.set_defaults(handler=_models_info)
def add_weights(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("weights", help="download, import and list pretrained checkpoints",
                                   description=_WEIGHTS_DOC)
    commands = parser.add_subparsers(dest="weights_command", required=True)

    p = commands.add_parser("fetch", help="download, verify and convert published checkpoints into the cache")
    p.add_argument("names", nargs="+", metavar="NAME", help="model name(s), see `cozoo weights list`")
    p.add_argument("--url", help="download from this URL instead of the manifest's")
    p.add_argument("--sha256", help="expected sha256 of the file (pins checkpoints published without a hash)")
    p.add_argument("--force", action="store_true",
                   help="download and convert again even if cached; accept a --url whose file name is "
                   "another model's published checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_weights_fetch)

    p = commands.add_parser("import", help="verify and convert a checkpoint file copied by hand (no network)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("path", metavar="PATH", help="the published file, e.g. X3D_XS.pyth")
    p.add_argument("--sha256", help="expected sha256 of the file")
    p.add_argument("--force", action="store_true",
                   help="accept a file named as another model's published checkpoint")
    p.set_defaults(handler=_weights_import)

    p = commands.add_parser("list", help="published checkpoints and whether they are cached")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_weights_list)
def add_flops(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "flops", help="MACs, parameters and memory of a model (clip and continual frame step)",
        description=_FLOPS_DOC, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", nargs="?", help="registered model (see `cozoo models`)")
    parser.add_argument("--per-frame", action="store_true",
                        help="also count a continual frame step (implied for a continual NAME)")
    parser.add_argument("--all", action="store_true", help="every regular model vs the published figures")
    parser.add_argument("--crop", type=positive_int, help="square crop (default: the protocol's)")
    parser.add_argument("--frames", type=positive_int,
                        help="continual pool window; for a regular NAME also the clip length (a continual "
                        "NAME keeps its source's clip)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="pytorchvideo",
                        help="counting setting and which published figures to compare with")
    add_threads_argument(parser)
    parser.set_defaults(handler=_flops)
def add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="accuracy on a Kinetics-layout dataset: clip, multi-view and continual streaming"
    )
    add_model_arguments(parser)
    parser.add_argument("--annotations", required=True, metavar="CSV", help="Kinetics annotation CSV")
    parser.add_argument("--videos", required=True, metavar="DIR", help="folder holding the videos")
    parser.add_argument("--split", help="keep only rows of this split (e.g. val)")
    parser.add_argument("--modes", nargs="+", choices=MODES,
                        help=f"results to compute (default: {' '.join(DEFAULT_MODES)}); co3d: the Co3D "
                        "table's continual protocol (one clip stepped from zero padding, one output scored)")
    parser.add_argument("--protocol", choices=("co3d",),
                        help="evaluate as the Co3D table did: clip for a regular model, co3d for a continual "
                        "one (e.g. cozoo eval --model cox3d_s_64 --protocol co3d)")
    parser.add_argument("--frame-delay", type=int, default=0, metavar="N",
                        help="co3d: Co3D's forward_frame_delay; the output of step max(delay, N - 1) is "
                        "scored (default 0: step delay)")
    parser.add_argument("--clips", type=positive_int, default=10,
                        help="clips per video in multiview (default 10)")
    parser.add_argument("--crops", type=int, choices=(1, 3), default=3, help="crops per clip in multiview")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--out", metavar="DIR", help="write metrics.json and confusion_<result>.png here")
    parser.add_argument("--json", action="store_true", help="print the full metrics as JSON")
    add_threads_argument(parser)
    add_quiet_argument(parser)
    parser.set_defaults(handler=_evaluate)
def add_stream(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stream", help="per-frame predictions of a continual model on a video file, frames/s, plot"
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="video file, network URL (rtsp://, rtmp://, http(s)://, udp://, tcp://...), "
                        "capture device (/dev/video0, v4l2:/dev/video1, avfoundation:0, "
                        "'dshow:video=NAME', or 0 for the first camera); several run side by side")
    add_model_arguments(parser)
    parser.add_argument("--top-k", type=positive_int, default=5, help="classes printed per frame (default 5)")
    parser.add_argument("--no-fuse-bn", dest="fuse_bn", action="store_false",
                        help="keep BatchNorm layers separate (by default each BatchNorm that follows a conv "
                        "is folded into it: same predictions up to float rounding, fewer ops per frame)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="with --device cuda: replay each steady-state step as a CUDA graph (the fast "
                        "path: same predictions, a fraction of the launch overhead)")
    parser.add_argument("--pad", action="store_true",
                        help="for a video shorter than the warm-up: repeat its last frame until the first "
                        "prediction (the clip samplers' rule for short videos)")
    parser.add_argument("--warmup", choices=WARMUP_MODES, default="valid",
                        help="valid (default): predictions once the receptive field holds real frames; "
                        "padded: the state starts as the source network's temporal zero padding, so "
                        "predictions begin at step `delay` (Co3D's early outputs)")
    parser.add_argument("--plot", metavar="PNG", help="write the top classes' probabilities over time here "
                        "(several sources: PNG-0.png, PNG-1.png, ...)")
    parser.add_argument("--jsonl", metavar="PATH",
                        help="one JSON object per prediction (and per reconnection, plus a summary per "
                        "source) to PATH, or - for standard output; schema: "
                        "cozoo/inference/stream_jsonl.schema.json")
    parser.add_argument("--out", metavar="VIDEO.mp4",
                        help="write the input with the latest top-k labels and probability bars drawn on "
                        "each frame (several sources: VIDEO-0.mp4, ...)")
    parser.add_argument("--realtime", action="store_true",
                        help="read files at their own frame rate, as if live (by default as fast as the "
                        "model goes, dropping nothing)")
    parser.add_argument("--buffer", type=positive_int, default=4, metavar="FRAMES",
                        help="frames queued per source (default 4); when a live source gets ahead of the "
                        "model the oldest queued frame is dropped")
    parser.add_argument("--reconnect-retries", type=int, default=5, metavar="N",
                        help="attempts in a row to reopen a network source that dropped (default 5)")
    parser.add_argument("--rtsp-transport", choices=("tcp", "udp", "auto"), default="tcp",
                        help="how RTSP sources send their media (default tcp; auto: UDP, then TCP)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or status line")
    add_threads_argument(parser, default=STEP_THREADS)
    parser.add_argument("--plot-classes", type=positive_int, default=5,
                        help="classes drawn in the plot (default 5)")
    parser.set_defaults(handler=_stream)
def add_finetune(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune", help="fine-tune a model on a video dataset from a YAML recipe",
        description=_FINETUNE_DOC, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", metavar="CONFIG",
                        help="YAML recipe, e.g. configs/finetune/synthetic_x3d.yaml (or a run folder)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="override recipe values (parsed as YAML), e.g. train.epochs=3")
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN_DIR",
                        help="continue from last.pt: of RUN_DIR (with its config.yaml), or alone of CONFIG's "
                        "output_dir")
    add_threads_argument(parser)
    add_quiet_argument(parser)
    parser.set_defaults(handler=_finetune, extra_overrides=True)
def add_extract(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract", help="per-video (clip) or per-frame (continual stream) features as safetensors files",
        description=_EXTRACT_DOC, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(parser)
    parser.add_argument("--videos", required=True, metavar="DIR|CSV",
                        help="a folder of videos (searched recursively) or a CSV with a 'path' column")
    parser.add_argument("--out", required=True, metavar="DIR", help="where the .safetensors files go")
    parser.add_argument("--clips", type=positive_int, default=1,
                        help="regular models: uniformly spaced clips per video (default 1: the centre clip)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_threads_argument(parser)
    parser.set_defaults(handler=_extract)
def add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="a continual model's step as ONNX, state as explicit inputs/outputs, + metadata JSON")
    parser.add_argument("name", help="continual model, e.g. cox3d_s")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", metavar="PATH", help="weights file (fine-tuning checkpoint, state "
                         "dict or published file)")
    weights.add_argument("--pretrained", action="store_true", help="the published weights (cached download)")
    parser.add_argument("--crop", type=positive_int, help="frame size (default: the model's test crop)")
    parser.add_argument("--pool-window", type=positive_int, metavar="FRAMES",
                        help="temporal window of the global pool (default: the model's)")
    parser.add_argument("--sampling-rate", type=positive_int, metavar="N",
                        help="the runtime feeds every N-th video frame (default: the clip sampling rate)")
    parser.add_argument("--batch", type=positive_int, default=1, help="streams per step (default 1)")
    parser.add_argument("--dynamic-batch", action="store_true", help="any number of streams per step")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="output format (onnx)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for NAME.onnx and NAME.json")
    parser.add_argument("--no-fuse-bn", dest="fuse_bn", action="store_false",
                        help="keep BatchNorm separate (default: folded into convs, as cozoo stream does)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_export)


# Every sub-command, in the order `cozoo --help` lists them.
COMMANDS = (add_models, add_weights, add_flops, add_evaluate, add_stream, add_finetune, add_extract,
            add_export)
