"""Prefect flows for the model: ``train-teacher``, ``distill-student``, ``generate``, ``evaluate``.

Each flow is a thin wrapper: one task calls the library function the CLI calls (`fada.train_teacher.train_teacher`,
`fada.distill.distill_student`, `fada.pipeline.FadaPipeline`, `fada.evaluate.evaluate`), then the flow publishes
artifacts (loss curve and final metrics, the video with its NFE and time, the evaluation table) and records
the outputs as Prefect assets whose upstream is what they were made from (checkpoint ← view [← teacher];
video ← checkpoint, portrait, audio; evaluation ← test view, checkpoints).

GPU: the work runs through `run_on_gpu`: with ``RAY_ADDRESS`` set it is a Ray task asking for one GPU, so it
lands on a GPU node of the cluster; without it, it runs in the flow run's own process (the ``gpu-pool``
worker's machine). Paths are made absolute first, since a Ray worker has another working directory.

Caching and resuming: the expensive tasks are cached on their inputs, their source code, ``FADA_CODE_VERSION``
(when set) and the content of the files they read (the view JSON, the teacher's ``fada.json``, the portrait
and audio), so rerunning a flow whose later steps failed reuses the finished step. A cached result whose
output has since been deleted is recomputed. A training task that crashed is not cached; rerunning it
resumes from the last training state in ``out_dir`` (`fada.checkpoint.training_states`: every
``train.checkpoint_every`` steps and the last step), and ``steps`` is the total to reach, not a number
to add. ``refresh_cache`` forces the task to run again (training still resumes from ``out_dir``).
"""

from __future__ import annotations

import hashlib
import functools
import os
import sys
from dataclasses import asdict, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.assets import materialize
from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy
from pydantic import BaseModel, Field, PositiveInt

from flows.flow_artifacts import (annotate_assets, artifact_key, asset, checkpoint_asset, checkpoint_dir_asset,
                                  publish_training_artifacts, view_asset)


# --- parameter types (the Prefect UI renders enums as selects, models as sub-forms) ------------------------


class LossMode(str, Enum):
    """Ground-truth weighting of the distillation loss (``none`` = plain PeRFlow)."""

    none = "none"
    fixed = "fixed"
    adaptive_unlimited = "adaptive-unlimited"
    adaptive = "adaptive"


class CfgVariant(str, Enum):
    """How the student is told the CFG scales."""

    none = "none"
    time_embed = "time-embed"
    layer = "layer"
    layer_tokens = "layer-tokens"


class GenerationMode(str, Enum):
    """teacher: DDIM 25 steps, 3 passes; balanced / fast: the distilled student (6 steps)."""

    teacher = "teacher"
    balanced = "balanced"
    fast = "fast"


class SkipMetric(str, Enum):
    fid = "fid"
    fvd = "fvd"


class EvaluationRun(BaseModel):
    """One checkpoint to evaluate and the mode to sample it in."""

    ckpt: Path = Field(description="teacher or student checkpoint (a training output directory or its final/)")
    mode: GenerationMode = Field(default=GenerationMode.teacher, description="sampling mode")


# --- GPU dispatch -----------------------------------------------------------------------------------------


def gpu_task_options() -> dict:
    """Ray options of a GPU job: one GPU (``FADA_RAY_NUM_GPUS`` overrides, e.g. 0 to try the Ray path on a CPU
    machine). ``max_retries``: Ray reruns a job whose node died; a training job then resumes from its last
    training state in ``out_dir`` (which must be on storage every node sees)."""
    return {"num_gpus": float(os.environ.get("FADA_RAY_NUM_GPUS", "1")), "max_retries": 2, "retry_exceptions": False}


def run_on_gpu(fn: Callable, /, *args, **kwargs):
    """``fn(*args, **kwargs)`` as a Ray task that needs a GPU when ``RAY_ADDRESS`` is set, else in this process."""
    if not os.environ.get("RAY_ADDRESS"):
        return fn(*args, **kwargs)
    import ray
    from ray import cloudpickle

    from flows.ray_pool import ensure_ray

    module = sys.modules.get(fn.__module__)
    if module is not None and not _importable_everywhere(fn.__module__):
        cloudpickle.register_pickle_by_value(module)  # a flow file Prefect loaded by path: Ray workers can't import it
    ensure_ray()
    ref = ray.remote(**gpu_task_options())(fn).remote(*args, **kwargs)
    try:
        return ray.get(ref)
    except BaseException:
        ray.cancel(ref, force=True)  # a cancelled or crashed flow run must not leave a GPU job behind
        raise


@functools.lru_cache(maxsize=None)
def _installed_top_level() -> frozenset[str]:
    from importlib.metadata import packages_distributions

    return frozenset(packages_distributions()) | frozenset(sys.stdlib_module_names)


def _importable_everywhere(module_name: str) -> bool:
    """Whether a Ray worker (another process, maybe another machine with the same image) can import the
    module by name: it belongs to an installed distribution or the standard library. A flow file Prefect
    loaded by path (module ``training_flows``, ``__prefect_loader_…``) or a test module does not."""
    return module_name != "__main__" and module_name.split(".")[0] in _installed_top_level()


# --- caching ----------------------------------------------------------------------------------------------


def fingerprint(path: str | os.PathLike | None) -> str:
    """Content identity of an input file: its sha256 (size and mtime above 256 MiB); for a checkpoint
    directory its ``fada.json`` (step, config, lineage); ``missing`` when absent."""
    if path is None:
        return "none"
    p = Path(path)
    if p.is_dir():
        for meta in (p / "fada.json", p / "final" / "fada.json"):
            if meta.is_file():
                return fingerprint(meta)
        return f"dir:{p.stat().st_mtime_ns}"
    if not p.is_file():
        return "missing"
    stat = p.stat()
    if stat.st_size > 256 * 1024**2:
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _view_file(inputs: dict) -> Path:
    return Path(inputs["data_dir"]) / "views" / f"{inputs['view']}.json"


def _file_inputs(inputs: dict) -> list:
    files = []
    if "data_dir" in inputs and "view" in inputs:
        files.append(_view_file(inputs))
    for name in ("teacher", "init_student", "ckpt", "image", "audio", "fid_weights", "fvd_weights", "syncnet_weights", "sd15_dir"):
        if inputs.get(name) is not None:
            files.append(inputs[name])
    for run in inputs.get("runs") or []:
        files.append(run[0])
    return files


def _code_and_files_key(context, inputs: dict) -> str:
    parts = [f"code={os.environ.get('FADA_CODE_VERSION', '')}"]
    parts += [f"{Path(f)}={fingerprint(f)}" for f in _file_inputs(inputs)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


# Inputs + the task's source + FADA_CODE_VERSION + the content of the files the task reads.
EXPENSIVE = INPUTS + TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=_code_and_files_key)
PLACEHOLDER = "file:///fada/placeholder"  # each call sets the real assets with .with_options(assets=..., asset_deps=...)


def _abs(path: str | os.PathLike | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def _plain(value):
    return asdict(value) if is_dataclass(value) else value


def _cached(task_fn, refresh: bool, output: Callable[[dict], str], **options):
    """Call ``task_fn``; when it answers from the cache with an output that no longer exists, run it again."""
    configured = task_fn.with_options(refresh_cache=refresh or None, **options)

    def call(*args):
        state = configured(*args, return_state=True)
        value = state.result()  # raises when the task failed
        if state.name == "Cached" and not Path(output(value)).exists():
            get_run_logger().warning("the cached result's output %s is gone: running again", output(value))
            value = task_fn.with_options(refresh_cache=True, **options)(*args)
        return value

    return call


def training_config(config: str, overrides: dict[str, Any] | None, sd15_dir: str | None) -> dict:
    """A preset or YAML configuration with overrides: nested (``{"train": {"num_frames": 2}}``) or dotted
    (``{"train.num_frames": 2}``, like ``fada train-teacher --set``)."""
    from fada.config import resolve_config

    return resolve_config(config, overrides or {}, sd15_dir)


# --- tasks ------------------------------------------------------------------------------------------------


@materialize(PLACEHOLDER, cache_policy=EXPENSIVE, task_run_name="train-teacher-{steps}-steps")
def train_teacher_task(data_dir: str, view: str, config: dict, steps: int, out_dir: str, device: str | None) -> dict:
    from fada.train_teacher import train_teacher

    result = _plain(run_on_gpu(train_teacher, data_dir, view, config, steps, out_dir, device=device, progress=False))
    annotate_assets({"step": result["steps"], "resumed_from": result["resumed_from"], "final_loss": result["final_loss"]})
    get_run_logger().info("teacher: %d steps (resumed from %d), last loss %.4f → %s", result["steps"],
                          result["resumed_from"], result["final_loss"], result["checkpoint"])
    return result


@materialize(PLACEHOLDER, cache_policy=EXPENSIVE, task_run_name="distill-{steps}-steps")
def distill_student_task(data_dir: str, view: str, teacher: str, out_dir: str, overrides: dict, steps: int,
                         device: str | None, init_student: str | None = None) -> dict:
    from fada.distill import distill_student

    result = _plain(run_on_gpu(distill_student, data_dir, view, teacher, out_dir, config=overrides, steps=steps,
                               device=device, init_student=init_student, progress=False))
    annotate_assets({"step": result["steps"], "resumed_from": result["resumed_from"], "final_loss": result["final_loss"]})
    get_run_logger().info("student: %d steps (resumed from %d), last loss %.4f → %s", result["steps"],
                          result["resumed_from"], result["final_loss"], result["checkpoint"])
    return result


def generate_video(ckpt: str, mode: str, image: str, audio: str, out: str, *, device: str | None, size: int | None,
                   steps: int | None, guidance_reference: float | None, guidance_audio: float | None,
                   seed: int) -> dict:
    """The GPU job of ``generate``: load the checkpoint, write the video; returns the GenerationResult fields."""
    from fada.pipeline import FadaPipeline

    pipeline = FadaPipeline.from_checkpoint(ckpt, mode, device=device, output_size=size, num_inference_steps=steps,
                                            guidance_reference=guidance_reference, guidance_audio=guidance_audio)
    result = pipeline.generate(image, audio, out, seed=seed, progress=False)
    return {**asdict(result), "seconds_per_video_second": result.seconds_per_video_second}


@materialize(PLACEHOLDER, cache_policy=EXPENSIVE, task_run_name="generate-{mode}")
def generate_task(ckpt: str, mode: str, image: str, audio: str, out: str, device: str | None, size: int | None,
                  steps: int | None, guidance_reference: float | None, guidance_audio: float | None, seed: int) -> dict:
    result = run_on_gpu(generate_video, ckpt, mode, image, audio, out, device=device, size=size, steps=steps,
                        guidance_reference=guidance_reference, guidance_audio=guidance_audio, seed=seed)
    annotate_assets({k: result.get(k) for k in ("frames", "clips", "nfe_total", "nfe_per_clip", "seconds")})
    return result


@materialize(PLACEHOLDER, cache_policy=EXPENSIVE, task_run_name="evaluate-{view}")
def evaluate_task(data_dir: str, runs: list[tuple[str, str]], out_dir: str, view: str, fid_weights: str | None,
                  fvd_weights: str | None, syncnet_weights: str | None, skip: list[str], max_clips: int | None,
                  max_frames: int | None, seed: int, device: str | None) -> dict:
    from fada.evaluate import evaluate

    report = run_on_gpu(evaluate, data_dir, runs, out_dir, view=view, fid_weights=fid_weights, fvd_weights=fvd_weights,
                        syncnet_weights=syncnet_weights, skip=tuple(skip), max_clips=max_clips, max_frames=max_frames,
                        seed=seed, device=device, progress=False)
    annotate_assets({"runs": len(report.get("runs", [])), "clips": len(report.get("clips", [])), "complete": report.get("complete")})
    return report


# --- flows ------------------------------------------------------------------------------------------------


@flow(name="train-teacher", log_prints=True)
def train_teacher_flow(
    data_dir: Path,
    out_dir: Path,
    steps: PositiveInt,
    view: str = "strict",
    config: str = "tiny",
    config_overrides: dict[str, Any] | None = None,
    sd15_dir: Path | None = None,
    device: str | None = None,
    refresh_cache: bool = False,
) -> dict:
    """Train (or resume) the dual-UNet teacher on a view, like `fada train-teacher`.

    Args:
        data_dir: data directory (shards/, catalog/, views/)
        out_dir: training output directory (checkpoints/, final/, train_log.jsonl, tensorboard/); a run resumes from it
        steps: total optimisation steps (a resumed run continues up to this)
        view: training view name (views/<view>.json)
        config: tiny, sd15 or a YAML file (sections model, codec, train, sample)
        config_overrides: configuration values to override, nested {"train": {"num_frames": 2}} or dotted {"train.num_frames": 2}
        sd15_dir: local Stable Diffusion 1.5 directory (diffusers layout) to initialise from
        device: cuda, cuda:1, cpu … (default: cuda when available)
        refresh_cache: run the training task even when a cached result exists (training still resumes from out_dir)
    """
    data, out = _abs(data_dir), _abs(out_dir)
    resolved = training_config(config, config_overrides, _abs(sd15_dir))
    train = _cached(train_teacher_task, refresh_cache, lambda r: r["checkpoint"],
                    assets=[checkpoint_asset(out, "teacher")], asset_deps=[view_asset(data, view)])
    result = train(data, view, resolved, steps, out, device)
    artifacts = publish_training_artifacts("teacher", result)
    return {**result, **artifacts}


@flow(name="distill-student", log_prints=True)
def distill_student_flow(
    data_dir: Path,
    teacher: Path,
    out_dir: Path,
    steps: PositiveInt,
    view: str = "lenient",
    loss: LossMode = LossMode.adaptive,
    cfg: CfgVariant = CfgVariant.layer_tokens,
    overrides: dict[str, Any] | None = None,
    device: str | None = None,
    refresh_cache: bool = False,
    init_student: Path | None = None,
) -> dict:
    """Distil a 6-step student from a teacher (PeRFlow, mixed supervision, CFG tokens), like `fada distill`.

    Args:
        data_dir: data directory
        teacher: teacher checkpoint (a train-teacher output directory or its final/)
        out_dir: output directory of the student; a run resumes from it
        steps: total optimisation steps (a resumed run continues up to this)
        view: training view name
        loss: ground-truth weighting (none = plain PeRFlow)
        cfg: how the student is told the CFG scales
        overrides: distillation settings to override (`fada distill --set KEY=VALUE`), e.g. {"num_frames": 2, "learning_rate": 1e-5}
        device: cuda, cuda:1, cpu … (default: cuda when available)
        refresh_cache: run the distillation task even when a cached result exists (it still resumes from out_dir)
        init_student: start a fresh run from this student of the same teacher instead of the teacher; a directory of student runs means its newest (none yet: the teacher)
    """
    from fada.checkpoint import newest_checkpoint

    data, out, teacher_dir = _abs(data_dir), _abs(out_dir), _abs(teacher)
    init = newest_checkpoint(_abs(init_student), "student") if init_student is not None else None
    if init_student is not None:
        get_run_logger().info("starting from %s", init or f"the teacher (no student in {init_student} yet)")
    settings = {**(overrides or {}), "loss_mode": LossMode(loss).value, "cfg_variant": CfgVariant(cfg).value}
    distill = _cached(distill_student_task, refresh_cache, lambda r: r["checkpoint"],
                      assets=[checkpoint_asset(out, "student")],
                      asset_deps=[view_asset(data, view), checkpoint_dir_asset(teacher_dir, "teacher"),
                                  *([checkpoint_dir_asset(init, "student")] if init else [])])
    result = distill(data, view, teacher_dir, out, settings, steps, device, str(init) if init else None)
    artifacts = publish_training_artifacts("student", result)
    return {**result, **artifacts}


@flow(name="generate", log_prints=True)
def generate_flow(
    ckpt: Path,
    image: Path,
    audio: Path,
    out: Path,
    mode: GenerationMode = GenerationMode.teacher,
    size: PositiveInt | None = None,
    steps: PositiveInt | None = None,
    guidance_reference: float | None = None,
    guidance_audio: float | None = None,
    seed: int = 0,
    device: str | None = None,
    refresh_cache: bool = False,
) -> dict:
    """Portrait + audio → talking-head mp4 with the audio muxed in, like `fada generate`.

    Args:
        ckpt: teacher or student checkpoint directory
        image: portrait image
        audio: speech audio (any rate/channels; wav, flac, ogg, mp3 …)
        out: output .mp4
        mode: teacher (DDIM 25 steps), balanced or fast (student, 6 steps)
        size: output side in pixels (default: the model's)
        steps: sampling steps (default: 25 teacher, 6 student)
        guidance_reference: reference guidance scale s_r (default 2.5; 2.0 fast)
        guidance_audio: audio guidance scale s_a (default 6.5)
        seed: noise seed
        device: cuda, cuda:1, cpu … (default: cuda when available)
        refresh_cache: generate again even when a cached result exists
    """
    paths = {name: _abs(value) for name, value in (("ckpt", ckpt), ("image", image), ("audio", audio), ("out", out))}
    mode = GenerationMode(mode).value
    upstream = [checkpoint_dir_asset(paths["ckpt"]), asset(paths["image"], name="portrait"), asset(paths["audio"], name="audio")]
    generate = _cached(generate_task, refresh_cache, lambda r: r["path"],
                       assets=[asset(paths["out"], name=f"video {Path(paths['out']).name}")], asset_deps=upstream)
    result = generate(paths["ckpt"], mode, paths["image"], paths["audio"], paths["out"], device, size, steps,
                      guidance_reference, guidance_audio, seed)
    publish_generation_artifact(paths["ckpt"], mode, result)
    return result


@task(task_run_name="artifacts-generate", retries=2, retry_delay_seconds=5)
def publish_generation_artifact(ckpt: str, mode: str, result: dict) -> None:
    rows = [{"field": "video", "value": result["path"]}, {"field": "checkpoint", "value": ckpt}, {"field": "mode", "value": mode},
            {"field": "frames", "value": result["frames"]}, {"field": "clips", "value": result["clips"]},
            {"field": "NFE-D per clip", "value": result["nfe_per_clip"]}, {"field": "NFE total", "value": result["nfe_total"]},
            {"field": "seconds", "value": round(result["seconds"], 3)},
            {"field": "s per video-s", "value": round(result["seconds_per_video_second"], 3)}]
    markdown = [f"# Generated `{result['path']}`", "", f"[{Path(result['path']).name}](file://{result['path']})", "",
                "| | |", "|:---|---:|"] + [f"| {r['field']} | {r['value']} |" for r in rows]
    create_markdown_artifact(key=artifact_key("generate", Path(result['path']).stem), markdown="\n".join(markdown),
                             description=f"{result['frames']} frames, NFE-D {result['nfe_per_clip']:g} per clip, "
                                         f"{result['seconds']:.1f} s")


@flow(name="evaluate", log_prints=True)
def evaluate_flow(
    data_dir: Path,
    runs: list[EvaluationRun],
    out_dir: Path,
    view: str = "test",
    fid_weights: Path | None = None,
    fvd_weights: Path | None = None,
    syncnet_weights: Path | None = None,
    skip: list[SkipMetric] | None = None,
    max_clips: PositiveInt | None = None,
    max_frames: PositiveInt | None = None,
    seed: int = 0,
    device: str | None = None,
    refresh_cache: bool = False,
) -> dict:
    """The paper's Table 1 columns for checkpoints on the held-out test view, like `fada evaluate`.

    Args:
        data_dir: data directory
        runs: checkpoints to compare, each with its sampling mode
        out_dir: where evaluation.json, evaluation.md and the generated videos go
        view: the held-out test view (written by dataset-refresh or `fada split`)
        fid_weights: pt_inception-2015-12-05-6726825d.pth (pytorch-fid); needed unless fid is skipped
        fvd_weights: r3d_18-b3b3357e.pth (torchvision, Kinetics-400); needed unless fvd is skipped
        syncnet_weights: syncnet_v2.model (default: the weight-free sync scorer)
        skip: metrics to leave out (labelled "not computed" in the table)
        max_clips: evaluate at most this many clips of the view
        max_frames: at most this many frames per clip
        seed: base seed (each clip gets its own, shared by every run)
        device: cuda, cuda:1, cpu … (default: cuda when available)
        refresh_cache: evaluate again even when a cached report exists
    """
    from fada.evaluate import REPORT_FILE

    data, out = _abs(data_dir), _abs(out_dir)
    pairs = [(_abs(EvaluationRun.model_validate(run).ckpt), GenerationMode(EvaluationRun.model_validate(run).mode).value)
             for run in runs]
    skipped = sorted({SkipMetric(s).value for s in skip or []})
    upstream = [view_asset(data, view)] + [checkpoint_dir_asset(ckpt) for ckpt, _ in pairs]
    report_path = str(Path(out) / REPORT_FILE)
    evaluate = _cached(evaluate_task, refresh_cache, lambda r: report_path,
                       assets=[asset(report_path, name=f"evaluation {Path(out).name}")], asset_deps=upstream)
    report = evaluate(data, pairs, out, view, _abs(fid_weights), _abs(fvd_weights), _abs(syncnet_weights), skipped,
                      max_clips, max_frames, seed, device)
    publish_evaluation_artifacts(report, out)
    return {"report": report_path, "runs": [run.get("name") for run in report.get("runs", [])]}


@task(task_run_name="artifacts-evaluate", retries=2, retry_delay_seconds=5)
def publish_evaluation_artifacts(report: dict, out_dir: str) -> None:
    from fada.evaluate import format_table, table_rows

    key = artifact_key("evaluation", Path(out_dir).name)
    create_markdown_artifact(key=key, markdown=format_table(report), description=f"evaluation on view {report['view']} ({out_dir})")
    create_table_artifact(key=f"{key}-table", table=table_rows(report), description=f"evaluation table ({out_dir})")


# --- sync expert ------------------------------------------------------------------------------------------


class HeldOutSplit(str, Enum):
    """What the sync expert's validation holds out: whole sources, or the last part of every clip."""

    auto = "auto"
    source = "source"
    time = "time"


@materialize(PLACEHOLDER, cache_policy=EXPENSIVE, task_run_name="train-sync-expert-{view}")
def train_sync_expert_task(data_dir: str, view: str, out_dir: str, settings: dict, held_out: float,
                           split_by: str) -> dict:
    from shards.syncnet_data import train_syncnet_on_view

    result = _plain(run_on_gpu(train_syncnet_on_view, data_dir, view, out_dir, settings, held_out=held_out,
                               split_by=split_by, progress=False))
    annotate_assets({"step": result["steps"], "final_loss": result["final_loss"], "split": result["split"], **result["metrics"]})
    get_run_logger().info("sync expert: %d steps, held out by %s, in-sync vs shifted accuracy %.3f → %s",
                          result["steps"], result["split"], result["metrics"]["val_acc"], result["checkpoint"])
    return result


@flow(name="train-sync-expert", log_prints=True)
def train_sync_expert_flow(
    data_dir: Path,
    out_dir: Path,
    view: str = "strict",
    steps: PositiveInt = 2000,
    settings: dict[str, Any] | None = None,
    held_out: float = 0.2,
    split_by: HeldOutSplit = HeldOutSplit.auto,
    device: str | None = None,
    refresh_cache: bool = False,
) -> dict:
    """Train a SyncNet sync expert on a view's clips, self-supervised, like `fada train-syncnet`; publishes the
    loss/accuracy curve and the held-out metrics, records the weights directory as an asset. Score with it:
    ingest or rescore with ``scoring.syncnet_weights=<out_dir>``.

    Args:
        data_dir: data directory
        out_dir: output directory (model.safetensors, config.json, train_log.jsonl, loss_curve.png)
        view: view whose clips train the expert
        steps: optimisation steps
        settings: other training settings (`fada train-syncnet --set`), e.g. {"batch_size": 64, "model": {"width": 1.0}}
        held_out: share held out for validation
        split_by: auto, source (whole sources held out) or time (the last part of every clip)
        device: cuda, cuda:1, cpu … (default: cuda when available)
        refresh_cache: train again even when a cached result exists
    """
    data, out = _abs(data_dir), _abs(out_dir)
    resolved = {**(settings or {}), "steps": steps, **({"device": device} if device else {})}
    train = _cached(train_sync_expert_task, refresh_cache, lambda r: r["checkpoint"],
                    assets=[checkpoint_dir_asset(out, "sync-expert")], asset_deps=[view_asset(data, view)])
    result = train(data, view, out, resolved, held_out, HeldOutSplit(split_by).value)
    artifacts = publish_training_artifacts("sync-expert", result)
    return {**result, **artifacts}
