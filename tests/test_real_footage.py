"""Scorers and profiles on real talking heads (``../shared/real/``): relative sync offsets, the sync
confidence of a talking face against frozen / mismatched / shuffled negatives, and strict's keep/reject of
clean and defective variants. Variants are made and ingested by ``benchmarks/real_footage.py``'s functions,
through the real pipeline (two clips, about a dozen 5–7-s ingests each). speaker_2 is the softest clean
clip (Laplacian sharpness 28), speaker_4 the sharpest (536, still 69 blurred) and the one whose audio 10 frames
late the version-2 sync scorer read 5 frames early; the other two clips are in docs/quality.md
(benchmarks/real_footage.py).
"""

import pytest

from benchmarks.real_footage import DEFAULT_REAL, RealFootageRun, make_variants

CLIPS = ("speaker_2", "speaker_4")
SHIFTS = (-10, -5, 5, 10)
NEGATIVES = ("frozen", "other_speech_1", "other_clip", "shuffled")
DEFECTS = ("frozen", "audio +3", "audio -3", "other_speech_1", "other_clip", "shuffled", "crf45", "shake")
WANTED = {"clean", "blur", *(f"audio {k:+d}" for k in SHIFTS), *DEFECTS}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not all((DEFAULT_REAL / f"{clip}.mp4").exists() for clip in CLIPS),
                       reason=f"needs the real clips of ../shared/real ({DEFAULT_REAL}); not part of the project"),
]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """{(clip, variant name): scored record with its profile decisions}."""
    folder = tmp_path_factory.mktemp("real")
    run = RealFootageRun()
    out = {}
    for number, variant in enumerate(v for v in make_variants(DEFAULT_REAL, list(CLIPS), folder) if v.name in WANTED):
        out[variant.clip, variant.name] = run.score(variant, folder / f"stage{number}")
    return out


@pytest.mark.parametrize("clip", CLIPS)
def test_relative_offsets_follow_the_audio_shift(scored, clip):
    """Audio delayed by k frames (+ = late) moves the measured offset by k, both signs."""
    clean = scored[clip, "clean"]["sync_offset"]
    read = {k: scored[clip, f"audio {k:+d}"]["sync_offset"] - clean for k in SHIFTS}
    assert all(abs(read[k] - k) <= 1 for k in SHIFTS), read


@pytest.mark.parametrize("clip", CLIPS)
def test_talking_face_is_more_confident_than_negatives(scored, clip):
    """Margins measured on these clips (sync v3): conf 0.11 / 0.16 over the best negative, dist 0.14 / 0.21
    under it (v2: conf 0.07 / 0.02)."""
    clean = scored[clip, "clean"]
    assert abs(clean["sync_offset"]) <= 1, clean
    for negative in NEGATIVES:
        other = scored[clip, negative]
        assert clean["sync_conf"] > other["sync_conf"] + 0.08, (negative, clean["sync_conf"], other["sync_conf"])
        assert clean["sync_dist"] < other["sync_dist"] - 0.08, (negative, clean["sync_dist"], other["sync_dist"])


@pytest.mark.parametrize("clip", CLIPS)
def test_strict_keeps_clean_and_rejects_defects(scored, clip):
    assert scored[clip, "clean"]["decisions"]["strict"].keep, scored[clip, "clean"]["decisions"]["strict"].failed
    kept = [name for name in DEFECTS if scored[clip, name]["decisions"]["strict"].keep]
    assert not kept, kept


@pytest.mark.parametrize("clip", CLIPS)
def test_strict_rejects_blur_whatever_the_clip_s_own_sharpness(scored, clip):
    """speaker_4 blurred (σ 2) keeps a Laplacian sharpness above clean speaker_2's; reblur_ratio rejects it."""
    decision = scored[clip, "blur"]["decisions"]["strict"]
    assert not decision.keep and any("reblur_ratio" in reason for reason in decision.failed), decision.failed
    assert scored[clip, "clean"]["reblur_ratio"] < scored[clip, "blur"]["reblur_ratio"]


@pytest.mark.parametrize("clip", CLIPS)
def test_lenient_is_a_superset_that_still_rejects_frozen_and_mismatched(scored, clip):
    decisions = {name: record["decisions"] for (each, name), record in scored.items() if each == clip}
    assert all(d["lenient"].keep for d in decisions.values() if d["strict"].keep)
    assert decisions["clean"]["lenient"].keep
    for negative in NEGATIVES:
        assert not decisions[negative]["lenient"].keep, negative
