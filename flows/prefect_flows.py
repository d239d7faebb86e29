"""Prefect flows: thin orchestration of the library — every step is a call into filters/ or shards/.

``dataset-refresh`` ingests the sources of a manifest that are new by content hash (Ray inside the task),
publishes shards, catalog and lineage (each lineage sidecar carries the flow run id), writes or keeps the
held-out test split (view ``test``: whole sources, `shards.splits`), then writes the default views for the
new catalog snapshot, which leave the test split's sources out. ``refilter`` writes one named view (also
without the test split's sources when the split exists). Both publish artifacts: a table (kept/rejected,
seconds per source tag and per reason) and histograms of each bounded score with the thresholds marked.
Shards and views are recorded as Prefect assets (source videos → shard → view; `flows.flow_artifacts`).
Parameters are typed so the Prefect UI renders a form. The model flows are in `flows.training_flows`.

Stable names: dataset-refresh points the aliases ``strict`` and ``lenient`` (`shards.view_aliases`) at the
views it just wrote, so the training forms' default view names always mean the newest selection; a training
run records the immutable view the alias pointed at.

Retries: the I/O tasks (views, split, artifacts, ingest — a rerun skips the sources the ledger already
holds, so a retry resumes) retry twice on transient I/O failures only; user errors (a missing catalog or
path, a taken view name, a profile or configuration typo) fail at once (`flows.retry_policy`). A source that fails is recorded in the ledger and in the ``dataset-refresh-added`` table,
and gets a failed task run of its own (``source-…``); the flow still completes.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.flow_artifacts import markdown_image, record_shards, record_view, slug
from flows.retry_policy import retry_transient

TEST_SPLIT = "test"
GROWN_EVENT = "fada.dataset.grown"  # prefect.yaml's distill-student trigger listens for it


def flow_run_id() -> str | None:
    """The flow run this task runs under: the identity the library records in lineage (it never asks Prefect)."""
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


class ProfileName(str, Enum):
    strict = "strict"
    lenient = "lenient"


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient, task_run_name="refilter-{profile}")
def write_view(data_dir: str, profile: str, name: str | None, overrides: dict[str, float], reshard_below: float | None,
               exclude_split: str | None = None, alias: str | None = None) -> dict:
    """Write view ``name`` (default ``<profile>-<catalog digest>``) and point ``alias`` at it."""
    from filters.profiles import load_profile
    from shards.view_aliases import refilter_aliased

    view, created, alias_doc = refilter_aliased(data_dir, load_profile(profile, overrides), name=name, alias=alias,
                                                reshard_below=reshard_below, exclude_split=exclude_split,
                                                flow_run_id=flow_run_id())
    excluded = f", without the sources of split {exclude_split!r}" if exclude_split else ""
    moved = f"; alias {alias_doc['alias']!r} → {alias_doc['view']}" if alias_doc else ""
    get_run_logger().info("view %s %s: kept %d of %d clips%s%s", view["name"], "written" if created else "unchanged",
                          view["summary"]["kept"], view["summary"]["clips"], excluded, moved)
    return view


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient, task_run_name="split-{name}")
def write_test_split(data_dir: str, name: str, fraction: float, seed: int) -> dict | None:
    """The held-out test split by `shards.splits.ensure_test_split` (the policy `fada split` shares). None when
    there is nothing to hold out yet (no catalog, or fewer than two sources)."""
    from shards.splits import ensure_test_split

    view, outcome = ensure_test_split(data_dir, name, fraction, seed)
    if view is None:
        get_run_logger().warning("no test split yet (%s)", outcome.replace("_", " "))
    else:
        get_run_logger().info("test split %s %s: %d clip(s) of %d held-out source(s)", name, outcome,
                              view["summary"]["kept"], len(view["split"]["sources"]))
    return view


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient, task_run_name="artifacts-{view[name]}")
def publish_split_artifact(view: dict) -> None:
    summary = view["summary"]
    rows = [{"held_out_source": source} for source in view["split"]["sources"]]
    create_table_artifact(key="split-" + slug(view["name"]), table=rows,
                          description=f"Test split {view['name']}: {summary['kept']} clips of {len(rows)} held-out source(s) "
                                      f"(fraction {view['split']['fraction']}, seed {view['split']['seed']})")


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient, task_run_name="artifacts-{view[name]}")
def publish_view_artifacts(data_dir: str, view: dict) -> list[str]:
    from shards.view_plots import score_histograms

    if "profile" not in view:  # a test split selects sources, not scores: no histograms
        publish_split_artifact.fn(view)
        return []

    summary = view["summary"]
    artifact_key = "view-" + slug(view["name"])
    rows = [{"group": f"tag:{tag}", "kept": r["kept"], "kept_seconds": round(r["kept_hours"] * 3600, 1), "rejected": r["rejected"]} for tag, r in sorted(summary["per_source_tag"].items())]
    rows += [{"group": f"rejected:{reason}", "kept": 0, "kept_seconds": 0.0, "rejected": r["clips"]} for reason, r in sorted(summary["per_reason"].items())]
    create_table_artifact(key=artifact_key, table=rows, description=f"View {view['name']}: kept {summary['kept']} of {summary['clips']} clips ({summary['kept_hours']:.3f} h)")
    images = score_histograms(data_dir, view, Path(data_dir) / "views" / f"{view['name']}.plots")
    markdown = [f"# Score histograms for view `{view['name']}` (profile {view['profile']['name']})", ""]
    for image in images:
        markdown += markdown_image(image, image.stem)
    create_markdown_artifact(key=f"{artifact_key}-histograms", markdown="\n".join(markdown), description=f"histograms for view {view['name']}")
    return [str(p) for p in images]


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient, task_run_name="artifacts-aliases")
def publish_aliases_artifact(data_dir: str) -> list[dict]:
    """A table of the data directory's aliases and the views they point at (the names a training form takes)."""
    from shards.atomic import read_json
    from shards.view_aliases import list_aliases
    from shards.views import view_path

    rows = []
    for alias, name in list_aliases(data_dir).items():
        summary = read_json(view_path(data_dir, name))["summary"]
        rows.append({"alias": alias, "view": name, "kept": summary["kept"], "kept_hours": round(summary["kept_hours"], 4)})
    create_table_artifact(key="view-aliases", table=rows or [{"alias": "(none yet)"}],
                          description=f"Aliases in {data_dir}: the stable view names training forms take")
    return rows


@flow(name="refilter", log_prints=True)
def refilter_flow(
    data_dir: str,
    name: str | None = None,
    profile: ProfileName = ProfileName.strict,
    profile_file: str | None = None,
    overrides: dict[str, float] | None = None,
    alias: str | None = None,
    reshard_below: float | None = None,
    test_split: str | None = TEST_SPLIT,
    dry_run: bool = False,
) -> str:
    """Apply a threshold profile to the catalog and write an immutable view (no video decoded).

    Args:
        data_dir: data directory (catalog/, shards/, views/)
        name: view name (views are immutable: a new selection needs a new name); empty: <profile>-<catalog digest>[-<thresholds digest>]
        profile: shipped threshold profile (strict: teacher, lenient: student)
        profile_file: a custom profile YAML on the worker's storage; used instead of `profile` when given
        overrides: bounds to override, e.g. {"image_quality.iqa.min": 0.9}
        alias: also point this stable name at the view (e.g. strict); the run's "view-aliases" artifact lists them all
        reshard_below: copy the kept samples of shards the view keeps less than this share of into new dense shards
        test_split: held-out split whose sources the view leaves out, when that split exists (null: keep them)
        dry_run: write no view: publish kept/rejected per dimension, reason and source tag, and the score
            histograms with the thresholds marked (files in DATA_DIR/dry-runs/NAME); returns that folder
    """
    from shards.views import view_path

    exclude = test_split if test_split and view_path(data_dir, test_split).exists() else None
    chosen = profile_file or ProfileName(profile).value
    if dry_run:
        return preview_view(data_dir, chosen, name, overrides or {}, exclude)
    view = write_view(data_dir, chosen, name, overrides or {}, reshard_below, exclude, alias)
    publish_view_artifacts(data_dir, view)
    publish_aliases_artifact(data_dir)
    record_view(data_dir, view)
    return str(view_path(data_dir, view["name"]))


@task(task_run_name="dry-run-{profile}", retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient)
def preview_view(data_dir: str, profile: str, name: str | None, overrides: dict[str, float], exclude_split: str | None) -> str:
    """The refilter dry run (``shards.dry_run.dry_run``): counts as a table artifact, histograms as markdown."""
    from filters.profiles import load_profile
    from shards.dry_run import dry_run, format_dry_run
    from shards.view_aliases import default_view_name
    from shards.views import view_path

    chosen = load_profile(profile, overrides)
    name = name or default_view_name(data_dir, chosen)
    folder = Path(data_dir) / "dry-runs" / view_path(data_dir, name).stem
    report = dry_run(data_dir, chosen, folder, exclude_split=exclude_split)
    get_run_logger().info("%s", format_dry_run(report))
    summary = report["summary"]
    rows = [{"group": f"dimension:{d}", "passed": t["passed"], "failed": t["failed"]} for d, t in report["per_dimension"].items()]
    rows += [{"group": f"tag:{tag}", "passed": r["kept"], "failed": r["rejected"]} for tag, r in sorted(summary["per_source_tag"].items())]
    rows += [{"group": f"rejected:{reason}", "passed": 0, "failed": r["clips"]} for reason, r in sorted(summary["per_reason"].items())]
    key = "dry-run-" + slug(name)
    create_table_artifact(key=key, table=rows, description=f"Dry run of {profile} (no view written): would keep {summary['kept']} of {summary['clips']} clips")
    markdown = [f"# Dry run of profile `{profile}`: score histograms, thresholds marked", ""]
    for image in map(Path, report["plots"]):
        markdown += markdown_image(image, image.stem)
    create_markdown_artifact(key=f"{key}-histograms", markdown="\n".join(markdown), description=f"dry-run histograms for {name}")
    return str(folder)


@task(task_run_name="rescore-{scorer}", retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient)
def rescore_clips(data_dir: str, scorer: str, scoring: dict) -> dict:
    from shards.ingest.config import IngestConfig
    from shards.lineage import code_version
    from shards.rescore import format_rescore, rescore

    record = rescore(data_dir, scorer, IngestConfig.from_dict({"scoring": scoring}).scoring, code_version=code_version(),
                     flow_run_id=flow_run_id())
    get_run_logger().info("%s", format_rescore(record))
    return record


@flow(name="rescore", log_prints=True)
def rescore_flow(data_dir: str, scorer: str, scoring: dict | None = None) -> dict:
    """Recompute one scorer's catalog columns from the clips in the shards (the source videos are not read)
    and append them as a new catalog part; views made earlier keep their catalog snapshot.

    Args:
        data_dir: data directory (catalog/, shards/)
        scorer: source_prior, iqa, iqa_learned, sync, background, movement or face_audio
        scoring: the ingest configuration's scoring section to use, e.g. {"syncnet_weights": "/models/syncnet"}
    """
    record = rescore_clips(data_dir, scorer, scoring or {})
    create_table_artifact(key="rescore-" + scorer.replace("_", "-"), table=[
        {k: record[k] for k in ("run_id", "scorer", "scorer_version", "clips", "frames", "seconds", "part")}
        | {"not_scored": len(record["score_errors"]), "unreadable": len(record["skipped"]["keys"])}],
        description=f"rescore of {record['scorer']}: catalog part {record['part']}, lineage/rescore-{record['run_id']}.json")
    return {k: record[k] for k in ("run_id", "scorer", "scorer_version", "clips", "part")}


@task(task_run_name="ingest", retries=2, retry_delay_seconds=30, retry_condition_fn=retry_transient)
def ingest_new_sources(manifest: str, data_dir: str, workers: int | None) -> dict:
    from flows.ingest import ingest

    return ingest(manifest, data_dir, workers=workers, progress=False, flow_run_id=flow_run_id()).to_dict()


@task(task_run_name="source-{row[outcome]}-{row[uri_name]}")
def source_outcome(row: dict) -> dict:
    """A failed source fails this task run (visible in the UI), not the flow; a rejected one completes."""
    if row["outcome"] == "failed":
        raise RuntimeError(f"source {row['uri']} failed ({row.get('reason')}): {row.get('detail', '')}; it is retried next refresh")
    return row


@flow(name="dataset-refresh", log_prints=True)
def dataset_refresh_flow(
    manifest: str,
    data_dir: str,
    workers: int | None = None,
    views: list[ProfileName] | None = None,
    test_split: str | None = TEST_SPLIT,
    test_fraction: float = 0.1,
    retrain_min_hours: float | None = 1.0,
) -> dict:
    """Ingest what is new in the manifest, publish shards/catalog/lineage, write or keep the held-out test
    split, and write default views named ``<profile>-<catalog snapshot digest[:10]>`` (views are immutable,
    so each snapshot gets its own) that leave out the test split's sources; the aliases ``strict`` and
    ``lenient`` then point at them.

    Args:
        manifest: manifest of source videos (.yaml, .csv or .parquet)
        data_dir: data directory to ingest into
        workers: Ray actors (default: the cluster's CPUs); 0 runs in the flow's process
        views: profiles to write default views for (default: strict and lenient)
        test_split: name of the held-out test split view (null: no split, views keep every source)
        test_fraction: share of sources the test split holds out (whole sources, chosen by hash)
        retrain_min_hours: when this run adds at least these hours of clips the lenient profile keeps, emit fada.dataset.grown, which retrains the student on the new lenient view (prefect.yaml's distill-student trigger); null: never
    """
    report = ingest_new_sources(manifest, data_dir, workers)
    added = [row for row in report["sources"] if row["outcome"] != "skipped"]
    create_table_artifact(
        key="dataset-refresh-added",
        table=[{k: row.get(k) for k in ("uri", "source_id", "outcome", "reason", "clips")} for row in added] or [{"uri": "(nothing new)"}],
        description=f"{len(added)} new source(s); {report['clips_ok']} clips kept; {len(report['shards'])} shard(s) written",
    )
    for row in added:
        if row["outcome"] != "ingested":
            source_outcome({**row, "uri_name": Path(str(row["uri"])).name}, return_state=True)
    record_shards(data_dir, report["shards"])
    split = write_test_split(data_dir, test_split, test_fraction, 0) if test_split else None
    if split is not None:
        publish_split_artifact(split)
        record_view(data_dir, split)
    from shards.views import view_path

    written = {}
    for profile in views if views is not None else [ProfileName.strict, ProfileName.lenient]:
        profile = ProfileName(profile).value
        alias = profile
        if view_path(data_dir, profile).is_file():  # a data dir from before aliases holds an immutable view of that name
            get_run_logger().warning("%s is an immutable view here, so it stays as it is; the refreshed %s view is "
                                     "named by its digest only", profile, profile)
            alias = None
        view = write_view(data_dir, profile, None, {}, None, test_split if split is not None else None, alias=alias)
        publish_view_artifacts(data_dir, view)
        record_view(data_dir, view)
        written[profile] = view["name"]
    publish_aliases_artifact(data_dir)
    added_hours = report["profiles"].get(ProfileName.lenient.value, {}).get("hours", 0.0)
    announce_growth(data_dir, added_hours, written, retrain_min_hours)
    return {"added_sources": len(added), "clips_ok": report["clips_ok"], "shards": report["shards"], "views": written,
            "test_split": split["name"] if split is not None else None, "added_lenient_hours": added_hours}


def announce_growth(data_dir: str, added_hours: float, views: dict[str, str], min_hours: float | None) -> bool:
    """Emit ``fada.dataset.grown`` (payload: data_dir, the new lenient view, the hours added) when a refresh
    added at least ``min_hours`` of lenient-kept clips; True when it did."""
    from prefect.events import emit_event

    logger = get_run_logger()
    if min_hours is None or ProfileName.lenient.value not in views or added_hours < min_hours:
        logger.info("no retraining: %.4f h of new lenient clips (threshold %s h)", added_hours, min_hours)
        return False
    data = str(Path(data_dir).resolve())
    emit_event(event=GROWN_EVENT, resource={"prefect.resource.id": f"fada.dataset.{data}", "prefect.resource.name": data},
               payload={"data_dir": data, "view": views[ProfileName.lenient.value], "views": views,
                        "added_hours": added_hours, "retrain_min_hours": min_hours})
    logger.info("%s: %.4f h of new lenient clips (threshold %s h) → retraining on %s", GROWN_EVENT, added_hours,
                min_hours, views[ProfileName.lenient.value])
    return True
