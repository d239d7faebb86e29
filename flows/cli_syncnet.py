"""``fada train-syncnet``: train a SyncNet sync expert on a view of one's own data
(`shards.syncnet_data.train_syncnet_on_view`; the ``train-sync-expert`` flow calls the same function)."""

from __future__ import annotations

import argparse
from pathlib import Path

from flows.cli_common import MODEL_USER_ERRORS
from flows.cli_flow_options import options_from_flow


def cmd_train_syncnet(args: argparse.Namespace) -> int:
    from fada.training_plots import loss_curve_png
    from filters.config_fields import allowed_paths, apply_overrides
    from filters.syncnet_training import LOG_FILE, SyncNetTrainingConfig
    from fada.training import read_log
    from shards.syncnet_data import train_syncnet_on_view

    # model keys are open here: SyncNetTrainingConfig.from_dict checks them against SyncNetModel's keywords
    settings = apply_overrides({}, args.settings, allowed={**allowed_paths(SyncNetTrainingConfig), "model": None})
    settings = {**settings, "steps": args.steps, **({"device": args.device} if args.device else {})}  # as the flow
    result = train_syncnet_on_view(args.data_dir, args.view, args.out_dir, settings, held_out=args.held_out,
                                   split_by=args.split_by, progress=not args.quiet)
    png = loss_curve_png(read_log(args.out_dir), Path(args.out_dir) / "loss_curve.png", f"train-syncnet {args.view}")
    m = result.metrics
    print(f"sync expert: {result.steps} steps, last loss {result.final_loss:.4f}; held out by {result.split}: "
          f"{m['val_clips']} clips, in-sync vs shifted accuracy {m['val_acc']:.3f} (chance 0.5), "
          f"offset within ±1 frame on {m['val_offset_ok']:.0%} of clips")
    print(f"weights: {result.checkpoint} (use: --set scoring.syncnet_weights={result.checkpoint}); "
          f"log: {Path(args.out_dir) / LOG_FILE}; curve: {png}")
    return 0


def add_syncnet_command(sub) -> None:
    p = sub.add_parser("train-syncnet", help="train a SyncNet sync expert, self-supervised, on a view's clips")
    options_from_flow(p, "train_sync_expert_flow", {"data_dir": "--data", "out_dir": "--out", "settings": "--set"},
                      lambda _: {"--set": {"help": "a training setting, e.g. batch_size=64, learning_rate=1e-4, "
                                                   "model.width=1.0, model.crop_size=224"},
                                 "--held-out": {"metavar": "SHARE"}})
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train_syncnet, user_errors=MODEL_USER_ERRORS)
