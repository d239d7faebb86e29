"""The catalog columns every sync scorer fills (DESIGN.md §2, "The sync scorer"), from one distance per shift.

* ``sync_offset`` — the shift in frames, audio relative to video, at which audio and lips agree best, in the
  generator's convention (``filters.synthetic``): ``+k`` means the audio is late, the sound of mouth frame
  ``f`` is heard at frame ``f + k``. (syncnet_python prints the opposite sign.)
* ``sync_dist`` — the distance at that shift (Sync-D; lower is better).
* ``sync_conf`` — how far the best shift stands out: SyncNet's Sync-C, the median distance over all shifts
  minus the distance at the best one (``sync_columns``); the weight-free scorer's own contrast against the
  shifts away from its peak (``filters.sync``). Each scorer has its own scale and thresholds.
* ``sync_scorer`` — the scorer's name; thresholds are per scorer, so a profile must know which one ran.

Shared by the weight-free scorer (``filters.sync``) and SyncNet (``filters.syncnet``), which search the same
``±MAX_SHIFT_FRAMES``.
"""

from __future__ import annotations

import numpy as np

MAX_SHIFT_FRAMES = 15


def sync_columns(shifts: np.ndarray, distances: np.ndarray, scorer: str) -> dict:
    """The catalog columns from one distance per shift (audio shifted late by ``shifts[i]`` frames).

    offset = the shift of least distance, Sync-D = that distance, Sync-C = median distance − Sync-D.
    """
    best = int(np.argmin(distances))
    least = float(distances[best])
    return {
        "sync_offset": int(shifts[best]),
        "sync_dist": least,
        "sync_conf": float(np.median(distances)) - least,
        "sync_scorer": scorer,
    }
