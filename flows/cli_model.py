"""The model subcommands of ``fada``: train-teacher, distill, generate, train-tiny-decoder, evaluate, ablate,
split (and train-syncnet, from `flows.cli_syncnet`).

Each parses its arguments and calls one library function (`fada.train_teacher.train_teacher`,
`fada.distill.distill_student`, `fada.pipeline.FadaPipeline`, `fada.tiny_decoder.train_tiny_decoder`, `fada.evaluate.evaluate`,
`fada.ablation.run_ablation`, `shards.splits.write_test_view`); the Prefect flows call the same functions, and the
commands that have a flow take their options from its parameters (`flows.cli_flow_options`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flows.cli_common import MODEL_USER_ERRORS, UserError, add_wait_option
from flows.cli_flow_options import comma_separated, options_from_flow
from flows.cli_syncnet import add_syncnet_command


def training_config(name_or_path: str, overrides: list[str], sd15_dir: str | None = None) -> dict:
    """A preset or YAML configuration with ``--set section.key=value`` overrides applied."""
    from fada.config import resolve_config
    from shards.sources import read_yaml

    if Path(name_or_path).is_file():
        read_yaml(name_or_path)  # undecodable bytes or bad YAML: an error naming the file and line
    return resolve_config(name_or_path, overrides, sd15_dir)


def cmd_train_teacher(args: argparse.Namespace) -> int:
    from fada.train_teacher import train_teacher

    config = training_config(args.config, args.config_overrides, args.sd15_dir)
    result = train_teacher(args.data_dir, args.view, config, args.steps, args.out_dir, device=args.device,
                           progress=not args.quiet)
    print(f"teacher: {result.steps} steps (resumed from {result.resumed_from}), last loss {result.final_loss:.4f}")
    print(f"checkpoint: {result.checkpoint}  (loss log: {Path(args.out_dir) / 'train_log.jsonl'}, "
          f"TensorBoard: {Path(args.out_dir) / 'tensorboard'})")
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from fada.distill import DistillConfig, distill_student
    from filters.config_fields import allowed_paths, apply_overrides

    overrides = apply_overrides({}, args.overrides, allowed=allowed_paths(DistillConfig))
    overrides.update({"loss_mode": args.loss, "cfg_variant": args.cfg})
    result = distill_student(args.data_dir, args.view, args.teacher, args.out_dir, config=overrides, steps=args.steps,
                             device=args.device, init_student=args.init_student, progress=not args.quiet)
    print(f"student: {result.steps} steps (resumed from {result.resumed_from}), last loss {result.final_loss:.4f}")
    print(f"checkpoint: {result.checkpoint}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    import torch

    from fada.pipeline import FadaPipeline

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    pipeline = FadaPipeline.from_checkpoint(args.ckpt, args.mode, device=args.device, dtype=dtype,
                                            tiny_decoder=args.tiny_decoder, output_size=args.size,
                                            num_inference_steps=args.steps, guidance_reference=args.guidance_reference,
                                            guidance_audio=args.guidance_audio, compile=args.compile)
    result = pipeline.generate(args.image, args.audio, args.out, seed=args.seed, progress=not args.quiet)
    print(f"wrote {result.path}: {result.frames} frames in {result.clips} clips, NFE-D {result.nfe_per_clip:g} per clip "
          f"({result.nfe_total} in all), {result.seconds:.1f} s = {result.seconds_per_video_second:.2f} s per video second")
    return 0


def cmd_train_tiny_decoder(args: argparse.Namespace) -> int:
    from fada.tiny_decoder import TinyDecoderTrainConfig, train_tiny_decoder

    config = TinyDecoderTrainConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr, width=args.width,
                                    frame_size=args.size, mixed_precision=args.precision, num_workers=args.workers)
    summary = train_tiny_decoder(args.data, args.view, args.vae, args.out, config, eval_view=args.eval_view,
                                 device=args.device, progress=not args.quiet)
    held_out = summary["held_out"]
    quality = (f"held-out '{summary['eval_view']}' PSNR vs the VAE decoder {held_out['psnr_db']:.1f} dB "
               f"(untrained {summary['held_out_untrained']['psnr_db']:.1f} dB)" if held_out else "no held-out view")
    print(f"tiny decoder: {config.steps} steps, decoder loss {summary['first_loss_decoder']:.4f} → "
          f"{summary['last_loss_decoder']:.4f}; {quality}")
    print(f"saved {args.out}  (use: fada generate --tiny-decoder {args.out} …)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fada.evaluate import evaluate, format_table, pair_runs

    report = evaluate(args.data_dir, pair_runs(args.ckpt, args.mode), args.out_dir, view=args.view,
                      fid_weights=args.fid_weights, fvd_weights=args.fvd_weights, syncnet_weights=args.syncnet_weights,
                      skip=tuple(args.skip), max_clips=args.max_clips, max_frames=args.max_frames, seed=args.seed,
                      device=args.device)
    print(format_table(report))
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from fada.ablation import AblationSettings, run_ablation

    counts = {"seeds": args.seeds, "teacher_steps": args.teacher_steps, "max_student_steps": args.max_student_steps,
              "chunk_steps": args.chunk_steps}
    if any(value is not None and value < 1 for value in counts.values()):
        raise UserError("--seeds, --teacher-steps, --max-student-steps and --chunk-steps must be at least 1")
    settings = AblationSettings(data_dir=args.data, teacher_view=args.teacher_view, student_view=args.student_view,
                                **{key: value for key, value in counts.items() if value is not None})
    summary = run_ablation(args.out, settings, device=args.device, num_threads=args.threads, doc_path=args.doc,
                           progress=not args.quiet)
    print(f"{len(summary['rows'])} rows, {len(summary['claims'])} verdicts in {summary['timings_s']['total'] / 60:.1f} min"
          + (f"; written to {args.doc}" if args.doc else ""))
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from shards.splits import ensure_test_split
    from shards.views import format_view_summary

    view, outcome = ensure_test_split(args.data_dir, args.name, fraction=args.fraction, seed=args.seed, wait=args.wait)
    if view is None:
        why = "has no catalog: run `fada ingest` first" if outcome == "no_catalog" else "has fewer than 2 sources: nothing can be held out"
        raise UserError(f"{args.data_dir} {why}")
    print(format_view_summary(view) + ("\n(this split already existed; kept as it is)" if outcome == "kept" else ""))
    print(json.dumps({"held_out_sources": view["split"]["sources"]}))
    return 0


def add_model_commands(sub) -> None:
    """The model subcommands; train-teacher, distill, generate, evaluate and train-syncnet take their options from
    the parameters of the flow that does the same (`flows.cli_flow_options.options_from_flow`)."""

    def quiet(p: argparse.ArgumentParser) -> None:
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    def device(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default=None, help="cuda, cuda:1, cpu … (default: cuda when available)")

    p = sub.add_parser("train-teacher", help="train the dual-UNet teacher on a view (resumes from --out)")
    options_from_flow(p, "train_teacher_flow",
                      {"data_dir": "--data", "out_dir": "--out", "config_overrides": "--set", "sd15_dir": "--sd15"},
                      lambda _: {"--set": {"metavar": "SECTION.KEY=VALUE", "help": "override one configuration value"}})
    quiet(p)
    p.set_defaults(func=cmd_train_teacher, user_errors=MODEL_USER_ERRORS)

    p = sub.add_parser("distill", help="distil a 6-step student from a teacher (PeRFlow, mixed supervision, CFG tokens)")
    options_from_flow(p, "distill_student_flow", {"data_dir": "--data", "out_dir": "--out", "overrides": "--set"},
                      lambda _: {"--set": {"help": "override a distillation setting"},
                                 "--init-student": {"help": "start from this earlier student of the same teacher "
                                                            "(retraining on new data)"}})
    quiet(p)
    p.set_defaults(func=cmd_distill, user_errors=MODEL_USER_ERRORS)

    p = sub.add_parser("generate", help="portrait + audio → talking-head mp4 with the audio muxed in")
    options_from_flow(p, "generate_flow", {"guidance_reference": "--s-r", "guidance_audio": "--s-a"})
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="inference precision (bf16 on GPUs)")
    p.add_argument("--tiny-decoder", default=None, metavar="DIR",
                   help="local AutoencoderTiny (TAESD) directory: decode 10x faster than the SD VAE")
    p.add_argument("--compile", action="store_true", help="torch.compile the denoising net (GPU; ~75 s once)")
    quiet(p)
    p.set_defaults(func=cmd_generate, user_errors=MODEL_USER_ERRORS)

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
    device(p)
    quiet(p)
    p.set_defaults(func=cmd_train_tiny_decoder, user_errors=MODEL_USER_ERRORS)

    p = sub.add_parser("evaluate", help="the paper's Table 1 columns for checkpoints on the held-out test view")

    def evaluate_options(flows_module) -> dict:  # --mode as fada.evaluate.pair_runs reads it
        mode = flows_module.EvaluationRun.model_fields["mode"]
        return {"--ckpt": {"help": "checkpoint (repeat to compare several)"},
                "--mode": {"type": comma_separated(mode.annotation), "choices": None, "metavar": "MODE[,MODE…]",
                           "help": f"{mode.description}: one for all checkpoints, one per --ckpt, or several "
                                   f"(comma-separated) for one checkpoint (default: {mode.default.value})"}}

    options_from_flow(p, "evaluate_flow", {"data_dir": "--data", "out_dir": "--out"}, evaluate_options)
    p.set_defaults(func=cmd_evaluate, user_errors=MODEL_USER_ERRORS)

    p = sub.add_parser("ablate", help="the paper's Tables 2–4 as an experiment: teacher on strict, students on "
                                      "lenient, seeds, verdicts → docs/ablation.md")
    p.add_argument("--out", default="ablation-runs", help="working directory; finished work in it is reused")
    p.add_argument("--data", default=None, help="data directory to train on (default: generated mixed-quality "
                   "speakers); scoring is always on held-out generator speakers")
    p.add_argument("--teacher-view", default="strict")
    p.add_argument("--student-view", default="lenient")
    p.add_argument("--seeds", type=int, default=None, help="student seeds (default 3; the teacher is trained once)")
    p.add_argument("--teacher-steps", type=int, default=None, help="default: fada.ablation.TEACHER_STEPS")
    p.add_argument("--max-student-steps", type=int, default=None,
                   help="cap of a student whose loss has not gone flat (default: fada.ablation.MAX_STUDENT_STEPS)")
    p.add_argument("--chunk-steps", type=int, default=None,
                   help="steps between flatness checks (default: fada.ablation.CHUNK_STEPS)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1 on a CPU)")
    p.add_argument("--doc", default="docs/ablation.md", help="markdown to write (its loss-curve PNG beside it)")
    device(p)
    quiet(p)
    p.set_defaults(func=cmd_ablate, user_errors=MODEL_USER_ERRORS)

    p = sub.add_parser("split", help="write the held-out test view (whole sources, chosen by hash)")
    p.add_argument("data_dir")
    p.add_argument("--name", default="test")
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    add_wait_option(p)
    p.set_defaults(func=cmd_split)

    add_syncnet_command(sub)
