"""The ``fada`` command. Subcommands mirror the flows and call the same library functions (model commands:
`flows.cli_model`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.cli_common import CommandParser, UserError, add_wait_option, run_command
from flows.cli_model import add_model_commands


def load_ingest_config(config_path: str | None, overrides: list[str]):
    from filters.config_fields import allowed_paths, apply_overrides
    from shards.ingest.config import IngestConfig
    from shards.sources import read_yaml

    values = {}
    if config_path:
        values = read_yaml(config_path) or {}
        if not isinstance(values, dict):
            raise UserError(f"{config_path}: expected a mapping of sections, got {type(values).__name__}")
    allowed = allowed_paths(IngestConfig)
    allowed = {**allowed.pop("extract"), **allowed}  # IngestConfig.from_dict takes the extract sections at the top
    try:
        return IngestConfig.from_dict(apply_overrides(values, overrides, allowed=allowed))
    except (TypeError, ValueError) as exc:
        raise UserError(f"invalid ingest configuration{f' in {config_path}' if config_path else ''}: {exc}") from exc


def format_report(report) -> str:
    """The summary table users read after a run: sources by outcome, clips kept and dropped by reason, hours."""
    lines = [f"ingest into {report.data_dir}  ({report.seconds:.1f}s, {report.frames_read} frames read)", ""]
    lines.append(f"{'sources':<28}{'count':>8}")
    for outcome, count in sorted(report.outcome_counts().items()):
        lines.append(f"  {outcome:<26}{count:>8}")
    for row in report.sources:
        if row["outcome"] in ("rejected", "failed"):
            lines.append(f"    {row['outcome']}: {row['reason']:<18} {Path(row['uri']).name}  {row.get('detail', '')}")
    lines += ["", f"{'clips':<28}{'count':>8}", f"  {'kept':<26}{report.clips_ok:>8}"]
    for reason, count in sorted(report.clips_rejected.items()):
        lines.append(f"  {'rejected: ' + reason:<26}{count:>8}")
    lines += ["", f"hours kept: {report.hours_ok:.4f} ({report.hours_ok * 3600:.1f} s)"]
    lines.append(f"shards written: {len(report.shards)} ({', '.join(report.shards) or '-'})")
    if report.profiles:
        lines += ["", f"{'quality profiles (preview)':<28}{'clips':>8}{'seconds':>10}  rejected by dimension"]
        for name, tally in report.profiles.items():
            failed = ", ".join(f"{dim} {n}" for dim, n in sorted(tally["failed"].items())) or "-"
            lines.append(f"  {name:<26}{tally['kept']:>8}{tally['hours'] * 3600:>10.1f}  {failed}")
    return "\n".join(lines)


def cmd_ingest(args: argparse.Namespace) -> int:
    from flows.ingest import ingest
    from shards.sources import ManifestError

    config = load_ingest_config(args.config, args.set)
    try:
        report = ingest(args.manifest, args.out, config, workers=args.workers, progress=not args.quiet, wait=args.wait)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0


# What `fada demo --out DIR` writes, relative to DIR (prefect.yaml's form defaults point here).
DEMO_LAYOUT = {"manifest": "sources/manifest.yaml", "data": "data", "teacher": "teacher", "portrait": "portrait.png",
               "speech": "speech.wav", "student": "student"}


def cmd_demo(args: argparse.Namespace) -> int:
    from filters.synthetic import demo_sources
    from flows.ingest import ingest

    out = Path(args.out)
    manifest, data = out / DEMO_LAYOUT["manifest"], out / DEMO_LAYOUT["data"]
    config = load_ingest_config(args.config, args.set)  # a bad --config/--set: exit 2 before any work
    print(f"generating synthetic speakers in {manifest.parent} …")
    demo_sources(manifest.parent)
    report = ingest(manifest, data, config, workers=args.workers, progress=not args.quiet, wait=args.wait)
    print(format_report(report))
    from filters.profiles import load_profile
    from shards.splits import write_test_view
    from shards.view_aliases import refilter_aliased
    from shards.views import format_view_summary

    split, _ = write_test_view(data, "test", wait=args.wait)
    print("\n" + format_view_summary(split))
    for name in ("strict", "lenient"):  # as dataset-refresh: an immutable view per snapshot, the alias moved to it
        view, _, _ = refilter_aliased(data, load_profile(name), alias=name, exclude_split="test", wait=args.wait)
        print("\n" + format_view_summary(view) + f"\n  alias {name!r} → {view['name']}")
    if args.teacher_steps > 0:
        demo_teacher(out, args.teacher_steps, args.student_steps, quiet=args.quiet)
    return 0


def demo_teacher(out: Path, steps: int, student_steps: int, *, quiet: bool) -> None:
    """Train a tiny teacher and distil a fast student on the demo's views, then generate the same speech with
    both from the astronaut portrait (`fada.demo`)."""
    from PIL import Image
    from skimage import data as sample_images

    from fada.demo import demo_models
    from filters.synthetic import SpeakerSpec, render_sidecar_audio

    portrait, speech = out / DEMO_LAYOUT["portrait"], out / DEMO_LAYOUT["speech"]
    Image.fromarray(sample_images.astronaut()).save(portrait)
    render_sidecar_audio(SpeakerSpec(seed=7, duration_s=2.0), speech, rate=44100, channels=2)
    demo_models(out / DEMO_LAYOUT["data"], out, teacher_dir=out / DEMO_LAYOUT["teacher"],
                student_dir=out / DEMO_LAYOUT["student"], teacher_steps=steps, student_steps=student_steps,
                portrait=portrait, speech=speech, progress=not quiet)


def cmd_refilter(args: argparse.Namespace) -> int:
    from filters.config_fields import parse_override
    from filters.profiles import ProfileError, load_profile
    from shards.view_aliases import refilter_aliased
    from shards.views import ViewError, format_view_summary

    try:
        profile = load_profile(args.profile, dict(parse_override(pair) for pair in args.set))
        from shards.views import view_path

        exclude = None if args.include_test_split or not view_path(args.data_dir, args.test_split).exists() else args.test_split
        if args.dry_run:
            return _dry_run(args, profile, exclude)
        view, created, alias = refilter_aliased(args.data_dir, profile, name=args.name, alias=args.alias,
                                                reshard_below=args.reshard_below, exclude_split=exclude, wait=args.wait)
    except (ProfileError, ViewError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_view_summary(view) + ("" if created else "\n(identical view already existed; nothing written)")
          + ("" if alias is None else f"\nalias {alias['alias']!r} → {alias['view']}"))
    return 0


def _dry_run(args: argparse.Namespace, profile, exclude: str | None) -> int:
    from shards.view_aliases import default_view_name
    from shards.dry_run import dry_run, format_dry_run
    from shards.views import view_path

    name = args.name or default_view_name(args.data_dir, profile)
    plots = Path(args.plots) if args.plots else Path(args.data_dir) / "dry-runs" / view_path(args.data_dir, name).stem
    print(format_dry_run(dry_run(args.data_dir, profile, plots, exclude_split=exclude)))
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    from shards.lineage import code_version
    from shards.rescore import RescoreError, format_rescore, rescore

    config = load_ingest_config(args.config, args.set)
    try:
        record = rescore(args.data_dir, args.scorer, config.scoring, code_version=code_version(), wait=args.wait)
    except RescoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_rescore(record))
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    import json

    from shards.lineage import lookup

    try:
        answer = lookup(args.data_dir, args.query)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(answer, indent=1))
    return 0


def _existing_data_dir(path: str) -> str:
    if not Path(path).is_dir():
        raise UserError(f"no data directory {path}")
    return path


def cmd_verify(args: argparse.Namespace) -> int:
    from shards.integrity import verify

    _existing_data_dir(args.data_dir)
    problems = verify(args.data_dir)
    for problem in problems:
        print(problem)
    print(f"{args.data_dir}: {'consistent' if not problems else f'{len(problems)} problem(s); `fada repair {args.data_dir}` fixes what can be rebuilt'}")
    return 1 if problems else 0


def cmd_repair(args: argparse.Namespace) -> int:
    from shards.integrity import repair

    actions, left = repair(_existing_data_dir(args.data_dir), wait=args.wait)
    for action in actions:
        print(action)
    for problem in left:
        print(f"not repaired: {problem}")
    print(f"{args.data_dir}: {len(actions)} repair(s); {'consistent now' if not left else f'{len(left)} problem(s) left'}")
    return 1 if left else 0


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="fada", description="FADA data pipeline and distillation")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)

    def add_run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="ingest configuration YAML (sections: probe, clip, scenes, track, crop, encode, chunk_s)")
        p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override one configuration value")
        p.add_argument("--workers", type=int, default=None, help="Ray actors (default: all CPUs of the cluster; 0 = no Ray)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        add_wait_option(p)

    ingest_p = sub.add_parser("ingest", help="probe, cut, track and crop the sources of a manifest into clips")
    ingest_p.add_argument("manifest", help="sources manifest (.yaml, .csv or .parquet)")
    ingest_p.add_argument("--out", required=True, help="data directory")
    add_run_options(ingest_p)
    ingest_p.set_defaults(func=cmd_ingest)

    refilter_p = sub.add_parser("refilter", help="apply a threshold profile to the catalog and write a named view (no video decoded)")
    refilter_p.add_argument("data_dir")
    refilter_p.add_argument("--profile", default="strict", help="strict, lenient or a profile .yaml file")
    refilter_p.add_argument("--set", action="append", default=[], metavar="DIMENSION.COLUMN.min|max=VALUE", help="override one bound")
    refilter_p.add_argument("--name", help="view name (views are immutable; default: <profile>-<catalog digest>[-<thresholds digest>])")
    refilter_p.add_argument("--alias", help="also point this stable name at the view (e.g. strict: training on 'strict' then reads it)")
    refilter_p.add_argument("--reshard-below", type=float, default=None, metavar="SHARE",
                            help="copy the kept samples of shards the view keeps less than SHARE of (e.g. 0.5) into new dense shards")
    refilter_p.add_argument("--test-split", default="test", metavar="NAME",
                            help="held-out split whose sources training views exclude, when it exists (default: test)")
    refilter_p.add_argument("--include-test-split", action="store_true", help="do not exclude the held-out split")
    refilter_p.add_argument("--dry-run", action="store_true",
                            help="write no view: print kept/rejected per dimension, reason and source tag, and plot the score histograms")
    refilter_p.add_argument("--plots", metavar="DIR", help="with --dry-run: folder for the histograms (default DATA_DIR/dry-runs/NAME)")
    add_wait_option(refilter_p)
    refilter_p.set_defaults(func=cmd_refilter)

    rescore_p = sub.add_parser("rescore", help="recompute one scorer's catalog columns from the shards (no source video read)")
    rescore_p.add_argument("data_dir")
    rescore_p.add_argument("--scorer", required=True, help="source_prior, iqa, iqa_learned, sync, background, movement or face_audio")
    rescore_p.add_argument("--config", help="ingest configuration YAML; only its scoring section is used")
    rescore_p.add_argument("--set", action="append", default=[], metavar="scoring.KEY=VALUE", help="override one scoring setting")
    add_wait_option(rescore_p)
    rescore_p.set_defaults(func=cmd_rescore)


    verify_p = sub.add_parser("verify", help="check shards, lineage, catalog, ledger and views against each other (exit 1 naming each problem)")
    verify_p.add_argument("data_dir")
    verify_p.set_defaults(func=cmd_verify)

    repair_p = sub.add_parser("repair", help="rebuild the catalog and lineage from the shards, remove leftovers of killed writes")
    repair_p.add_argument("data_dir")
    add_wait_option(repair_p)
    repair_p.set_defaults(func=cmd_repair)

    lineage_p = sub.add_parser("lineage", help="what produced a shard, or which shards and clips came from a source or key")
    lineage_p.add_argument("data_dir")
    lineage_p.add_argument("query", help="shard name or path, source sha256 (or a prefix of >= 8 chars), source uri, or clip key")
    lineage_p.set_defaults(func=cmd_lineage)

    demo_p = sub.add_parser("demo", help="generate synthetic speakers and ingest them")
    demo_p.add_argument("--out", default="demo-data", help="demo directory")
    demo_p.add_argument("--teacher-steps", type=int, default=300, help="tiny-teacher training steps (0: data only)")
    demo_p.add_argument("--student-steps", type=int, default=150, help="fast-student distillation steps")
    add_run_options(demo_p)
    demo_p.set_defaults(func=cmd_demo)

    add_model_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UserError as exc:  # a command line argparse refuses (CommandParser.error)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run_command(args.func, args, also=getattr(args, "user_errors", ()))


if __name__ == "__main__":
    sys.exit(main())
