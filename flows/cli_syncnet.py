"""``fada train-syncnet``: train a SyncNet sync expert on a view of one's own data
(`shards.syncnet_data.train_syncnet_on_view`; the ``train-sync-expert`` flow calls the same function)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_train_syncnet(args: argparse.Namespace) -> int:
    from flows.cli import parse_overrides
    from fada.training_plots import loss_curve_png
    from filters.syncnet_training import LOG_FILE
    from fada.training import read_log
    from shards.syncnet_data import train_syncnet_on_view

    try:
        overrides = parse_overrides(args.set)
        if args.steps is not None:
            overrides["steps"] = args.steps
        if args.device is not None:
            overrides["device"] = args.device
        result = train_syncnet_on_view(args.data, args.view, args.out, overrides, held_out=args.held_out,
                                       split_by=args.split_by, progress=not args.quiet)
    except SystemExit as exc:  # a malformed --set
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    png = loss_curve_png(read_log(args.out), Path(args.out) / "loss_curve.png", f"train-syncnet {args.view}")
    m = result.metrics
    print(f"sync expert: {result.steps} steps, last loss {result.final_loss:.4f}; held out by {result.split}: "
          f"{m['val_clips']} clips, in-sync vs shifted accuracy {m['val_acc']:.3f} (chance 0.5), "
          f"offset within ±1 frame on {m['val_offset_ok']:.0%} of clips")
    print(f"weights: {result.checkpoint} (use: --set scoring.syncnet_weights={result.checkpoint}); "
          f"log: {Path(args.out) / LOG_FILE}; curve: {png}")
    return 0


def add_syncnet_command(sub) -> None:
    p = sub.add_parser("train-syncnet", help="train a SyncNet sync expert, self-supervised, on a view's clips")
    p.add_argument("--data", required=True, help="data directory")
    p.add_argument("--view", required=True, help="view to train on (e.g. strict)")
    p.add_argument("--out", required=True, help="output directory: model.safetensors, config.json, train_log.jsonl")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default 2000)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a training setting, e.g. batch_size=64, learning_rate=1e-4, model.width=1.0, model.crop_size=224")
    p.add_argument("--held-out", type=float, default=0.2, metavar="SHARE", help="share held out for validation")
    p.add_argument("--split-by", default="auto", choices=["auto", "source", "time"],
                   help="hold out whole sources, or the last part of every clip (auto: source with >= 5 sources)")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu … (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train_syncnet)
