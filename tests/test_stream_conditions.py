"""bench/stream_conditions.py: the test stream under changed conditions keeps its clips and changes only gains."""
import importlib.util

import numpy as np
import pytest

from conftest import ROOT
from data_loader.corpus import scan_corpus
from data_loader.stream import plan_stream, render_blocks

spec = importlib.util.spec_from_file_location("stream_conditions", ROOT / "bench" / "stream_conditions.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_each_condition_changes_only_the_gains_it_names(corpus_dir):
    plan = plan_stream(scan_corpus(corpus_dir), "test", 16000, 0.05, seed=0)
    made = bench.conditions(plan)
    assert made["as built"] is plan
    same = ("rel", "label", "pause", "start", "length", "noise", "noise_offset")
    for changed in made.values():
        assert changed.labels == plan.labels and changed.background_s == plan.background_s
        assert all(getattr(a, f) == getattr(b, f) for a, b in zip(changed.events, plan.events) for f in same)
    events = list(zip(plan.events, made["no noise"].events, made["noise 10 dB lower"].events,
                      made["no noise under keywords"].events, made["unit gain (same SNR)"].events))
    assert any(e.noise_gain > 0 for e in plan.events)
    for built, quiet, lower, clean_kw, unit in events:
        assert quiet.noise_gain == 0 and quiet.gain == built.gain
        assert lower.noise_gain == pytest.approx(built.noise_gain * 10 ** -0.5) and lower.gain == built.gain
        assert clean_kw.noise_gain == (0 if built.label else built.noise_gain)
        assert unit.gain == 1 and unit.noise_gain * built.gain == pytest.approx(built.noise_gain)
    # without noise a pause is digital silence
    first = plan.events[0]
    assert not np.any(next(render_blocks(made["no noise"]))[:first.pause])
    assert np.any(next(render_blocks(plan))[:first.pause])
