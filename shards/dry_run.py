"""Dry run of a re-filter: what ``shards.views.refilter`` would select, without writing a view — the summary,
clips passing / failing each dimension, and score histograms with the thresholds marked (`shards.view_plots`)."""

from __future__ import annotations

import os

from filters.profiles import Profile
from shards.view_plots import score_histograms
from shards.views import KeysByShard, ViewError, catalog_snapshot, format_view_summary, load_split, profile_record, scan_selection, snapshot_files


def dry_run(data_dir: str | os.PathLike, profile: Profile, out_dir: str | os.PathLike, *, exclude_split: str | None = None) -> dict:
    """What ``refilter`` would select, without writing a view: the summary, clips passing / failing each
    dimension, and the score histograms with the thresholds marked, written to ``out_dir`` (PNG files)."""

    snapshot = catalog_snapshot(data_dir)
    if not snapshot["files"]:
        raise ViewError(f"no catalog in {data_dir}: run `fada ingest` first")
    excluded = None if exclude_split is None else {"view": exclude_split, **load_split(data_dir, exclude_split)}
    scan = scan_selection(data_dir, profile, snapshot_files(data_dir, snapshot), excluded)
    preview = {"name": f"dry run of {profile.name}", "profile": profile_record(profile), "catalog": snapshot,
               "shards": KeysByShard(scan["kept"]), "summary": scan["summary"], "excluded_split": excluded}
    plots = score_histograms(data_dir, preview, out_dir)
    return {**preview, "per_dimension": scan["per_dimension"], "plots": [str(p) for p in plots], "plots_dir": str(out_dir)}


def format_dry_run(report: dict) -> str:
    """The dry run's table: clips per dimension, then per source tag and reason as in a view's summary."""
    summary = report["summary"]
    lines = [f"dry run of profile {report['profile']['name']} (no view written): would keep {summary['kept']} of "
             f"{summary['clips']} clips, {summary['kept_hours'] * 3600:.1f} s ({summary['kept_hours']:.4f} h) in {len(report['shards'])} shard(s)",
             f"  {'dimension':<22}{'passed':>8}{'failed':>10}   (status-ok clips, each dimension on its own)"]
    for dimension, tally in report["per_dimension"].items():
        lines.append(f"  {dimension:<22}{tally['passed']:>8}{tally['failed']:>10}")
    lines += format_view_summary(report).splitlines()[1:]
    lines.append(f"score histograms with the thresholds marked: {report['plots_dir']} ({len(report['plots'])} PNG)")
    return "\n".join(lines)
