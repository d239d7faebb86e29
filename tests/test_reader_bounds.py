"""The reader skips a tar member larger than its cap without reading it, counts why, and goes on."""

import warnings

from shards.reader import ClipWindowDataset
from shards.tar_members import MAX_MEMBER_BYTES
from tests.indexed_clips import VERSION, raw_tar, sample, write_view


def test_oversize_members_are_skipped_unread_and_counted(tmp_path):
    shards = tmp_path / VERSION
    shards.mkdir(parents=True)
    good = sample("good")
    cap = 2 * max(len(data) for data in good.values())
    oversize = dict(good, wav=bytes(cap + 1))  # one byte over the cap
    raw_tar(shards / "clips-000000.tar", {
        **{f"good.{ext}": data for ext, data in good.items()},
        **{f"big.{ext}": data for ext, data in oversize.items()},
        **{f"after.{ext}": data for ext, data in good.items()},
    })
    write_view(tmp_path, "all", {f"{VERSION}/clips-000000.tar": ["after", "big", "good"]})
    dataset = ClipWindowDataset(tmp_path, "all", shuffle_buffer=0, max_member_bytes=cap)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keys = [window["key"] for window in dataset]
    assert keys == ["good", "after"], (dataset.stats.counts, [str(w.message) for w in caught])
    assert dataset.stats.counts["oversize_member"] == 1 and dataset.stats.counts["missing_member"] == 1
    assert any("big.wav" in str(w.message) and "oversize_member" in str(w.message) for w in caught)
    default = ClipWindowDataset(tmp_path, "all", shuffle_buffer=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        list(default)
    assert default.stats.counts["oversize_member"] == 0 and default.stats.counts["bad_audio"] == 1  # read, then refused as wav
    assert MAX_MEMBER_BYTES >= 64 * 1024**2  # far above any clip's member
