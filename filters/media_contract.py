"""The clip media contract: what every clip in a shard is, and what scorers, readers and the model assume.

DESIGN.md §2 "Clips": 2–10 s, never across a scene cut; a square crop around the face, 512² by default
(configurable); 25 fps; 16 kHz mono audio aligned to the frames, so frame ``i`` owns audio samples
``[i·640, (i+1)·640)``. The one definition of these numbers; everything else imports them from here.
"""

from __future__ import annotations

FPS = 25  # clip frame rate (frames per second)
AUDIO_RATE = 16_000  # clip audio sample rate (Hz), mono
SAMPLES_PER_FRAME = AUDIO_RATE // FPS  # 640 audio samples per video frame
CLIP_SIZE = 512  # default side of the square face crop, in pixels
CLIP_MIN_S = 2.0  # default shortest clip (seconds); shorter remainders are dropped as "too_short"
CLIP_MAX_S = 10.0  # default longest clip (seconds); longer shots are cut into consecutive clips
