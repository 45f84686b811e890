"""data_loader/stream_windows.py: positives hold a whole keyword clip, negatives none of one."""
from types import SimpleNamespace as E

import numpy as np

from data_loader.stream_windows import window_starts


def test_positives_hold_the_whole_clip_and_negatives_overlap_no_keyword():
    events = [E(label=0, start=0, length=8000), E(label=2, start=20000, length=6000),
              E(label=0, start=30000, length=9000), E(label=1, start=50000, length=20000)]
    starts, labels = window_starts(events, 100000, 16000, 4, 1.5, np.random.default_rng(0))
    assert labels.tolist() == [2] * 4 + [1] * 4 + [0] * 12
    for s in starts[:4]:
        assert s <= 20000 and s + 16000 >= 26000          # the 6,000-sample clip lies inside
    assert set(starts[4:8].tolist()) == {52000}           # a clip longer than the window: centred on it
    for s in starts[8:]:
        assert 0 <= s <= 84000
        assert s + 16000 <= 20000 or s >= 26000           # no part of a keyword clip
        assert s + 16000 <= 50000 or s >= 70000
