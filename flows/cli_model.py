"""The model subcommands of ``fada``: train-teacher, distill, generate, train-tiny-decoder, evaluate, ablate,
split (and train-syncnet, from `flows.cli_syncnet`).

Each parses its arguments and calls one library function (`fada.train_teacher.train_teacher`,
`fada.distill.distill_student`, `fada.pipeline.FadaPipeline`, `fada.tiny_decoder.train_tiny_decoder`, `fada.evaluate.evaluate`,
`fada.ablation.run_ablation`, `shards.splits.write_test_view`); the Prefect flows call the same functions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def training_config(name_or_path: str, overrides: list[str]) -> dict:
    """A preset or YAML configuration with ``--set section.key=value`` overrides applied."""
    from fada.config import resolve_config
    from shards.sources import read_yaml

    if Path(name_or_path).is_file():
        read_yaml(name_or_path)  # undecodable bytes or bad YAML: an error naming the file and line
    return resolve_config(name_or_path, overrides)


def _config_errors_exit_2(command):
    """Train/distill: a configuration or checkpoint the command cannot use (ValueError, a missing file) is a
    user error — one line, exit 2 — not a traceback."""
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return run


@_config_errors_exit_2
def cmd_train_teacher(args: argparse.Namespace) -> int:
    from fada.train_teacher import train_teacher

    config = training_config(args.config, args.set)
    if args.sd15:
        config["sd15_dir"] = args.sd15
    result = train_teacher(args.data, args.view, config, args.steps, args.out, device=args.device, progress=not args.quiet)
    print(f"teacher: {result.steps} steps (resumed from {result.resumed_from}), last loss {result.final_loss:.4f}")
    print(f"checkpoint: {result.checkpoint}  (loss log: {Path(args.out) / 'train_log.jsonl'}, "
          f"TensorBoard: {Path(args.out) / 'tensorboard'})")
    return 0


@_config_errors_exit_2
def cmd_distill(args: argparse.Namespace) -> int:
    from fada.distill import DistillConfig, distill_student
    from filters.config_fields import allowed_paths, apply_overrides

    overrides = apply_overrides({}, args.set, allowed=allowed_paths(DistillConfig))
    overrides.update({"loss_mode": args.loss, "cfg_variant": args.cfg})
    result = distill_student(args.data, args.view, args.teacher, args.out, config=overrides, steps=args.steps,
                             device=args.device, init_student=args.init_student, progress=not args.quiet)
    print(f"student: {result.steps} steps (resumed from {result.resumed_from}), last loss {result.final_loss:.4f}")
    print(f"checkpoint: {result.checkpoint}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    import torch

    from fada.media import InputError
    from fada.pipeline import FadaPipeline

    try:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
        pipeline = FadaPipeline.from_checkpoint(args.ckpt, args.mode, device=args.device, dtype=dtype,
                                                tiny_decoder=args.tiny_decoder, output_size=args.size,
                                                num_inference_steps=args.steps, guidance_reference=args.s_r,
                                                guidance_audio=args.s_a, compile=args.compile)
        result = pipeline.generate(args.image, args.audio, args.out, seed=args.seed, progress=not args.quiet)
    except (InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {result.path}: {result.frames} frames in {result.clips} clips, NFE-D {result.nfe_per_clip:g} per clip "
          f"({result.nfe_total} in all), {result.seconds:.1f} s = {result.seconds_per_video_second:.2f} s per video second")
    return 0


def cmd_train_tiny_decoder(args: argparse.Namespace) -> int:
    from fada.tiny_decoder import TinyDecoderTrainConfig, train_tiny_decoder

    config = TinyDecoderTrainConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr, width=args.width,
                                    frame_size=args.size, mixed_precision=args.precision, num_workers=args.workers)
    try:
        summary = train_tiny_decoder(args.data, args.view, args.vae, args.out, config, eval_view=args.eval_view,
                                     device=args.device, progress=not args.quiet)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    held_out = summary["held_out"]
    quality = (f"held-out '{summary['eval_view']}' PSNR vs the VAE decoder {held_out['psnr_db']:.1f} dB "
               f"(untrained {summary['held_out_untrained']['psnr_db']:.1f} dB)" if held_out else "no held-out view")
    print(f"tiny decoder: {config.steps} steps, decoder loss {summary['first_loss_decoder']:.4f} → "
          f"{summary['last_loss_decoder']:.4f}; {quality}")
    print(f"saved {args.out}  (use: fada generate --tiny-decoder {args.out} …)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fada.evaluate import evaluate, format_table
    from fada.metrics import MissingWeightsError

    modes = args.mode or ["teacher"]
    if len(modes) not in (1, len(args.ckpt)):
        raise SystemExit("give one --mode for all checkpoints or one per --ckpt")
    runs = [(ckpt, modes[0] if len(modes) == 1 else modes[i]) for i, ckpt in enumerate(args.ckpt)]
    try:
        report = evaluate(args.data, runs, args.out, view=args.view, fid_weights=args.fid_weights,
                          fvd_weights=args.fvd_weights, syncnet_weights=args.syncnet_weights, skip=tuple(args.skip),
                          max_clips=args.max_clips, seed=args.seed, device=args.device)
    except (MissingWeightsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from fada.ablation import run_ablation

    rows = run_ablation(args.out, data_dir=args.data, view=args.view, teacher_steps=args.teacher_steps,
                        student_steps=args.student_steps, device=args.device, progress=not args.quiet,
                        table_path=args.table)
    print(f"{len(rows)} rows written to {args.table}")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from shards.splits import write_test_view
    from shards.views import ViewError, format_view_summary

    try:
        view, created = write_test_view(args.data_dir, args.name, fraction=args.fraction, seed=args.seed, wait=args.wait)
    except ViewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_view_summary(view) + ("" if created else "\n(identical split already existed; nothing written)"))
    print(json.dumps({"held_out_sources": view["split"]["sources"]}))
    return 0


def add_model_commands(sub) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default=None, help="cuda, cuda:1, cpu … (default: cuda when available)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("train-teacher", help="train the dual-UNet teacher on a view (resumes from --out)")
    p.add_argument("--data", required=True, help="data directory")
    p.add_argument("--view", default="strict", help="training view (default: strict)")
    p.add_argument("--config", default="tiny", help="tiny, sd15 or a YAML file (sections model, codec, train, sample)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override one configuration value")
    p.add_argument("--sd15", default=None, help="local Stable Diffusion 1.5 directory (diffusers layout) to initialise from")
    p.add_argument("--steps", type=int, required=True, help="total optimisation steps (a resumed run continues to this)")
    p.add_argument("--out", required=True, help="output directory (checkpoints/, final/, train_log.jsonl, tensorboard/)")
    common(p)
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("distill", help="distil a 6-step student from a teacher (PeRFlow, mixed supervision, CFG tokens)")
    p.add_argument("--data", required=True, help="data directory")
    p.add_argument("--view", default="lenient", help="training view (default: lenient)")
    p.add_argument("--teacher", required=True, help="teacher checkpoint (a train-teacher output directory)")
    p.add_argument("--loss", default="adaptive", choices=["none", "fixed", "adaptive-unlimited", "adaptive"],
                   help="ground-truth weighting (none = plain PeRFlow)")
    p.add_argument("--cfg", default="layer-tokens", choices=["none", "time-embed", "layer", "layer-tokens"],
                   help="how the student is told the CFG scales")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a distillation setting")
    p.add_argument("--init-student", help="start from this earlier student of the same teacher (retraining on new data)")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--out", required=True)
    common(p)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("generate", help="portrait + audio → talking-head mp4 with the audio muxed in")
    p.add_argument("--ckpt", required=True, help="teacher or student checkpoint directory")
    p.add_argument("--mode", default="teacher", choices=["teacher", "balanced", "fast"])
    p.add_argument("--image", required=True)
    p.add_argument("--audio", required=True, help="any rate/channels; wav, flac, ogg, mp3 …")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--size", type=int, default=None, help="output side in pixels (default: the model's)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: 25 teacher, 6 student)")
    p.add_argument("--s-r", type=float, default=None, help="reference guidance scale (default 2.5; 2.0 fast)")
    p.add_argument("--s-a", type=float, default=None, help="audio guidance scale (default 6.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="inference precision (bf16 on GPUs)")
    p.add_argument("--tiny-decoder", default=None, metavar="DIR",
                   help="local AutoencoderTiny (TAESD) directory: decode 10x faster than the SD VAE")
    p.add_argument("--compile", action="store_true", help="torch.compile the denoising net (GPU; ~75 s once)")
    common(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("train-tiny-decoder", help="distil a fast AutoencoderTiny decoder from the SD VAE on a view's frames")
    p.add_argument("--data", required=True, help="data directory")
    p.add_argument("--view", default="lenient", help="frames to train on (default: lenient)")
    p.add_argument("--vae", required=True, help="local SD1.5 directory (diffusers layout) or its vae/ directory")
    p.add_argument("--out", required=True, help="output directory (diffusers AutoencoderTiny + distill.json)")
    p.add_argument("--eval-view", default="test", help="held-out view for the before/after error (skipped if absent)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=8, help="frames per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=64, help="channels per tiny block (TAESD: 64)")
    p.add_argument("--size", type=int, default=None, help="frame side in pixels (default: 512, the SD VAE's)")
    p.add_argument("--precision", default="no", choices=["no", "bf16", "fp16"], help="autocast of the tiny networks")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers decoding frames")
    common(p)
    p.set_defaults(func=cmd_train_tiny_decoder)

    p = sub.add_parser("evaluate", help="the paper's Table 1 columns for checkpoints on the held-out test view")
    p.add_argument("--ckpt", action="append", required=True, help="checkpoint (repeat to compare several)")
    p.add_argument("--mode", action="append", choices=["teacher", "balanced", "fast"], help="one, or one per --ckpt")
    p.add_argument("--data", required=True)
    p.add_argument("--view", default="test")
    p.add_argument("--out", required=True)
    p.add_argument("--fid-weights", default=None, help="pt_inception-2015-12-05-6726825d.pth (pytorch-fid)")
    p.add_argument("--fvd-weights", default=None, help="r3d_18-b3b3357e.pth (torchvision, Kinetics-400)")
    p.add_argument("--syncnet-weights", default=None, help="syncnet_v2.model (default: the weight-free sync scorer)")
    p.add_argument("--skip", action="append", default=[], choices=["fid", "fvd"], help="leave a metric out (labelled)")
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("ablate", help="tiny teacher + the paper's Tables 2–4 student variants → docs/ablation.md")
    p.add_argument("--out", default="ablation-runs")
    p.add_argument("--data", default=None, help="data directory (default: generated speakers)")
    p.add_argument("--view", default="train")
    p.add_argument("--teacher-steps", type=int, default=None)
    p.add_argument("--student-steps", type=int, default=None)
    p.add_argument("--table", default="docs/ablation.md")
    common(p)
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("split", help="write the held-out test view (whole sources, chosen by hash)")
    p.add_argument("data_dir")
    p.add_argument("--name", default="test")
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    from flows.cli import add_wait_option

    add_wait_option(p)
    p.set_defaults(func=cmd_split)

    from flows.cli_syncnet import add_syncnet_command

    add_syncnet_command(sub)
