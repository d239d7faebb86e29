"""Deterministic synthetic talking-head videos with known ground truth.

The face is scikit-image's astronaut portrait (`skimage.data.astronaut()`, 512×512 RGB). Each frame
composites her head and shoulders (cut out of the photo's own backdrop) onto a procedural backdrop; the
jaw below the lips is warped down by the speech envelope of `filters.synthetic_speech`, and the gap is
painted as a dark mouth interior. Everything is a function of `SpeakerSpec`: the same spec gives the
same pixels, audio and `SpeakerTruth`.

Ground-truth conventions (all per video frame, frame f shown at time f / fps):

* Face boxes are ``x0, y0, x1, y1`` in output-frame pixels in the convention of mediapipe face
  detection's ``relative_bounding_box`` times the frame size (pixel edges: 0 is the left edge of the first
  pixel), calibrated with the short-range model (``model_selection=0``). They may extend past the frame.
  Rows are NaN where that face is absent.
* ``audio_offset_frames`` > 0 means the audio is late: the sound that belongs to mouth frame f is heard
  at frame f + offset. Negative means early.
* ``scene_cut_frame`` is the first frame of the new shot; frames before it belong to the first shot.
* ``camera_shift`` is the whole-frame translation (dx, dy) in pixels applied to the scene at frame f.
* ``mouth_open`` is the jaw opening in 0..1 (1 = MOUTH_MAX_OPEN_PX in the photo's pixels), NaN in
  ``no_face`` videos (whose audio is a voice-over). It does not depend on the audio offset or on whether
  the audio is in the file or in a sidecar.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from filters import synthetic_speech as speech

# --- Calibration on skimage.data.astronaut() --------------------------------------------------------
# Obtained once with mediapipe 0.10.21 (generation never runs mediapipe). Face box: mp.solutions.
# face_detection (model_selection=0) run on frames of this module showing the unwarped photo (mouth shut,
# no sway) with the face at 30–50 % of 640×480, 320×256 and 480×480 frames, relative_bounding_box mapped
# back to photo pixels and averaged (spread ~1 px). On the bare 512×512 photo, where the face is only 19 %
# of the image, the detector gives a 7 % smaller box, [177.6, 82.9, 272.9, 178.2]; framed as here, it
# agrees with FACE_BOX_SRC to IoU ≥ 0.8 in every frame we checked. The detector's box also grows as the
# jaw drops, by FACE_BOX_GROWTH_OPEN at mouth_open = 1 (a least-squares fit over openings 0..1).
FACE_BOX_SRC = np.array([174.9, 75.2, 276.9, 177.2])
FACE_BOX_GROWTH_OPEN = np.array([-3.8, -2.3, 4.1, 5.6])
# Lip points from mp.solutions.face_mesh (static_image_mode, refine_landmarks): inner-lip corners are
# landmarks 78 and 308; the lips part between upper-inner 13 (223.5, 143.2) and lower-inner 14 (223.0,
# 150.1), whose midpoint is LIP_PARTING_CENTRE; 152 is the chin.
LIP_CORNER_LEFT = (203.3, 139.9)
LIP_CORNER_RIGHT = (243.4, 141.5)
LIP_PARTING_CENTRE = (223.2, 146.7)
CHIN = (221.3, 177.4)
# Chosen by eye, not measured. The person is the photo minus its own backdrop (bright and grey in HSV,
# connected to PHOTO_BACKDROP_SEED), inside PERSON_OUTLINE or the helmet she holds (HELMET_DISC), which
# leaves out the flag on the left and the shuttle model and table on the right.
PHOTO_BACKDROP_MAX_SATURATION, PHOTO_BACKDROP_MIN_VALUE = 60, 120
PHOTO_BACKDROP_SEED = (60, 120)  # row, column
PERSON_OUTLINE = np.array([(100, 0), (362, 0), (362, 512), (20, 512), (24, 420), (36, 320), (47, 272),
                           (54, 256), (71, 236), (94, 222), (114, 207)])
HELMET_DISC = ((400, 470), 126)  # centre (x, y), radius
# `no_face` shows only the body below the neck ring, with the badges on the chest painted over (at score
# 0.5, mediapipe's short-range detector now and then fires on the ring, the mission patch and the name tag).
TORSO_TOP_Y = 305.0
MISSION_PATCH = ((171, 386), 42)  # centre (x, y), radius
NAME_TAG = ((276, 337), (331, 378))  # corners (x, y)
MASK_SOFTNESS_PX = 1.5
NECK_PIVOT = (224.0, 215.0)  # the head sways about this point

MOUTH_MAX_OPEN_PX = 12.0  # jaw drop at mouth_open = 1, in the photo's pixels (mouth is ~43 px wide)
MOUTH_ROI = (slice(128, 222), slice(176, 272))  # rows, columns of the photo the jaw warp touches
JAW_HALF_WIDTH_PX = 34.0
LOWER_LIP_DEPTH_PX = 14.0  # below the parting line the gap's lens shape blends into the jaw's
JAW_FADE_BELOW_CHIN_PX = (4.0, 30.0)  # the warp fades out between these distances below the chin
MOUTH_DARK_RGB, MOUTH_LIGHT_RGB = (35, 10, 14), (100, 38, 44)  # top and bottom of the mouth interior

# Backdrop structures larger than a tenth of the frame height are left out: plain 1/f noise forms dark
# blob pairs that mediapipe's short-range detector takes for faces (11 of 200 backdrops at score > 0.5).
BACKDROP_CUTOFF_CYCLES_PER_HEIGHT = 10.0
BACKDROP_LEVELS = (80.0, 170.0)  # range of the backdrop's mean grey
BACKDROP_CUT_STEP = 50.0

HEAD_SWAY_SHARE = 0.04  # translation amplitude as a share of the face box height
HEAD_ROLL_DEG = 3.0
SWAY_HZ, SHAKE_HZ = (0.1, 0.5), (1.0, 4.0)
SCROLL_PX_PER_FRAME = (1.2, 2.4)


@dataclass(frozen=True)
class SpeakerSpec:
    """What to render. See the module docstring for the sign of `audio_offset_frames`."""

    seed: int = 0
    duration_s: float = 6.0
    fps: float = 25.0
    width: int = 640
    height: int = 480
    audio_rate: int = 44100
    audio_channels: int = 2
    with_audio: bool = True  # False: a video-only file (render_sidecar_audio writes the audio apart)
    audio_offset_frames: int = 0  # > 0: the audio is late by this many frames
    blur_sigma: float = 0.0  # Gaussian blur of the whole frame, in pixels
    noise_std: float = 0.0  # pixel noise std in 0..255 units
    camera_shake_px: float = 0.0  # amplitude of a smooth random whole-frame translation
    moving_background: bool = False  # the backdrop scrolls
    frozen_head: bool = False  # no head sway (the mouth still moves)
    second_face: bool = False  # a mirrored, smaller copy of the speaker, listening, in every frame
    no_face: bool = False  # backdrop and torso only
    scene_cut_frame: int | None = None  # first frame of a second shot: new backdrop, face placement and size
    face_scale: float = 0.4  # face box height / frame height before a scene cut (0.8× after); keep it
    # within 0.35..0.5: mediapipe's short-range detector gets unsteady below 0.3 of the frame
    silent: bool = False  # audio is near silence and the mouth stays closed

    @property
    def n_frames(self) -> int:
        return round(self.duration_s * self.fps)

    def __post_init__(self):
        if self.n_frames < 1:
            raise ValueError("duration_s × fps must give at least one frame")
        if self.width % 2 or self.height % 2:
            raise ValueError("yuv420p needs an even width and height")
        if self.audio_channels not in (1, 2):
            raise ValueError("audio_channels must be 1 or 2")
        if self.no_face and self.second_face:
            raise ValueError("no_face and second_face exclude each other")
        if self.scene_cut_frame is not None and not 0 < self.scene_cut_frame < self.n_frames:
            raise ValueError(f"scene_cut_frame must lie in 1..{self.n_frames - 1}")


@dataclass
class SpeakerTruth:
    """Per-frame ground truth of a rendered speaker; conventions in the module docstring."""

    spec: SpeakerSpec
    n_frames: int
    fps: float
    face_boxes: np.ndarray  # (n_frames, 4)
    second_face_boxes: np.ndarray | None  # (n_frames, 4), only with spec.second_face
    mouth_open: np.ndarray  # (n_frames,)
    head_roll_deg: np.ndarray  # (n_frames,) in-plane rotation of the main head, clockwise on screen
    camera_shift: np.ndarray  # (n_frames, 2)
    audio_offset_frames: int
    scene_cut_frame: int | None

    def to_json(self, path) -> None:
        """Write as JSON (arrays as nested lists, NaN as null), atomically."""
        record = {name: _jsonable(value) for name, value in vars(self).items()}
        record["spec"] = asdict(self.spec)
        with _atomic_target(path) as tmp:
            tmp.write_text(json.dumps(record))

    @classmethod
    def from_json(cls, path) -> SpeakerTruth:
        record = json.loads(Path(path).read_text())
        record["spec"] = SpeakerSpec(**record["spec"])
        for name in ("face_boxes", "second_face_boxes", "mouth_open", "head_roll_deg", "camera_shift"):
            if record[name] is not None:
                record[name] = np.array(record[name], dtype=float)
        return cls(**record)


def _jsonable(value):
    if isinstance(value, np.ndarray):
        as_objects = value.astype(object)
        as_objects[np.isnan(value)] = None
        return as_objects.tolist()
    return value


@contextmanager
def _atomic_target(path):
    """Yield a temporary path beside `path`; it replaces `path` only if the block completes."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --- Audio ------------------------------------------------------------------------------------------


def _speech_window(spec: SpeakerSpec, rate: int, start_s: float, n_samples: int):
    """(signal, envelope) of the spec's speech over [start_s, start_s + n_samples / rate).

    Speech starts at mouth time 0, so a late track (start_s < 0) begins with extra silence.
    """
    end_s = max(spec.duration_s, start_s + n_samples / rate)
    plan = speech.plan_syllables(spec.seed, 0.0, end_s)
    return speech.render_speech(plan, rate, start_s, n_samples, spec.seed, voiced=not spec.silent)


def _audio_track(spec: SpeakerSpec, rate: int, duration_s: float) -> np.ndarray:
    """The audio as heard, shape (n_samples,): speech delayed by audio_offset_frames."""
    signal, _ = _speech_window(spec, rate, -spec.audio_offset_frames / spec.fps, round(duration_s * rate))
    return signal


def _mouth_track(spec: SpeakerSpec) -> np.ndarray:
    n_samples = round(spec.n_frames * spec.audio_rate / spec.fps)
    _, envelope = _speech_window(spec, spec.audio_rate, 0.0, n_samples)
    return speech.mouth_opening(envelope, spec.audio_rate, spec.fps, spec.n_frames)


def render_sidecar_audio(spec: SpeakerSpec, path, rate: int = 48000, channels: int = 2,
                         duration_s: float | None = None) -> None:
    """Write the spec's audio track (offset included) alone as a 16-bit WAV at `rate`, `duration_s` long
    (default: the video's), for use as a sidecar of a video rendered with `with_audio=False`."""
    import soundfile

    samples = _audio_track(spec, rate, spec.duration_s if duration_s is None else duration_s)
    with _atomic_target(path) as tmp:
        soundfile.write(tmp, np.repeat(samples[:, None], channels, axis=1), rate,
                        subtype="PCM_16", format="WAV")


# --- Motion -----------------------------------------------------------------------------------------


def _wander(rng: np.random.Generator, n_frames: int, fps: float, band_hz, n_dims: int) -> np.ndarray:
    """Smooth random path (n_frames, n_dims): three sinusoids per dimension, peak |value| = 1."""
    t = np.arange(n_frames)[:, None, None] / fps
    freqs = rng.uniform(*band_hz, size=(1, 3, n_dims))
    phases = rng.uniform(0, 2 * np.pi, size=(1, 3, n_dims))
    weights = rng.uniform(0.5, 1.0, size=(1, 3, n_dims))
    path = np.sum(weights * np.sin(2 * np.pi * freqs * t + phases), axis=1)
    return path / np.maximum(np.abs(path).max(axis=0), 1e-9)


@dataclass(frozen=True)
class _Motion:
    head_shift: np.ndarray  # (n, 2) px, before the camera shift
    head_roll_deg: np.ndarray  # (n,)
    listener_shift: np.ndarray
    listener_roll_deg: np.ndarray
    camera_shift: np.ndarray  # (n, 2) px
    backdrop_shift: np.ndarray  # (n, 2) px of scrolling, before the camera shift


def _motion(spec: SpeakerSpec) -> _Motion:
    n, fps = spec.n_frames, spec.fps
    sway_px = 0.0 if spec.frozen_head else HEAD_SWAY_SHARE * spec.face_scale * spec.height
    roll_deg = 0.0 if spec.frozen_head else HEAD_ROLL_DEG
    head, listener = (_wander(np.random.default_rng([spec.seed, 20 + i]), n, fps, SWAY_HZ, 3)
                      for i in range(2))
    rng = np.random.default_rng([spec.seed, 22])
    velocity = rng.uniform(*SCROLL_PX_PER_FRAME, size=2) * rng.choice([-1, 1], size=2)
    scroll = np.arange(n)[:, None] * velocity if spec.moving_background else np.zeros((n, 2))
    shake = _wander(np.random.default_rng([spec.seed, 23]), n, fps, SHAKE_HZ, 2) * spec.camera_shake_px
    return _Motion(head[:, :2] * sway_px, head[:, 2] * roll_deg, listener[:, :2] * sway_px,
                   listener[:, 2] * roll_deg, shake, scroll)


# --- Pixels -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Placement:
    """Where a face sits at rest: its box centre as a share of the frame, relative scale, mirroring."""

    centre: tuple[float, float]
    relative_scale: float
    mirrored: bool = False


# (main, listener) placements for the shots before and after a cut. "torso" (no_face) puts the hidden face
# above the frame so that the chest fills it.
_LAYOUTS = {
    ("alone", 0): (_Placement((0.50, 0.47), 1.0), None),
    ("alone", 1): (_Placement((0.62, 0.52), 0.8), None),
    ("pair", 0): (_Placement((0.32, 0.47), 1.0), _Placement((0.75, 0.42), 0.85, mirrored=True)),
    ("pair", 1): (_Placement((0.68, 0.52), 0.8), _Placement((0.26, 0.46), 0.8, mirrored=True)),
    ("torso", 0): (_Placement((0.50, -0.51), 1.0), None),
    ("torso", 1): (_Placement((0.40, -0.60), 1.2), None),
}


def _person_matrix(spec: SpeakerSpec, placement: _Placement, shift, roll_deg: float) -> np.ndarray:
    """2×3 affine from photo pixels to frame pixels (both pixel-centre coordinates).

    The face box centre lands on the placement centre plus `shift`; the head rolls about NECK_PIVOT.
    """
    scale = spec.face_scale * spec.height / (FACE_BOX_SRC[3] - FACE_BOX_SRC[1]) * placement.relative_scale
    linear = cv2.getRotationMatrix2D((0, 0), -roll_deg, 1.0)[:, :2] @ np.diag(
        [-scale if placement.mirrored else scale, scale])
    face_centre_src = (FACE_BOX_SRC[:2] + FACE_BOX_SRC[2:]) / 2 - 0.5
    rest_centre = np.array(placement.centre) * (spec.width, spec.height) - 0.5
    pivot = np.array(NECK_PIVOT)
    pivot_out = rest_centre - linear @ (face_centre_src - pivot) + shift
    return np.hstack([linear, (pivot_out - linear @ pivot)[:, None]])


def _face_box(matrix: np.ndarray, opening: float) -> np.ndarray:
    """The calibrated face box moved by `matrix`: centre transformed, size scaled (roll ignored)."""
    box = FACE_BOX_SRC + opening * FACE_BOX_GROWTH_OPEN
    centre = matrix @ np.append((box[:2] + box[2:]) / 2 - 0.5, 1.0) + 0.5
    half = np.hypot(*matrix[:, :2].T) * (box[2:] - box[:2]) / 2
    return np.concatenate([centre - half, centre + half])


def _person_alpha(photo: np.ndarray, torso_only: bool) -> np.ndarray:
    """Soft mask (float32, 0..1) of the person in the photo, or of the torso below TORSO_TOP_Y alone."""
    hsv = cv2.cvtColor(photo, cv2.COLOR_RGB2HSV)
    backdrop_like = ((hsv[..., 1] < PHOTO_BACKDROP_MAX_SATURATION) &
                     (hsv[..., 2] > PHOTO_BACKDROP_MIN_VALUE)).astype(np.uint8)
    backdrop_like = cv2.morphologyEx(backdrop_like, cv2.MORPH_OPEN,
                                     cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    _, labels = cv2.connectedComponents(backdrop_like)
    person = np.zeros(photo.shape[:2], np.uint8)
    cv2.fillPoly(person, [PERSON_OUTLINE.astype(np.int32)], 1)
    cv2.circle(person, *HELMET_DISC, 1, thickness=-1)
    person[labels == labels[PHOTO_BACKDROP_SEED]] = 0
    if torso_only:
        person[: int(TORSO_TOP_Y)] = 0
    return cv2.GaussianBlur(person.astype(np.float32), (0, 0), MASK_SOFTNESS_PX)


def _without_badges(photo: np.ndarray) -> np.ndarray:
    badges = np.zeros(photo.shape[:2], np.uint8)
    cv2.circle(badges, *MISSION_PATCH, 1, thickness=-1)
    cv2.rectangle(badges, *NAME_TAG, 1, thickness=-1)
    return cv2.inpaint(photo, badges, 5, cv2.INPAINT_TELEA)


def _with_alpha(photo: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.dstack([photo, np.round(alpha * 255).astype(np.uint8)])


def _backdrop(rng: np.random.Generator, width: int, height: int, level: float) -> np.ndarray:
    """A mottled backdrop (uint8 RGB) of mean grey `level` that tiles seamlessly, so it can scroll with
    wrap-around.

    Band-passed noise: 1/f^1.5 above BACKDROP_CUTOFF_CYCLES_PER_HEIGHT, nothing much below it.
    """
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    radius = np.hypot(fx, fy)
    falloff = np.divide(1.0, radius**1.5, out=np.zeros_like(radius), where=radius > 0)
    falloff *= 1.0 - np.exp(-((radius * height / BACKDROP_CUTOFF_CYCLES_PER_HEIGHT) ** 2))
    layers = [np.fft.irfft2(np.fft.rfft2(rng.standard_normal((height, width))) * falloff, s=(height, width))
              for _ in range(3)]
    luma, warm, green = (layer / layer.std() for layer in layers)
    grain = rng.standard_normal((height, width))
    base = level + rng.uniform(-25, 25, size=3)
    rgb = base + (18 * luma + 4 * grain)[..., None] + 6 * np.stack([warm, green, -warm - green], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


class _MouthWarper:
    """Opens the photo's mouth: warps the jaw below the lip parting line down and fills the gap."""

    def __init__(self):
        rows, cols = MOUTH_ROI
        y, x = np.mgrid[rows, cols].astype(np.float32)
        self.x, self.y = x, y
        self.parting_y = _parabola_through(LIP_CORNER_LEFT, LIP_PARTING_CENTRE, LIP_CORNER_RIGHT)(x)
        half_width = (LIP_CORNER_RIGHT[0] - LIP_CORNER_LEFT[0]) / 2
        lens = np.clip(1 - ((x - LIP_PARTING_CENTRE[0]) / half_width) ** 2, 0, 1)
        jaw = np.cos(0.5 * np.pi * np.clip((x - LIP_PARTING_CENTRE[0]) / JAW_HALF_WIDTH_PX, -1, 1)) ** 2
        depth = y - self.parting_y
        blend = np.clip(depth / LOWER_LIP_DEPTH_PX, 0, 1)
        fade_start, fade_end = JAW_FADE_BELOW_CHIN_PX
        fade = 1 - _smoothstep((y - CHIN[1] - fade_start) / (fade_end - fade_start))
        self.lens = lens  # height profile of the gap along the lips, 1 at the centre, 0 at the corners
        # Downward shift per unit of drop: 0 above the parting line, the lens just below it, the jaw's
        # broader profile further down, back to 0 under the chin.
        profile = (1 - blend) * lens + blend * jaw
        self.displacement = np.where(depth >= 0, profile * fade, 0).astype(np.float32)

    def open(self, photo: np.ndarray, opening: float) -> np.ndarray:
        """A copy of `photo` (RGB or RGBA) with the jaw dropped by `opening` (0..1) × MOUTH_MAX_OPEN_PX."""
        out = photo.copy()
        if opening <= 0:
            return out
        drop = opening * MOUTH_MAX_OPEN_PX
        source_y = self.y - drop * self.displacement
        out[MOUTH_ROI] = cv2.remap(photo, self.x, source_y, cv2.INTER_LINEAR)
        gap = (np.clip(self.parting_y - source_y, 0, 1) * (self.y >= self.parting_y))[..., None]
        depth_share = np.clip((self.y - self.parting_y) / (drop * self.lens + 1e-3), 0, 1)[..., None]
        interior = (1 - depth_share) * MOUTH_DARK_RGB + depth_share * np.array(MOUTH_LIGHT_RGB)
        rgb = out[MOUTH_ROI][..., :3]
        out[MOUTH_ROI + (slice(0, 3),)] = (gap * interior + (1 - gap) * rgb).astype(np.uint8)
        return out


def _parabola_through(left, centre, right):
    coefficients = np.polyfit([left[0], centre[0], right[0]], [left[1], centre[1], right[1]], 2)
    return lambda x: np.polyval(coefficients, x).astype(np.float32)


def _smoothstep(u):
    u = np.clip(u, 0, 1)
    return u * u * (3 - 2 * u)


def _composite(background: np.ndarray, rgba: np.ndarray, matrix) -> np.ndarray:
    """`rgba` moved by `matrix` over `background` (uint8 RGB)."""
    layer = cv2.warpAffine(rgba, matrix, background.shape[1::-1], flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    weight = layer[..., 3].astype(np.float32) * (1 / 255)
    return cv2.blendLinear(cv2.cvtColor(layer, cv2.COLOR_RGBA2RGB), background, weight, 1.0 - weight)


class _Scene:
    """Renders the frames of a spec one at a time; knows the ground truth of every frame."""

    def __init__(self, spec: SpeakerSpec):
        from skimage import data

        self.spec = spec
        self.photo = np.ascontiguousarray(data.astronaut())
        self.mouth = _MouthWarper()
        self.motion = _motion(spec)
        self.mouth_open = np.full(spec.n_frames, np.nan) if spec.no_face else _mouth_track(spec)
        self.backdrops = [_backdrop(np.random.default_rng([spec.seed, 10 + shot]), spec.width, spec.height,
                                    level) for shot, level in enumerate(self._backdrop_levels())]
        speaker_photo = _without_badges(self.photo) if spec.no_face else self.photo
        self.speaker = _with_alpha(speaker_photo, _person_alpha(self.photo, torso_only=spec.no_face))
        self.speaker_matrices = self._matrices(0, self.motion.head_shift, self.motion.head_roll_deg)
        self.listener, self.listener_matrices = None, None
        if spec.second_face:
            self.listener = _with_alpha(self.photo, _person_alpha(self.photo, torso_only=False))
            self.listener_matrices = self._matrices(1, self.motion.listener_shift,
                                                    self.motion.listener_roll_deg)

    def _backdrop_levels(self) -> list[float]:
        """Mean grey of each shot's backdrop; a cut also jumps in brightness by BACKDROP_CUT_STEP."""
        level = np.random.default_rng([self.spec.seed, 12]).uniform(*BACKDROP_LEVELS)
        if self.spec.scene_cut_frame is None:
            return [level]
        step = BACKDROP_CUT_STEP if level < np.mean(BACKDROP_LEVELS) else -BACKDROP_CUT_STEP
        return [level, level + step]

    def _matrices(self, person: int, shift: np.ndarray, roll_deg: np.ndarray) -> list[np.ndarray]:
        """Per-frame photo-to-frame affines of the speaker (person 0) or the listener (person 1)."""
        camera = self.motion.camera_shift
        return [_person_matrix(self.spec, self._layout(f)[person], shift[f] + camera[f], roll_deg[f])
                for f in range(self.spec.n_frames)]

    def _shot(self, f: int) -> int:
        return int(self.spec.scene_cut_frame is not None and f >= self.spec.scene_cut_frame)

    def _layout(self, f: int) -> tuple[_Placement, _Placement | None]:
        mode = "torso" if self.spec.no_face else "pair" if self.spec.second_face else "alone"
        return _LAYOUTS[(mode, self._shot(f))]

    def frame(self, f: int) -> np.ndarray:
        """Frame f as uint8 RGB (height, width, 3)."""
        frame = self._backdrop_frame(f)
        if self.listener is not None:
            frame = _composite(frame, self.listener, self.listener_matrices[f])
        speaker = self.speaker if self.spec.no_face else self.mouth.open(self.speaker, self.mouth_open[f])
        frame = _composite(frame, speaker, self.speaker_matrices[f])
        return self._degrade(frame, f)

    def _backdrop_frame(self, f: int) -> np.ndarray:
        backdrop = self.backdrops[self._shot(f)]
        shift = self.motion.camera_shift[f] + self.motion.backdrop_shift[f]
        if not shift.any():
            return backdrop
        matrix = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
        return cv2.warpAffine(backdrop, matrix, backdrop.shape[1::-1], flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_WRAP)

    def _degrade(self, frame: np.ndarray, f: int) -> np.ndarray:
        if self.spec.blur_sigma > 0:
            frame = cv2.GaussianBlur(frame, (0, 0), self.spec.blur_sigma)
        if self.spec.noise_std > 0:
            rng = np.random.default_rng([self.spec.seed, 30, f])
            noise = rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(self.spec.noise_std)
            frame = cv2.add(frame, noise, dtype=cv2.CV_8U)
        return frame

    def truth(self) -> SpeakerTruth:
        spec = self.spec
        face_boxes = np.full((spec.n_frames, 4), np.nan) if spec.no_face else np.array(
            [_face_box(m, opening) for m, opening in zip(self.speaker_matrices, self.mouth_open)])
        second = None if self.listener is None else np.array(
            [_face_box(m, 0.0) for m in self.listener_matrices])
        return SpeakerTruth(spec=spec, n_frames=spec.n_frames, fps=spec.fps, face_boxes=face_boxes,
                            second_face_boxes=second, mouth_open=self.mouth_open,
                            head_roll_deg=self.motion.head_roll_deg, camera_shift=self.motion.camera_shift,
                            audio_offset_frames=spec.audio_offset_frames,
                            scene_cut_frame=spec.scene_cut_frame)


# --- Encoding ---------------------------------------------------------------------------------------

AAC_FRAME_SAMPLES = 1024
_LAYOUT_NAMES = {1: "mono", 2: "stereo"}


class _AudioMuxer:
    """Feeds a (channels, n) float track to an AAC stream in time order, interleaved with the video."""

    def __init__(self, container, samples: np.ndarray, rate: int):
        self.stream = container.add_stream("aac", rate=rate, options={"aac_coder": "fast"})
        self.stream.layout = _LAYOUT_NAMES[samples.shape[0]]
        self.container, self.samples, self.rate, self.position = container, samples, rate, 0

    def write_until(self, time_s: float) -> None:
        end = min(round(time_s * self.rate), self.samples.shape[1])
        while self.position < end:
            chunk = np.ascontiguousarray(self.samples[:, self.position:self.position + AAC_FRAME_SAMPLES])
            frame = self._frame(chunk)
            self.position += chunk.shape[1]
            self.container.mux(self.stream.encode(frame))

    def _frame(self, chunk: np.ndarray) -> av.AudioFrame:
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.stream.layout.name)
        frame.sample_rate, frame.pts = self.rate, self.position
        return frame

    def finish(self) -> None:
        self.write_until(self.samples.shape[1] / self.rate)
        self.container.mux(self.stream.encode(None))


def render_speaker(spec: SpeakerSpec, path) -> SpeakerTruth:
    """Render `spec` to an mp4 at `path` (H.264 yuv420p crf 18, AAC when spec.with_audio) and return
    its ground truth.

    Frames are generated and encoded one at a time; both streams start at time 0 and last
    n_frames / fps. The file appears at `path` only when complete.
    """
    scene = _Scene(spec)
    with _atomic_target(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(spec.fps).limit_denominator(1001),
                                     options={"crf": "18", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = spec.width, spec.height, "yuv420p"
        audio = None
        if spec.with_audio:
            track = _audio_track(spec, spec.audio_rate, spec.n_frames / spec.fps)
            audio = _AudioMuxer(container, np.repeat(track[None], spec.audio_channels, axis=0),
                                spec.audio_rate)
        for f in range(spec.n_frames):
            frame = av.VideoFrame.from_ndarray(scene.frame(f), format="rgb24")
            frame.pts = f
            container.mux(video.encode(frame))
            if audio is not None:
                audio.write_until((f + 1) / spec.fps)
        container.mux(video.encode(None))
        if audio is not None:
            audio.finish()
    return scene.truth()


# --- Demo set ---------------------------------------------------------------------------------------

SIDECAR_RATE, SIDECAR_CHANNELS = 48000, 2
CORRUPT_BYTES = 64 * 1024

# (file stem, source tag, spec, sidecar WAV seconds or None). About 53 s of 640×480 video in all.
DEMO_SPEAKERS = (
    ("interview_clean", "interview", SpeakerSpec(seed=1, duration_s=6.0), None),
    ("news_clean", "news", SpeakerSpec(seed=2, duration_s=5.0), None),
    ("vlog_clean", "vlog", SpeakerSpec(seed=3, duration_s=5.0), None),
    ("interview_scene_cut", "interview", SpeakerSpec(seed=4, duration_s=8.0, scene_cut_frame=100), None),
    ("interview_two_faces", "interview", SpeakerSpec(seed=5, duration_s=5.0, second_face=True), None),
    ("vlog_no_face", "vlog", SpeakerSpec(seed=6, duration_s=4.0, no_face=True), None),
    ("vlog_blur_noise", "vlog", SpeakerSpec(seed=7, duration_s=5.0, blur_sigma=2.5, noise_std=8.0), None),
    ("news_late_audio", "news", SpeakerSpec(seed=8, duration_s=5.0, audio_offset_frames=8), None),
    ("news_sidecar_audio", "news", SpeakerSpec(seed=9, duration_s=6.0, with_audio=False), 4.5),
    ("news_no_audio", "news", SpeakerSpec(seed=10, duration_s=4.0, with_audio=False), None),
)


def demo_sources(out_dir) -> list[dict]:
    """Render the demo set into `out_dir` and write its `manifest.yaml`; return the manifest rows.

    Each video `<stem>.mp4` gets its ground truth beside it as `<stem>.truth.json`; a sidecar audio file
    is `<stem>.wav` (48 kHz stereo, shorter than its video). `corrupt.mp4` is random bytes. Rows are
    `{"uri", "tag"}` plus `"audio_uri"` where there is a sidecar; URIs are absolute local paths.
    """
    import yaml

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for stem, tag, spec, sidecar_s in DEMO_SPEAKERS:
        video = out_dir / f"{stem}.mp4"
        render_speaker(spec, video).to_json(out_dir / f"{stem}.truth.json")
        row = {"uri": str(video), "tag": tag}
        if sidecar_s is not None:
            audio = out_dir / f"{stem}.wav"
            render_sidecar_audio(spec, audio, SIDECAR_RATE, SIDECAR_CHANNELS, sidecar_s)
            row["audio_uri"] = str(audio)
        rows.append(row)
    corrupt = out_dir / "corrupt.mp4"
    with _atomic_target(corrupt) as tmp:
        tmp.write_bytes(np.random.default_rng(0).bytes(CORRUPT_BYTES))
    rows.append({"uri": str(corrupt), "tag": "vlog"})
    with _atomic_target(out_dir / "manifest.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(rows, sort_keys=False))
    return rows
