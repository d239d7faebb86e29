"""Evaluation of generation checkpoints on a held-out view, side by side like the paper's Table 1.

Every run (checkpoint, mode) generates one video per test clip, from the clip's **first frame** (already a
face crop, so no face detection: the frame is resized to the pipeline's input and passed to
`FadaPipeline.frames` as the portrait) and the clip's **own audio**, with the seed ``clip_seed(seed, key)``,
which depends only on the clip, so every checkpoint and mode sees the same noise for a clip whatever the other
clips. Videos are written as mp4 with the audio muxed in under ``OUT/videos/<run>/<key>.mp4`` and measured
against the real clips:

==========================  ==============================================================================
``iqa``                     mean over videos of `ImageQualityMetric` (the ingestion filters' score, not
                            the paper's Q-Align)
``sync_c`` / ``sync_d``     mean over videos of `SyncMetric` at the best shift in ±15 frames, and
``sync_c_at_0`` …           at shift 0; ``sync_scorer`` names the scorer (values of two scorers differ)
``fid``                     FID between all real and all generated frames (FID Inception, local weights)
``fvd``                     Fréchet distance of R3D-18 video features, real vs generated videos
``expression_fd``           Fréchet distance of face-mesh expression features (E-FID-like)
``oracle_sync``             with ``oracle_weights`` (generator speakers only): mean `OracleSync` peak
                            correlation of the read mouth with the audio envelope, and ``oracle_shuffled``
``nfe_d``                   denoising-net evaluations per generated clip of ``clip_frames`` frames:
                            75 teacher, 18 balanced, 6 fast
``seconds_per_video_second``  wall-clock of generation (the frame loop; not the mp4 encoding nor the
                            metrics) over the seconds of video generated, at 25 fps
==========================  ==============================================================================

FID and FVD need the feature networks' local weight files (``fid_weights``: pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth``; ``fvd_weights``: torchvision's ``r3d_18-b3b3357e.pth``). Without
them `evaluate` raises `MissingWeightsError` naming the file before anything is generated, unless the metric
is skipped explicitly (``skip=("fid", "fvd")``), which the report and the table label "not computed". A metric
that cannot be computed from the data (no face found, fewer than 2 videos for FVD, …) is ``null`` in the JSON
with the reason under ``unavailable``, "n/a" in the table.

The real clips are measured once with the same metrics (IQA, sync) as the reference row; their FID/FVD/E-FD
features are computed once and reused for every run. Generated videos are measured one at a time, so memory
holds one generated video plus the features.

`evaluate` writes ``OUT/evaluation.json`` (after each run, ``complete`` false until the last) and
``OUT/evaluation.md`` (`format_table`), both atomically. `table_rows` gives the table as rows for a Prefect
table artifact. `pair_runs` turns ``--ckpt``/``--mode`` values into runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from filters.media_contract import FPS, SAMPLES_PER_FRAME
from filters.strict_json import json_safe
from shards.atomic import atomic_write_bytes, atomic_write_json

REPORT_FILE = "evaluation.json"
TABLE_FILE = "evaluation.md"
REPORT_FORMAT = "fada-evaluation/1"
SKIPPABLE = ("fid", "fvd", "expression", "sync", "iqa")
NOT_COMPUTED = "not computed"
UNAVAILABLE = "n/a"

Clip = tuple  # (key, frames (T, H, W, 3) uint8, audio (T·640,) float32 at 16 kHz)


class EvaluationWarning(UserWarning):
    """A test clip was skipped while reading the view (the message says which and why)."""


# --- test clips --------------------------------------------------------------------------------------------


def read_test_clips(data_dir: str | os.PathLike, view: str, max_clips: int | None = None,
                    max_frames: int | None = None) -> list[Clip]:
    """``[(key, frames (T, H, W, 3) uint8, audio (T·640,) float32 16 kHz mono)]`` of the clips ``view``
    selects, in the order (shard, key) sorted, the first ``max_clips`` readable ones.

    Each clip keeps its frames that have audio (T = min(video frames, audio samples // 640)), at most
    ``max_frames``, and exactly their audio. Tar members are matched by safe names only
    (`shards.shard_writer.check_key`; others are never read); a clip that is missing a member or does not
    decode is skipped with an `EvaluationWarning`.
    """
    from shards.reader import load_view

    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips must be at least 1, got {max_clips}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    spec = load_view(data_dir, view)
    clips: list[Clip] = []
    for shard in sorted(spec["shards"]):
        pending = _safe_view_keys(spec["shards"][shard] or [], shard)
        while pending and (max_clips is None or len(clips) < max_clips):
            take = pending if max_clips is None else pending[: max_clips - len(clips)]
            pending = pending[len(take):]
            samples = _read_samples(Path(data_dir) / shard, set(take))
            for key in take:
                try:
                    clips.append(_decode_clip(key, samples.get(key, {}), max_frames))
                except ValueError as error:
                    warnings.warn(f"skipped test clip {key} of {shard}: {error}", EvaluationWarning, stacklevel=2)
        if max_clips is not None and len(clips) >= max_clips:
            break
    return clips


def _safe_view_keys(keys: list, shard: str) -> list[str]:
    from shards.shard_writer import check_key

    safe = []
    for key in sorted(set(keys)):
        try:
            safe.append(check_key(key))
        except ValueError as error:
            warnings.warn(f"view names an unsafe key in {shard}: {error}", EvaluationWarning, stacklevel=3)
    return safe


def _read_samples(path: Path, keys: set[str]) -> dict[str, dict[str, bytes]]:
    """{key: {extension: bytes}} of the members KEY.EXT of ``keys`` in the tar at ``path``, read with the shards'
    tar reader (`shards.reader.TarMembers`: unsafe names are never read, an unreadable tar's rest is skipped);
    what it skips is warned as an `EvaluationWarning`."""
    from shards.tar_members import ReaderStats, TarMembers, member_key

    samples: dict[str, dict[str, bytes]] = {}
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always")
        for member in TarMembers({str(path): frozenset(keys)}, ReaderStats())([{"url": str(path)}]):
            if member:  # {} marks the shard's end
                key, extension = member_key(member["fname"])
                samples.setdefault(key, {})[extension] = member["data"]
    for warning in skipped:
        warnings.warn(str(warning.message), EvaluationWarning, stacklevel=3)
    return samples


def _decode_clip(key: str, members: dict[str, bytes], max_frames: int | None) -> Clip:
    import decord

    from shards.reader import BadSample, open_video, parse_audio, parse_record
    from shards.shard_writer import SAMPLE_EXTENSIONS

    missing = [extension for extension in SAMPLE_EXTENSIONS if extension not in members]
    if missing:
        raise ValueError(f"missing member(s) {', '.join(missing)}")
    try:
        parse_record(members["json"])
        audio = parse_audio(members["wav"])
        video = open_video(members["mp4"], None)
        n = min(len(video), len(audio) // SAMPLES_PER_FRAME)
        if max_frames is not None:
            n = min(n, max_frames)
        if n < 1:
            raise ValueError(f"no frame with audio ({len(video)} frames, {len(audio)} samples)")
        try:
            frames = video.get_batch(list(range(n))).asnumpy()
        except (RuntimeError, decord.DECORDError):  # decord fails on some frame sizes (rows padded for alignment): decode with PyAV
            frames = _decode_with_av(members["mp4"], n)
    except BadSample as bad:
        raise ValueError(f"{bad.reason}: {bad}") from bad
    if len(frames) < n:
        raise ValueError(f"bad_video: decoded {len(frames)} of {n} frames")
    return key, np.ascontiguousarray(frames, dtype=np.uint8), np.ascontiguousarray(audio[: n * SAMPLES_PER_FRAME], np.float32)


def _decode_with_av(data: bytes, n: int) -> np.ndarray:
    import io

    import av

    frames = []
    try:
        with av.open(io.BytesIO(data)) as container:
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == n:
                    break
    except av.FFmpegError as error:
        raise ValueError(f"bad_video: {str(error)[:200]}") from error
    if not frames:
        raise ValueError("bad_video: no frame decoded")
    return np.stack(frames)


def clip_seed(seed: int, key: str) -> int:
    """The generation seed of clip ``key``: the first 31 bits of sha256(f"{seed}:{key}"), so it does not
    depend on the run, the order of the clips or which other clips are evaluated."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:4], "big") & 0x7FFFFFFF


# --- metrics ------------------------------------------------------------------------------------------------


def normalise_skip(skip) -> tuple[str, ...]:
    names = tuple(sorted({str(name).strip().lower() for name in (skip or ()) if str(name).strip()}))
    aliases = {"efd": "expression", "e-fd": "expression", "e_fd": "expression"}
    names = tuple(sorted({aliases.get(name, name) for name in names}))
    unknown = [name for name in names if name not in SKIPPABLE]
    if unknown:
        raise ValueError(f"cannot skip {unknown}: skippable metrics are {', '.join(SKIPPABLE)}")
    return names


def check_feature_weights(fid_weights, fvd_weights, skip=()) -> None:
    """Raise `MissingWeightsError` naming the file when FID/FVD are wanted and their weights are not given
    or not there (the file's contents are checked when the network loads)."""
    from fada.metrics import MissingWeightsError
    from fada.metrics import inception, video_features

    for metric, path, module, flag in (("fid", fid_weights, inception, "--fid-weights"),
                                       ("fvd", fvd_weights, video_features, "--fvd-weights")):
        if metric in skip:
            continue
        how = (f"download {module.WEIGHTS_FILE} from {module.WEIGHTS_URL}, pass its local path as "
               f"{metric}_weights ({flag}), or skip the metric explicitly with skip=({metric!r},) "
               f"(--skip {metric}) to report it as {NOT_COMPUTED!r}")
        if path is None:
            raise MissingWeightsError(f"{metric.upper()} needs the feature network weights {module.WEIGHTS_FILE}: {how}")
        if not Path(path).is_file():
            raise MissingWeightsError(f"{metric.upper()} weights not found at {path}: provide {module.WEIGHTS_FILE}; {how}")


class _SharedLandmarks:
    """A `LandmarkModel` that keeps the landmarks of the last frames array it saw, so the sync, IQA and
    expression metrics of one video run the face mesh once."""

    def __init__(self, model):
        self.model, self._frames, self._landmarks = model, None, None

    def landmarks(self, frames: np.ndarray) -> np.ndarray:
        if frames is not self._frames:
            self._frames, self._landmarks = frames, self.model.landmarks(frames)
        return self._landmarks.copy()


class MetricSuite:
    """The metric networks and scorers, loaded once; ``video_stats`` measures one video (real or generated).

    Construction checks and loads the FID/FVD networks first (`MissingWeightsError` naming the file).
    """

    def __init__(self, *, fid_weights=None, fvd_weights=None, syncnet_weights=None, skip=(), device: str | None = None,
                 oracle_weights=None):
        import torch

        self.skip = normalise_skip(skip)
        check_feature_weights(fid_weights, fvd_weights, self.skip)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.fid_net = self.fvd_net = self.sync = self.iqa = self.landmarks = None
        if "fid" not in self.skip:
            from fada.metrics.inception import load_fid_inception

            self.fid_net = load_fid_inception(fid_weights, device=self.device)
        if "fvd" not in self.skip:
            from fada.metrics.video_features import load_r3d18

            self.fvd_net = load_r3d18(fvd_weights, device=self.device)
        if any(name not in self.skip for name in ("sync", "iqa", "expression")):
            from filters.clip_data import LandmarkModel

            self.landmarks = _SharedLandmarks(LandmarkModel())
        if "sync" not in self.skip:
            from fada.metrics.sync_metric import SyncMetric

            self.sync = SyncMetric(None if syncnet_weights is None else str(syncnet_weights), device=self.device,
                                   landmark_model=self.landmarks)
        if "iqa" not in self.skip:
            from fada.metrics.image_quality_metric import ImageQualityMetric

            self.iqa = ImageQualityMetric(landmark_model=self.landmarks)
        self.oracle = None  # oracle lip sync: generator speakers only (fada.metrics.oracle_sync)
        if oracle_weights is not None:
            from fada.metrics.oracle_sync import OracleSync

            self.oracle = OracleSync.from_file(oracle_weights)
        from fada.metrics import inception, video_features

        self.config = {
            "skipped": list(self.skip),
            "device": str(self.device),
            "fid_weights": None if fid_weights is None or "fid" in self.skip else str(fid_weights),
            "fid_network": f"FID Inception-v3 pool3 ({inception.WEIGHTS_FILE})",
            "fvd_weights": None if fvd_weights is None or "fvd" in self.skip else str(fvd_weights),
            "fvd_network": f"R3D-18 pooled features ({video_features.WEIGHTS_FILE}), {video_features.CLIP_LEN}-frame clips",
            "syncnet_weights": None if syncnet_weights is None else str(syncnet_weights),
            "sync_scorer": None if self.sync is None else self.sync.scorer.name,
            "expression": "face-mesh expression features (fada.metrics.expression)",
            "iqa": "filters.image_quality.ImageQualityScorer",
            "oracle_weights": None if oracle_weights is None else str(oracle_weights),
        }

    def video_stats(self, frames: np.ndarray, audio: np.ndarray) -> dict:
        """Per-video features and scores: ``fid`` (T, 2048) float32, ``fvd`` (512,), ``expression`` (M, 8) of
        frames with a face and ``expression_skipped``, ``iqa``/``sync`` dicts or ``*_error`` strings."""
        from fada.metrics.expression import expression_features

        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        stats: dict = {"frames": len(frames)}
        if self.fid_net is not None:
            from fada.metrics.inception import inception_features

            stats["fid"] = inception_features(self.fid_net, frames).astype(np.float32)
        if self.fvd_net is not None:
            from fada.metrics.video_features import video_features

            stats["fvd"] = video_features(self.fvd_net, [frames])[0]
        if "expression" not in self.skip:
            features = expression_features(self.landmarks.landmarks(frames))
            has_face = ~np.isnan(features).any(axis=1)
            stats["expression"], stats["expression_skipped"] = features[has_face], int((~has_face).sum())
        if self.iqa is not None:
            try:
                stats["iqa"] = self.iqa.score(frames)
            except ValueError as error:
                stats["iqa_error"] = str(error)
        if self.sync is not None:
            try:
                stats["sync"] = self.sync.score(frames, np.asarray(audio, np.float32))
            except ValueError as error:
                stats["sync_error"] = str(error)
        if self.oracle is not None:
            stats["oracle"] = self.oracle.score_or_reason(frames, audio)
        return stats


SYNC_KEYS = ("sync_c", "sync_d", "sync_c_at_0", "sync_d_at_0", "sync_offset")


def clip_scores(stats: dict) -> dict:
    """The JSON-able per-video scores of ``video_stats`` output (features left out)."""
    out: dict = {}
    if "iqa" in stats:
        out.update({name: value for name, value in stats["iqa"].items()})
    elif "iqa_error" in stats:
        out["iqa_error"] = stats["iqa_error"]
    if "sync" in stats:
        out.update(stats["sync"])
    elif "sync_error" in stats:
        out["sync_error"] = stats["sync_error"]
    if "expression" in stats:
        out["expression_frames"], out["expression_skipped"] = len(stats["expression"]), stats["expression_skipped"]
    out.update(stats.get("oracle", {}))
    return out


def _first_error(keys: list[str], stats: list[dict], name: str) -> str:
    for key, item in zip(keys, stats):
        if f"{name}_error" in item:
            return f"{key}: {item[f'{name}_error']}"
    return "no score"


def quality_metrics(keys: list[str], stats: list[dict], skip: tuple[str, ...]) -> tuple[dict, dict, dict]:
    """(metrics, not_computed, unavailable) of the per-video scores: IQA and sync means."""
    metrics, not_computed, unavailable = {}, {}, {}
    if "iqa" in skip:
        metrics["iqa"], not_computed["iqa"] = None, "skipped"
    else:
        values = [item["iqa"]["iqa"] for item in stats if "iqa" in item and math.isfinite(item["iqa"]["iqa"])]
        metrics["iqa"], metrics["iqa_videos"] = (float(np.mean(values)) if values else None), len(values)
        if not values:
            errors = any("iqa_error" in item for item in stats)
            unavailable["iqa"] = ("no video could be scored: " + _first_error(keys, stats, "iqa") if errors
                                  else "the face detector found no face in any video")
    if "sync" in skip:
        metrics.update({name: None for name in SYNC_KEYS})
        not_computed["sync"] = "skipped"
    else:
        scored = [item["sync"] for item in stats if "sync" in item]
        for name in SYNC_KEYS:
            metrics[name] = float(np.mean([s[name] for s in scored])) if scored else None
        metrics["sync_videos"] = len(scored)
        if scored:
            metrics["sync_scorer"] = scored[0]["sync_scorer"]
        else:
            unavailable["sync"] = f"no video could be scored ({_first_error(keys, stats, 'sync')})"
    from fada.metrics.oracle_sync import mean_oracle_scores

    metrics.update(mean_oracle_scores([item.get("oracle", {}) for item in stats]))
    return metrics, not_computed, unavailable


def distribution_metrics(real: list[dict], generated: list[dict], skip: tuple[str, ...]) -> tuple[dict, dict, dict]:
    """(metrics, not_computed, unavailable): FID, FVD and expression distance of generated vs real videos."""
    from fada.metrics.expression import EXPRESSION_FEATURES
    from fada.metrics.fid import fid_from_features
    from fada.metrics.frechet import frechet_distance, gaussian_stats

    metrics, not_computed, unavailable = {}, {}, {}
    if "fid" in skip:
        metrics["fid"], not_computed["fid"] = None, "skipped"
    else:
        real_features, fake_features = np.concatenate([s["fid"] for s in real]), np.concatenate([s["fid"] for s in generated])
        metrics["fid_frames"] = {"real": len(real_features), "generated": len(fake_features)}
        if min(len(real_features), len(fake_features)) < 2:
            metrics["fid"], unavailable["fid"] = None, "FID needs at least 2 frames per side"
        else:
            metrics["fid"] = fid_from_features(real_features, fake_features)
    if "fvd" in skip:
        metrics["fvd"], not_computed["fvd"] = None, "skipped"
    else:
        metrics["fvd_videos"] = {"real": len(real), "generated": len(generated)}
        if min(len(real), len(generated)) < 2:
            metrics["fvd"], unavailable["fvd"] = None, f"FVD needs at least 2 videos per side, got {len(generated)}"
        else:
            metrics["fvd"] = fid_from_features(np.stack([s["fvd"] for s in real]), np.stack([s["fvd"] for s in generated]))
    if "expression" in skip:
        metrics["expression_fd"], not_computed["expression"] = None, "skipped"
    else:
        sets = {name: np.concatenate([s["expression"] for s in group])
                for name, group in (("real", real), ("generated", generated))}
        metrics["expression_frames"] = {
            **{name: len(features) for name, features in sets.items()},
            **{f"{name}_skipped": sum(s["expression_skipped"] for s in group)
               for name, group in (("real", real), ("generated", generated))},
        }
        short = [name for name, features in sets.items() if len(features) <= len(EXPRESSION_FEATURES)]
        if short:
            metrics["expression_fd"] = None
            unavailable["expression"] = (f"the {' and '.join(short)} set(s) have too few frames with a face "
                                         f"(need more than {len(EXPRESSION_FEATURES)}): {metrics['expression_frames']}")
        else:
            metrics["expression_fd"] = float(frechet_distance(*gaussian_stats(sets["generated"]), *gaussian_stats(sets["real"])))
    return metrics, not_computed, unavailable


def reference_stats(clips: list[Clip], suite: MetricSuite, progress: bool = True) -> list[dict]:
    """``suite.video_stats`` of every real clip (computed once, shared by all runs)."""
    from tqdm.auto import tqdm

    return [suite.video_stats(frames, audio)
            for _key, frames, audio in tqdm(clips, desc="measure real clips", disable=not progress)]


def reference_row(clips: list[Clip], stats: list[dict], skip: tuple[str, ...]) -> dict:
    keys = [key for key, _, _ in clips]
    metrics, not_computed, unavailable = quality_metrics(keys, stats, skip)
    metrics["frames"] = int(sum(len(frames) for _, frames, _ in clips))
    return {"name": "real test clips", "metrics": metrics, "not_computed": not_computed, "unavailable": unavailable,
            "per_clip": [{"key": key, "frames": int(len(frames)), **clip_scores(item)}
                         for (key, frames, _), item in zip(clips, stats)]}


# --- runs ---------------------------------------------------------------------------------------------------


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "run"


def checkpoint_info(ckpt: str | os.PathLike, mode: str) -> dict:
    """Resolved path and lineage of a run's checkpoint; ValueError when ``mode`` does not fit it."""
    from fada.checkpoint import META_FILE, resolve_checkpoint
    from fada.pipeline import check_mode

    directory = resolve_checkpoint(ckpt)
    meta = json.loads((directory / META_FILE).read_text())
    check_mode(meta, mode, ckpt)
    base = directory.parent.name if directory.name == "final" else directory.name
    return {
        "checkpoint": str(directory.resolve()),
        "default_name": safe_name(f"{base}-{mode}"),
        "kind": meta.get("kind"),
        "step": meta.get("step"),
        "trained_on": {"data_dir": meta.get("data_dir"), "view": meta.get("view")},
        "teacher": meta.get("teacher"),
    }


def _portrait(frame: np.ndarray, size: int) -> np.ndarray:
    """The clip's first frame (a face crop) at the pipeline's input size."""
    if frame.shape[0] == size and frame.shape[1] == size:
        return np.ascontiguousarray(frame)
    import cv2

    shrinking = size < min(frame.shape[:2])
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def _clip_size(frames: np.ndarray, key: str) -> int:
    height, width = frames.shape[1:3]
    if height != width:
        raise ValueError(f"test clip {key} is {width}×{height}: clips are square face crops; pass output_size")
    return int(height)


def _warm_up(pipe, clip: Clip) -> None:
    """One pipeline clip of the first test clip, discarded, so lazy initialisation is not timed."""
    from fada.media import ArrayAudioStream

    key, frames, audio = clip
    size = pipe.output_size
    stream = ArrayAudioStream(audio[: pipe.clip_frames * SAMPLES_PER_FRAME], name=f"{key} (warm-up)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in pipe.frames(_portrait(frames[0], max(pipe.codec.size, size)), stream, seed=0):
            pass
    pipe.nfe.reset()


def evaluate_run(ckpt: str | os.PathLike, mode: str, clips: list[Clip], out_dir: str | os.PathLike, *, seed: int = 0,
                 device: str | None = None, output_size: int | None = None, fid_weights=None, fvd_weights=None,
                 syncnet_weights=None, skip=(), suite: MetricSuite | None = None, reference: list[dict] | None = None,
                 run_name: str | None = None, warmup: bool = False, progress: bool = True) -> dict:
    """Generate every clip with ``ckpt`` in ``mode`` and measure the videos against the clips (module docstring).

    Videos go to ``out_dir/videos/<run_name>/<key>.mp4`` (``run_name`` defaults to "<checkpoint>-<mode>").
    ``output_size`` defaults to each clip's own size. ``suite`` (a `MetricSuite`) and ``reference`` (the real
    clips' ``reference_stats``) are built here when not given, from the weights and ``skip`` arguments.
    Returns the run's entry of the report: lineage, ``metrics``, ``not_computed``, ``unavailable``, ``per_clip``.
    """
    from tqdm.auto import tqdm

    from fada.media import ArrayAudioStream
    from fada.pipeline import FadaPipeline

    if not clips:
        raise ValueError("no test clips to evaluate")
    suite = suite or MetricSuite(fid_weights=fid_weights, fvd_weights=fvd_weights, syncnet_weights=syncnet_weights,
                                 skip=skip, device=device)
    info = checkpoint_info(ckpt, mode)
    default_name = info.pop("default_name")
    name = safe_name(run_name) if run_name else default_name
    if reference is None:
        reference = reference_stats(clips, suite, progress)
    out_dir = Path(out_dir)
    videos_dir = out_dir / "videos" / name
    pipe = FadaPipeline.from_checkpoint(info["checkpoint"], mode, device=device)
    if warmup:
        pipe.output_size = output_size or _clip_size(clips[0][1], clips[0][0])
        _warm_up(pipe, clips[0])
    per_clip, generated_stats = [], []
    total_seconds, total_frames, total_nfe, total_pipeline_clips = 0.0, 0, 0, 0
    for key, frames, audio in tqdm(clips, desc=f"evaluate {name}", disable=not progress):
        size = output_size or _clip_size(frames, key)
        pipe.output_size = size
        stream = ArrayAudioStream(audio, name=key)
        portrait = _portrait(frames[0], max(pipe.codec.size, size))
        path = videos_dir / f"{key}.mp4"
        video = []
        result = pipe.write_video(portrait, stream, path, seed=clip_seed(seed, key), keep_frames=video)
        seconds = result.timings["frames"]
        video = np.stack(video)
        pipeline_clips = result.clips
        stats = suite.video_stats(video, audio[: len(video) * SAMPLES_PER_FRAME])
        generated_stats.append(stats)
        total_seconds, total_frames = total_seconds + seconds, total_frames + len(video)
        total_nfe, total_pipeline_clips = total_nfe + pipe.nfe.total, total_pipeline_clips + pipeline_clips
        per_clip.append({
            "key": key, "seed": clip_seed(seed, key), "frames": int(len(video)), "video": str(path.relative_to(out_dir)),
            "nfe_total": int(pipe.nfe.total), "nfe_d": pipe.nfe.total / pipeline_clips, "seconds": seconds,
            **clip_scores(stats),
        })
    keys = [key for key, _, _ in clips]
    metrics, not_computed, unavailable = quality_metrics(keys, generated_stats, suite.skip)
    distribution, skipped, missing = distribution_metrics(reference, generated_stats, suite.skip)
    metrics.update(distribution)
    not_computed.update(skipped)
    unavailable.update(missing)
    metrics.update({
        "nfe_d": total_nfe / total_pipeline_clips,
        "nfe_total": int(total_nfe),
        "clip_frames": int(pipe.clip_frames),
        "generation_seconds": total_seconds,
        "seconds_per_video_second": total_seconds / (total_frames / FPS),
        "frames_generated": int(total_frames),
        "videos": len(per_clip),
    })
    return {"name": name, "mode": mode, **info, "videos": str(videos_dir.relative_to(out_dir)),
            "output_size": output_size, "seed": seed, "metrics": metrics, "not_computed": not_computed,
            "unavailable": unavailable, "per_clip": per_clip}


# --- the whole evaluation -----------------------------------------------------------------------------------


def _unique_names(infos: list[dict]) -> list[str]:
    names, seen = [], {}
    for info in infos:
        base = info["default_name"]
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def write_report(report: dict, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``evaluation.json`` and ``evaluation.md`` into ``out_dir`` atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / REPORT_FILE, json_safe(report))
    atomic_write_bytes(out_dir / TABLE_FILE, format_table(report).encode())
    return out_dir / REPORT_FILE, out_dir / TABLE_FILE


def evaluate(data_dir: str | os.PathLike, runs: list[tuple[str, str]], out_dir: str | os.PathLike, *, view: str = "test",
             fid_weights=None, fvd_weights=None, syncnet_weights=None, skip=(), max_clips: int | None = None,
             max_frames: int | None = None, seed: int = 0, device: str | None = None, output_size: int | None = None,
             warmup: bool = True, progress: bool = True, oracle_weights=None) -> dict:
    """Evaluate each (checkpoint, mode) of ``runs`` on ``view``'s clips; write and return the report.

    Before anything is generated: the skip names, the FID/FVD weights (`MissingWeightsError` naming the file
    unless skipped), every checkpoint and mode, and the metric networks are checked and loaded. ``warmup``
    runs one discarded pipeline clip per run before timing. See the module docstring for the metrics.
    """
    from shards.reader import load_view
    from shards.view_aliases import resolve_view_name

    view = resolve_view_name(data_dir, view)
    runs = [(str(ckpt), str(mode)) for ckpt, mode in runs]
    if not runs:
        raise ValueError("no runs to evaluate: give at least one (checkpoint, mode)")
    skip = normalise_skip(skip)
    check_feature_weights(fid_weights, fvd_weights, skip)
    infos = [checkpoint_info(ckpt, mode) for ckpt, mode in runs]
    names = _unique_names(infos)
    suite = MetricSuite(fid_weights=fid_weights, fvd_weights=fvd_weights, syncnet_weights=syncnet_weights, skip=skip,
                        device=device, oracle_weights=oracle_weights)
    spec = load_view(data_dir, view)
    clips = read_test_clips(data_dir, view, max_clips=max_clips, max_frames=max_frames)
    if not clips:
        raise ValueError(f"view {view!r} of {data_dir} has no readable clips to evaluate")
    reference = reference_stats(clips, suite, progress)
    data_dir_resolved = str(Path(data_dir).resolve())
    report = {
        "format": REPORT_FORMAT,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "complete": False,
        "data_dir": data_dir_resolved,
        "view": view,
        "view_is_test_split": "split" in spec,
        "clips_in_view": sum(len(keys or []) for keys in spec["shards"].values()),
        "clips": [key for key, _, _ in clips],
        "frames": int(sum(len(frames) for _, frames, _ in clips)),
        "max_clips": max_clips,
        "max_frames": max_frames,
        "seed": seed,
        "seeds": "per clip: clip_seed(seed, key), the same for every run",
        "metric_config": suite.config,
        "reference": reference_row(clips, reference, suite.skip),
        "runs": [],
    }
    for (ckpt, mode), info, name in zip(runs, infos, names):
        run = evaluate_run(ckpt, mode, clips, out_dir, seed=seed, device=device, output_size=output_size, suite=suite,
                           reference=reference, run_name=name, warmup=warmup, progress=progress)
        trained = info["trained_on"]
        if trained.get("view") == view and trained.get("data_dir") and \
                str(Path(trained["data_dir"]).resolve()) == data_dir_resolved:
            run["notes"] = [f"trained on the evaluated view {view!r}: not a held-out evaluation"]
        report["runs"].append(run)
        write_report(report, out_dir)
    report["complete"] = True
    write_report(report, out_dir)
    return json_safe(report)


# --- the table ----------------------------------------------------------------------------------------------

COLUMNS = (  # (header, metrics key, skip name, format)
    ("IQA↑", "iqa", "iqa", "{:.3f}"),
    ("Sync-C↑", "sync_c", "sync", "{:.3f}"),
    ("Sync-D↓", "sync_d", "sync", "{:.3f}"),
    ("FID↓", "fid", "fid", "{:.2f}"),
    ("FVD↓", "fvd", "fvd", "{:.2f}"),
    ("E-FD↓", "expression_fd", "expression", "{:.4f}"),
    ("Oracle sync↑", "oracle_sync", None, "{:.3f}"),  # with oracle_weights only (generator speakers)
    ("NFE-D", "nfe_d", None, "{:g}"),
    ("s per video-s", "seconds_per_video_second", None, "{:.2f}"),
)
REFERENCE_COLUMNS = {"iqa", "sync_c", "sync_d", "oracle_sync"}  # meaningful for the real clips themselves
OPTIONAL_COLUMNS = {"oracle_sync": "oracle_weights"}  # shown only when this metric_config entry is set


def _cell(row: dict, key: str, skip_name: str | None, fmt: str, reference: bool) -> str:
    if reference and key not in REFERENCE_COLUMNS:
        return "—"
    if skip_name and skip_name in row.get("not_computed", {}):
        return NOT_COMPUTED
    value = row.get("metrics", {}).get(key)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return UNAVAILABLE
    return fmt.format(value)


def _label(run: dict) -> str:
    step = f", step {run['step']}" if run.get("step") is not None else ""
    return f"{run['name']} ({run.get('kind') or 'checkpoint'}{step})"


def table_rows(report: dict) -> list[dict]:
    """The table as rows of strings (``Method``, ``Mode``, then the metric columns): the reference row of the
    real clips first, then one row per run; for a Prefect table artifact."""
    rows = []
    entries = [(report["reference"], True)] + [(run, False) for run in report.get("runs", [])]
    for row, reference in entries:
        cells = {"Method": "Real test clips" if reference else _label(row), "Mode": "—" if reference else row["mode"]}
        for header, key, skip_name, fmt in COLUMNS:
            if key in OPTIONAL_COLUMNS and not report.get("metric_config", {}).get(OPTIONAL_COLUMNS[key]):
                continue
            cells[header] = _cell(row, key, skip_name, fmt, reference)
        rows.append(cells)
    return rows


def format_table(report: dict) -> str:
    """A markdown Table-1-like comparison of the report's runs, with notes on what the numbers mean."""
    rows = table_rows(report)
    headers = list(rows[0])
    lines = [f"## Evaluation on view `{report['view']}`", "",
             "| " + " | ".join(headers) + " |",
             "|" + "|".join(":---" if i < 2 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(row[h].replace("|", "\\|") for h in headers) + " |" for row in rows]
    config = report.get("metric_config", {})
    notes = [
        f"{len(report['clips'])} of the view's {report.get('clips_in_view', len(report['clips']))} clips, "
        f"{report['frames']} frames; each generated from its first frame and its own audio with a per-clip seed "
        f"(base seed {report['seed']}) shared by every run"
        + ("" if report.get("view_is_test_split") else "; the view is not a held-out test split") + ".",
    ]
    if config.get("sync_scorer"):
        notes.append(f"Sync-C / Sync-D: scorer `{config['sync_scorer']}` at the best audio shift in ±15 frames "
                     "(the values at shift 0 are in evaluation.json); scores of different scorers are not comparable.")
    if config.get("fid_weights"):
        notes.append(f"FID: {config['fid_network']} from `{config['fid_weights']}`, over all frames.")
    if config.get("fvd_weights"):
        notes.append(f"FVD: {config['fvd_network']} from `{config['fvd_weights']}`; comparable only with FVDs of "
                     "this module, not published I3D FVD.")
    notes.append("IQA: the ingestion filters' image-quality score; E-FD: Fréchet distance of face-mesh expression "
                 "features (not the published Q-Align / E-FID). NFE-D: denoising-net evaluations per generated clip; "
                 "s per video-s: generation wall-clock per second of video.")
    skipped = [name.upper() if name in ("fid", "fvd") else name for name in config.get("skipped", [])]
    if skipped:
        notes.append(f"{NOT_COMPUTED}: {', '.join(skipped)} (skipped explicitly).")
    for row, label in [(report["reference"], "real test clips")] + [(run, run["name"]) for run in report.get("runs", [])]:
        for metric, reason in row.get("unavailable", {}).items():
            notes.append(f"{UNAVAILABLE} ({label}, {metric}): {reason}")
        for note in row.get("notes", []):
            notes.append(f"{label}: {note}")
    if not report.get("complete", True):
        notes.append("Incomplete: the evaluation is still running or was interrupted.")
    lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


# --- command line helpers ---------------------------------------------------------------------------------


def pair_runs(ckpts: list[str], modes: list[str] | None) -> list[tuple[str, str]]:
    """(checkpoint, mode) pairs from repeated ``--ckpt`` and ``--mode`` values (modes may be comma-separated):
    one mode for every checkpoint, one mode per checkpoint in order, or several modes for one checkpoint;
    no mode means teacher."""
    modes = [m.strip() for value in (modes or ["teacher"]) for m in value.split(",") if m.strip()] or ["teacher"]
    if len(modes) == len(ckpts):
        return list(zip(ckpts, modes))
    if len(modes) == 1:
        return [(ckpt, modes[0]) for ckpt in ckpts]
    if len(ckpts) == 1:
        return [(ckpts[0], mode) for mode in modes]
    raise ValueError(f"{len(ckpts)} --ckpt and {len(modes)} --mode values: give one mode, one per checkpoint, "
                     "or several modes for one checkpoint")
