"""Prefect flows: thin orchestration of the library — every step is a call into filters/ or shards/.

``dataset-refresh`` ingests the sources of a manifest that are new by content hash (Ray inside the task),
publishes shards, catalog and lineage (each lineage sidecar carries the flow run id), writes or keeps the
held-out test split (view ``test``: whole sources, `shards.splits`), then writes the default views for the
new catalog snapshot, which leave the test split's sources out. ``refilter`` writes one named view (also
without the test split's sources when the split exists). Both publish artifacts: a table (kept/rejected,
seconds per source tag and per reason) and histograms of each bounded score with the thresholds marked.
Shards and views are recorded as Prefect assets (source videos → shard → view; `flows.flow_artifacts`).
Parameters are typed so the Prefect UI renders a form. The model flows are in `flows.training_flows`.

Retries: the I/O tasks (views, split, artifacts) retry twice; ``ingest`` retries too (a rerun skips the
sources the ledger already holds, so a retry resumes) except on errors a retry cannot fix (bad manifest or
configuration). A source that fails is recorded in the ledger and in the ``dataset-refresh-added`` table,
and gets a failed task run of its own (``source-…``); the flow still completes.
"""

from __future__ import annotations

import base64
from enum import Enum
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.flow_artifacts import record_shards, record_view

TEST_SPLIT = "test"
GROWN_EVENT = "fada.dataset.grown"  # prefect.yaml's distill-student trigger listens for it


class ProfileName(str, Enum):
    strict = "strict"
    lenient = "lenient"


@task(retries=2, retry_delay_seconds=10, task_run_name="refilter-{name}")
def write_view(data_dir: str, profile: str, name: str, overrides: dict[str, float], reshard_below: float | None,
               exclude_split: str | None = None) -> dict:
    from filters.profiles import load_profile
    from shards.views import refilter

    view, created = refilter(data_dir, load_profile(profile, overrides), name, reshard_below=reshard_below, exclude_split=exclude_split)
    excluded = f", without the sources of split {exclude_split!r}" if exclude_split else ""
    get_run_logger().info("view %s %s: kept %d of %d clips%s", name, "written" if created else "unchanged", view["summary"]["kept"], view["summary"]["clips"], excluded)
    return view


@task(retries=2, retry_delay_seconds=10, task_run_name="split-{name}")
def write_test_split(data_dir: str, name: str, fraction: float, seed: int) -> dict | None:
    """Write the held-out test split, or keep the one already there (made from an older catalog snapshot:
    views are immutable, and the views written next still leave out every source its rule holds out in the
    current catalog). None when the catalog has fewer than two sources (nothing to hold out yet)."""
    from shards.atomic import read_json
    from shards.catalog import read_catalog
    from shards.splits import test_sources, write_test_view
    from shards.views import view_path

    logger = get_run_logger()
    path = view_path(data_dir, name)
    if path.exists():
        existing = read_json(path)
        rule = existing.get("split")
        if rule is not None and (rule["fraction"], rule["seed"]) == (fraction, seed):
            logger.info("test split %s kept: %d held-out source(s)", name, len(rule["sources"]))
            return existing
    elif not test_sources(read_catalog(data_dir), fraction, seed):
        logger.warning("no test split yet: the catalog has fewer than two sources")
        return None
    view, created = write_test_view(data_dir, name, fraction=fraction, seed=seed)  # raises on a conflicting view
    logger.info("test split %s %s: %d clip(s) of %d held-out source(s)", name, "written" if created else "unchanged",
                view["summary"]["kept"], len(view["split"]["sources"]))
    return view


@task(retries=2, retry_delay_seconds=10, task_run_name="artifacts-{view[name]}")
def publish_split_artifact(view: dict) -> None:
    summary = view["summary"]
    rows = [{"held_out_source": source} for source in view["split"]["sources"]]
    create_table_artifact(key="split-" + view["name"].lower().replace("_", "-"), table=rows,
                          description=f"Test split {view['name']}: {summary['kept']} clips of {len(rows)} held-out source(s) "
                                      f"(fraction {view['split']['fraction']}, seed {view['split']['seed']})")


@task(retries=2, retry_delay_seconds=10, task_run_name="artifacts-{view[name]}")
def publish_view_artifacts(data_dir: str, view: dict) -> list[str]:
    from shards.view_plots import score_histograms

    if "profile" not in view:  # a test split selects sources, not scores: no histograms
        publish_split_artifact.fn(view)
        return []

    summary = view["summary"]
    artifact_key = "view-" + view["name"].lower().replace("_", "-")
    rows = [{"group": f"tag:{tag}", "kept": r["kept"], "kept_seconds": round(r["kept_hours"] * 3600, 1), "rejected": r["rejected"]} for tag, r in sorted(summary["per_source_tag"].items())]
    rows += [{"group": f"rejected:{reason}", "kept": 0, "kept_seconds": 0.0, "rejected": r["clips"]} for reason, r in sorted(summary["per_reason"].items())]
    create_table_artifact(key=artifact_key, table=rows, description=f"View {view['name']}: kept {summary['kept']} of {summary['clips']} clips ({summary['kept_hours']:.3f} h)")
    images = score_histograms(data_dir, view, Path(data_dir) / "views" / f"{view['name']}.plots")
    markdown = [f"# Score histograms for view `{view['name']}` (profile {view['profile']['name']})", ""]
    for image in images:
        encoded = base64.b64encode(image.read_bytes()).decode()
        markdown += [f"**{image.stem}** — `{image}`", "", f"![{image.stem}](data:image/png;base64,{encoded})", ""]
    create_markdown_artifact(key=f"{artifact_key}-histograms", markdown="\n".join(markdown), description=f"histograms for view {view['name']}")
    return [str(p) for p in images]


@flow(name="refilter", log_prints=True)
def refilter_flow(
    data_dir: str,
    name: str,
    profile: ProfileName = ProfileName.strict,
    overrides: dict[str, float] | None = None,
    reshard_below: float | None = None,
    test_split: str | None = TEST_SPLIT,
) -> str:
    """Apply a threshold profile to the catalog and write the named, immutable view (no video decoded).

    Args:
        data_dir: data directory (catalog/, shards/, views/)
        name: view name (views are immutable: a new selection needs a new name)
        profile: threshold profile
        overrides: bounds to override, e.g. {"image_quality.iqa.min": 0.9}
        reshard_below: copy the kept samples of shards the view keeps less than this share of into new dense shards
        test_split: held-out split whose sources the view leaves out, when that split exists (null: keep them)
    """
    from shards.views import view_path

    exclude = test_split if test_split and view_path(data_dir, test_split).exists() else None
    view = write_view(data_dir, profile.value, name, overrides or {}, reshard_below, exclude)
    publish_view_artifacts(data_dir, view)
    record_view(data_dir, view)
    return str(Path(data_dir) / "views" / f"{name}.json")


def _retry_unless_input_error(task, task_run, state) -> bool:
    """Retry ingest unless the manifest or configuration itself is wrong."""
    from shards.sources import ManifestError

    try:
        state.result()
    except (ManifestError, FileNotFoundError, TypeError, ValueError):
        return False
    except Exception:
        return True
    return True


@task(task_run_name="ingest", retries=2, retry_delay_seconds=30, retry_condition_fn=_retry_unless_input_error)
def ingest_new_sources(manifest: str, data_dir: str, workers: int | None) -> dict:
    from flows.ingest import ingest

    return ingest(manifest, data_dir, workers=workers, progress=False).to_dict()


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
    so each snapshot gets its own) that leave out the test split's sources.

    Args:
        manifest: manifest of source videos (.yaml, .csv or .parquet)
        data_dir: data directory to ingest into
        workers: Ray actors (default: the cluster's CPUs); 0 runs in the flow's process
        views: profiles to write default views for (default: strict and lenient)
        test_split: name of the held-out test split view (null: no split, views keep every source)
        test_fraction: share of sources the test split holds out (whole sources, chosen by hash)
        retrain_min_hours: when this run adds at least these hours of clips the lenient profile keeps, emit fada.dataset.grown, which retrains the student on the new lenient view (prefect.yaml's distill-student trigger); null: never
    """
    from shards.views import catalog_snapshot

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
    digest = catalog_snapshot(data_dir)["digest"][:10]
    written = {}
    for profile in views if views is not None else [ProfileName.strict, ProfileName.lenient]:
        name = f"{profile.value}-{digest}"
        view = write_view(data_dir, profile.value, name, {}, None, test_split if split is not None else None)
        publish_view_artifacts(data_dir, view)
        record_view(data_dir, view)
        written[profile.value] = name
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
