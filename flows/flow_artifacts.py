"""What the Prefect flows publish besides their return values: artifacts (tables, markdown with images) and
asset lineage (shards, views, checkpoints, videos, evaluation reports as Prefect assets).

Assets are keyed by ``file://`` URIs of absolute paths (remote sources keep their own URI). Each recorded
asset names its upstream assets, so Prefect's lineage reads source video → shard → view → teacher
checkpoint → student checkpoint → video / evaluation. They are sent as Prefect events
(``prefect.asset.materialization.succeeded`` with the upstream assets as related resources, and
``prefect.asset.referenced`` for each upstream asset); the full lineage stays in the files themselves
(shard lineage sidecars, view JSON, checkpoint ``fada.json``).
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.assets import Asset, AssetProperties, materialize

from fada.training_plots import loss_curve_png, numeric_columns
from filters.strict_json import json_safe

# A Prefect event carries at most 100 related resources by default (PREFECT_EVENTS_MAXIMUM_RELATED_RESOURCES);
# an asset with more upstream assets names the first ones and records the count in its metadata.
MAX_UPSTREAM = 90
_RESTRICTED = re.compile(r"[\s#?&%\"'<>\[\]{}|\\^`\x00]")


def slug(text: str) -> str:
    """An artifact key fragment: lowercase letters, digits and dashes only."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", str(text).lower())).strip("-") or "x"


def artifact_key(kind: str, name: str) -> str:
    """``<kind>-<name>`` as an artifact key, without repeating ``kind`` when the name already starts with it
    (an output directory called ``student`` gives ``student``, not ``student-student``)."""
    name = slug(name)
    return name if name == slug(kind) or name.startswith(slug(kind) + "-") else f"{slug(kind)}-{name}"


def asset_key(path_or_uri: str | os.PathLike) -> str:
    """A Prefect asset key for a local path (``file:///abs/path``) or a remote URI (kept as it is).

    Characters Prefect refuses in keys (spaces, ``%``, ``#`` …) become ``_``; keys longer than Prefect's 512
    characters keep their end and a hash of the whole.
    """
    text = str(path_or_uri)
    if re.match(r"^[a-z][a-z0-9+.-]*://", text) and not text.startswith("file://"):
        key = text
    else:
        key = "file://" + str(Path(text.removeprefix("file://")).expanduser().resolve())
    key = _RESTRICTED.sub("_", key)
    if len(key) > 512:
        key = key[:440] + "-" + hashlib.sha256(key.encode()).hexdigest()[:16] + "-" + key[-50:]
    return key


def asset(path_or_uri: str | os.PathLike, name: str | None = None, description: str | None = None) -> Asset:
    properties = AssetProperties(name=name, description=description) if (name or description) else None
    return Asset(key=asset_key(path_or_uri), properties=properties)


def annotate_assets(metadata: dict) -> dict:
    """Attach ``metadata`` to every asset the running task materializes (none outside a materializing task)."""
    from prefect.assets import add_asset_metadata
    from prefect.context import AssetContext

    context = AssetContext.get()
    for downstream in context.downstream_assets if context else ():
        add_asset_metadata(downstream, metadata)
    return metadata


@materialize("file:///fada/placeholder", task_run_name="asset-{label}", retries=1, retry_delay_seconds=2)
def record_asset_task(label: str, metadata: dict) -> None:
    """Materialize the assets given by ``.with_options(assets=[...], asset_deps=[...])`` (the placeholder is
    always replaced) with ``metadata`` on each.

    Returns None on purpose: Prefect links a task's result to later tasks by ``id()``, and for a plain dict
    a later, unrelated dict at a recycled address would inherit this task's assets as upstream."""
    annotate_assets(metadata)


def record_asset(label: str, target: Asset | list[Asset], upstream: Iterable[Asset], metadata: dict | None = None):
    """Record ``target`` as materialized by this flow run with ``upstream`` as its dependencies (a task run
    named ``asset-<label>``). Returns the task's state: a lineage hiccup never fails the flow."""
    upstream = list(dict.fromkeys(upstream))  # unique, order kept
    metadata = dict(metadata or {})
    if len(upstream) > MAX_UPSTREAM:
        metadata.update(upstream_total=len(upstream), upstream_recorded=MAX_UPSTREAM)
        upstream = upstream[:MAX_UPSTREAM]
    targets = target if isinstance(target, list) else [target]
    return record_asset_task.with_options(assets=targets, asset_deps=upstream or None)(label, json_safe(metadata),
                                                                                  return_state=True)


def view_asset(data_dir: str | os.PathLike, name: str) -> Asset:
    return asset(Path(data_dir) / "views" / f"{name}.json", name=f"view {name}")


def shard_asset(data_dir: str | os.PathLike, relative: str) -> Asset:
    return asset(Path(data_dir) / relative, name=f"shard {relative}")


def checkpoint_asset(out_dir: str | os.PathLike, kind: str) -> Asset:
    """The inference checkpoint a training run exports (``OUT/final``)."""
    return asset(Path(out_dir) / "final", name=f"{kind} {Path(out_dir).name}")


def checkpoint_dir_asset(ckpt: str | os.PathLike, kind: str = "checkpoint") -> Asset:
    """A checkpoint given by the user: a training output directory (its ``final/``) or the directory itself."""
    path = Path(ckpt)
    if (path / "final").is_dir():
        path = path / "final"
    return asset(path, name=f"{kind} {path.parent.name if path.name == 'final' else path.name}")


def record_view(data_dir: str | os.PathLike, view: dict) -> Any:
    """The view's asset, upstream: the shards it reads."""
    upstream = [shard_asset(data_dir, shard) for shard in sorted(view.get("shards", {}))]
    summary = view.get("summary", {})
    meta = {"kept": summary.get("kept"), "clips": summary.get("clips"), "shards": len(view.get("shards", {})),
            "catalog_digest": view.get("catalog", {}).get("digest"),
            "kind": "test-split" if "split" in view else "view"}
    return record_asset(f"view-{slug(view['name'])}", view_asset(data_dir, view["name"]), upstream, meta)


def record_shards(data_dir: str | os.PathLike, shard_names: list[str]) -> list:
    """One asset per shard written by this run, upstream: the source videos its lineage sidecar names."""
    from shards.lineage import iter_lineage

    wanted, states = set(shard_names), []
    for doc in iter_lineage(data_dir):
        if Path(doc["shard"]).name not in wanted and doc["shard"] not in wanted:
            continue
        upstream = [asset(s["uri"], name=f"source {s['source_id'][:12]}") for s in doc["sources"] if s.get("uri")]
        meta = {"sha256": doc.get("sha256"), "samples": doc.get("n_samples"), "code_version": doc.get("code_version"),
                "config_hash": doc.get("config_hash")}
        states.append(record_asset(f"shard-{slug(doc['shard'])}", shard_asset(data_dir, doc["shard"]), upstream, meta))
    return states


# --- training artifacts -----------------------------------------------------------------------------------


def markdown_image(path: Path, alt: str) -> list[str]:
    encoded = base64.b64encode(path.read_bytes()).decode()
    return [f"**{alt}** — `{path}`", "", f"![{alt}](data:image/png;base64,{encoded})", ""]


@task(task_run_name="artifacts-{kind}", retries=2, retry_delay_seconds=5)
def publish_training_artifacts(kind: str, result: dict) -> dict:
    """A loss-curve PNG (``OUT/loss_curve.png``, embedded in a markdown artifact) and a table of the final
    metrics (the last logged value of every numeric column, plus steps, resume point and checkpoint)."""
    from fada.training import read_log

    out_dir = Path(result["out_dir"])
    rows = read_log(out_dir)
    key = artifact_key(kind, out_dir.name)
    png = loss_curve_png(rows, out_dir / "loss_curve.png", f"{kind} {out_dir.name}: {len(rows)} logged steps")
    markdown = [f"# {kind} loss curve — `{out_dir}`", ""]
    markdown += markdown_image(png, "loss curve") if png else ["(no log rows yet)", ""]
    markdown += [f"Log: `{out_dir / 'train_log.jsonl'}` · TensorBoard: `{out_dir / 'tensorboard'}`"]
    create_markdown_artifact(key=f"{key}-loss-curve", markdown="\n".join(markdown), description=f"{kind} loss curve ({out_dir})")
    last = rows[-1] if rows else {}
    table = [{"metric": "steps", "value": result["steps"]}, {"metric": "resumed_from", "value": result["resumed_from"]},
             {"metric": "final_loss", "value": _round(result.get("final_loss"))}]
    table += [{"metric": f"last {c}", "value": _round(last[c])} for c in numeric_columns([last])]
    table += [{"metric": "checkpoint", "value": result["checkpoint"]}]
    create_table_artifact(key=f"{key}-metrics", table=table, description=f"{kind} final metrics ({out_dir})")
    get_run_logger().info("%s: %d log rows, loss curve %s", kind, len(rows), png)
    return {"loss_curve": str(png) if png else None, "artifact_keys": [f"{key}-loss-curve", f"{key}-metrics"]}


def _round(value):
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else str(value)
    return value


