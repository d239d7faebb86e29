"""The held-out test split's rule: whole sources kept out of training, so no speaker identity leaks into evaluation.

A source (catalog column ``source_id``, the sha256 of its bytes) is held out when

    u(source) = int(sha256(f"{seed}:{source_id}")[:16 hex digits]) / 2^64  <  fraction,

the hashed-identifier split (Géron, "Hands-On Machine Learning", ch. 2: a test set that stays put when the
data set is refreshed), applied to sources rather than clips. Membership depends only on the source and
(fraction, seed), so it never changes when new sources arrive. Two guards keep tiny catalogs usable, and
only they can change a source's membership as the catalog grows: with at least two sources and none below
``fraction`` the source of smallest u is held out; if every source would be, the one of largest u is left
for training. The unit is the source video: the catalog has no speaker identity, so one speaker filmed in
two source videos can still land on both sides.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc


def source_score(source_id: str, seed: int) -> float:
    """u(source) in [0, 1): the first 64 bits of sha256(f"{seed}:{source_id}") over 2^64."""
    digest = hashlib.sha256(f"{seed}:{source_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def test_sources(catalog_table: pa.Table, fraction: float = 0.1, seed: int = 0) -> set[str]:
    """The ``source_id`` values held out by the rule in the module docstring (empty for < 2 sources).

    Only sources with at least one usable (status ``ok``) clip are candidates: a source whose clips were all
    rejected at ingest would leave the test view empty (a source's clips never change once ingested).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction}")
    usable = pc.equal(catalog_table.column("status"), "ok")
    ids = pc.filter(catalog_table.column("source_id"), pc.fill_null(usable, False)).to_pylist()
    sources = sorted(s for s in set(ids) if s is not None)
    if len(sources) < 2:
        return set()
    scores = {source: source_score(source, seed) for source in sources}
    held = {source for source in sources if scores[source] < fraction}
    if not held:
        held = {min(sources, key=scores.__getitem__)}
    elif len(held) == len(sources):
        held.remove(max(sources, key=scores.__getitem__))
    return held


test_sources.__test__ = False  # a library function, not a pytest test
