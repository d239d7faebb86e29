"""Prefect flows: thin orchestration of the library — every step is a call into filters/ or shards/.

``dataset-refresh`` ingests the sources of a manifest that are new by content hash (Ray inside the task),
publishes shards, catalog and lineage (each lineage sidecar carries the flow run id), then writes the
default views for the new catalog snapshot. ``refilter`` writes one named view. Both publish artifacts: a
table (kept/rejected, seconds per source tag and per reason) and histograms of each bounded score with the
thresholds marked. Parameters are typed so the Prefect UI renders a form.
"""

from __future__ import annotations

import base64
from enum import Enum
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact


class ProfileName(str, Enum):
    strict = "strict"
    lenient = "lenient"


@task(retries=2, retry_delay_seconds=10, task_run_name="refilter-{name}")
def write_view(data_dir: str, profile: str, name: str, overrides: dict[str, float], reshard_below: float | None) -> dict:
    from filters.profiles import load_profile
    from shards.views import refilter

    view, created = refilter(data_dir, load_profile(profile, overrides), name, reshard_below=reshard_below)
    get_run_logger().info("view %s %s: kept %d of %d clips", name, "written" if created else "unchanged", view["summary"]["kept"], view["summary"]["clips"])
    return view


@task(task_run_name="artifacts-{view[name]}")
def publish_view_artifacts(data_dir: str, view: dict) -> list[str]:
    from shards.view_plots import score_histograms

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
) -> str:
    """Apply a threshold profile to the catalog and write the named, immutable view (no video decoded)."""
    view = write_view(data_dir, profile.value, name, overrides or {}, reshard_below)
    publish_view_artifacts(data_dir, view)
    return str(Path(data_dir) / "views" / f"{name}.json")


@task(task_run_name="ingest")
def ingest_new_sources(manifest: str, data_dir: str, workers: int | None) -> dict:
    from flows.ingest import ingest

    return ingest(manifest, data_dir, workers=workers, progress=False).to_dict()


@flow(name="dataset-refresh", log_prints=True)
def dataset_refresh_flow(
    manifest: str,
    data_dir: str,
    workers: int | None = None,
    views: list[ProfileName] | None = None,
) -> dict:
    """Ingest what is new in the manifest, publish shards/catalog/lineage, and write default views
    named ``<profile>-<catalog snapshot digest[:10]>`` (views are immutable, so each snapshot gets its own)."""
    from shards.views import catalog_snapshot

    report = ingest_new_sources(manifest, data_dir, workers)
    added = [row for row in report["sources"] if row["outcome"] != "skipped"]
    create_table_artifact(
        key="dataset-refresh-added",
        table=[{k: row.get(k) for k in ("uri", "source_id", "outcome", "reason", "clips")} for row in added] or [{"uri": "(nothing new)"}],
        description=f"{len(added)} new source(s); {report['clips_ok']} clips kept; {len(report['shards'])} shard(s) written",
    )
    digest = catalog_snapshot(data_dir)["digest"][:10]
    written = {}
    for profile in views if views is not None else [ProfileName.strict, ProfileName.lenient]:
        name = f"{profile.value}-{digest}"
        view = write_view(data_dir, profile.value, name, {}, None)
        publish_view_artifacts(data_dir, view)
        written[profile.value] = name
    return {"added_sources": len(added), "clips_ok": report["clips_ok"], "shards": report["shards"], "views": written}
