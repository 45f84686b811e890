"""Augmentation in the mel power domain: deterministic by seed, and each transform exact."""
import pytest
import torch

from configuration import schema
from data_loader.augmentation import AugmentParams, MelAugmenter
from utils.errors import UserError


def mel_batch(n=6):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 40, 100, generator=g) + 0.1


def test_same_seed_same_augmentation_and_other_seed_differs():
    bank = torch.rand(5, 40, 100)
    aug = MelAugmenter(AugmentParams(gain_db=(-6, 6), warp=0.1, stretch=0.2), bank, hop_ms=10)
    a = aug(mel_batch(), torch.Generator().manual_seed(7))
    b = aug(mel_batch(), torch.Generator().manual_seed(7))
    c = aug(mel_batch(), torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_time_shift_moves_frames_and_fills_silence():
    mel = mel_batch(50)
    aug = MelAugmenter(AugmentParams(noise_prob=0.0, time_shift_ms=30), None, hop_ms=10)
    out = aug(mel, torch.Generator().manual_seed(0))
    for i in range(50):
        shifts = [s for s in range(-3, 4)
                  if torch.equal(out[i], torch.roll(mel[i], s, dims=1) * _valid(s))]
        assert len(shifts) == 1


def _valid(s):
    v = torch.ones(100)
    if s > 0:
        v[:s] = 0
    elif s < 0:
        v[s:] = 0
    return v


def test_noise_is_mixed_at_the_drawn_snr():
    mel = mel_batch(200)
    bank = torch.rand(3, 40, 100)
    aug = MelAugmenter(AugmentParams(time_shift_ms=0, noise_prob=1.0, snr_db=(10.0, 10.0)), bank, hop_ms=10)
    out = aug(mel, torch.Generator().manual_seed(0))
    added = out - mel
    snr = 10 * torch.log10(mel.mean(dim=(1, 2)) / added.mean(dim=(1, 2)))
    torch.testing.assert_close(snr, torch.full((200,), 10.0), rtol=0, atol=1e-3)


def test_gain_scales_power():
    mel = mel_batch()
    aug = MelAugmenter(AugmentParams(time_shift_ms=0, noise_prob=0.0, gain_db=(-20.0, -20.0)), None, hop_ms=10)
    torch.testing.assert_close(aug(mel, torch.Generator().manual_seed(0)), mel * 0.01)


def test_stretch_and_warp_with_factor_one_are_identity():
    mel = mel_batch()
    ones = torch.ones(len(mel))
    torch.testing.assert_close(MelAugmenter._resample_axis(mel, 2, ones, centre=49.5), mel)
    torch.testing.assert_close(MelAugmenter._resample_axis(mel, 1, ones, centre=0.0), mel)
    # a slower pace (factor 0.5) reads the middle half: frame 0 comes from frame 24.75
    slow = MelAugmenter._resample_axis(mel, 2, torch.full((len(mel),), 0.5), centre=49.5)
    torch.testing.assert_close(slow[:, :, 0], mel[:, :, 24] * 0.25 + mel[:, :, 25] * 0.75)


def test_disabled_augmentation_returns_input():
    mel = mel_batch()
    aug = MelAugmenter(AugmentParams(enabled=False), torch.rand(2, 40, 100), hop_ms=10)
    assert aug(mel, torch.Generator()) is mel


def test_speech_referenced_snr_measures_the_word_not_the_padding():
    # a word of 20 loud frames padded to 100: the window's power is a fifth of the word's, so at
    # the same nominal SNR "speech" mixes five times (7 dB) more noise than "window"
    mel = torch.full((4, 40, 100), 1e-6)
    mel[:, :, 40:60] = 2.0
    bank = torch.rand(3, 40, 100) + 0.5
    added = {}
    for ref in ("window", "speech"):
        aug = MelAugmenter(AugmentParams(time_shift_ms=0, noise_prob=1.0, snr_db=(10.0, 10.0), snr_reference=ref),
                           bank, hop_ms=10)
        added[ref] = (aug(mel, torch.Generator().manual_seed(0)) - mel).mean(dim=(1, 2))
    word_power = torch.full((4,), 2.0)
    torch.testing.assert_close(10 * torch.log10(word_power / added["speech"]), torch.full((4,), 10.0),
                               rtol=0, atol=1e-3)
    torch.testing.assert_close(added["speech"] / added["window"], torch.full((4,), 2.0 / (2.0 * 20 / 100 + 80e-6 / 100)),
                               rtol=1e-4, atol=0)


def test_unknown_snr_reference_is_refused_by_the_schema():
    with pytest.raises(UserError, match=r"^config data_loader\.args\.augment\.snr_reference must be one of "
                                        r"window, speech, found 'clip'$"):
        schema.LOADERS["SpeechCommandsDataLoader"]("data_loader.args",
                                                   {"data_dir": "x", "augment": {"snr_reference": "clip"}})


def _word_batch(starts, lengths, frames=100, bands=8):
    """Silence-padded 'words': constant power 1.0 over [start, start + length), 1e-6 elsewhere."""
    mel = torch.full((len(starts), bands, frames), 1e-6)
    for i, (a, n) in enumerate(zip(starts, lengths)):
        mel[i, :, a:a + n] = 1.0
    return mel


def test_edge_negatives_keep_the_share_of_the_word_at_an_edge_and_relabel_it():
    aug = MelAugmenter(AugmentParams(edge_negatives=1.0, edge_keep=0.3), None, hop_ms=10)
    mel = _word_batch([40, 30, 0, 45], [20, 40, 100, 10])
    labels = torch.tensor([1, 2, 0, 3])
    out, new = aug.edge_negatives(mel, labels, torch.Generator().manual_seed(0))
    assert new.tolist() == [0, 0, 0, 0]
    assert torch.equal(out[2], mel[2])                     # not a keyword: untouched
    for i, n in ((0, 20), (1, 40), (3, 10)):
        speech = (out[i, 0] >= 0.5).nonzero().flatten().tolist()
        keep = int(n * 0.3)
        assert len(speech) == keep                             # 30% of the word's frames, floored
        assert speech in (list(range(keep)), list(range(100 - keep, 100)))   # at the start or the end
    assert labels.tolist() == [1, 2, 0, 3]                 # the caller's labels are not changed


def test_edge_negatives_at_share_zero_change_nothing_and_follow_the_seed():
    mel, labels = _word_batch([40] * 64, [20] * 64), torch.ones(64, dtype=torch.long)
    none = MelAugmenter(AugmentParams(edge_negatives=0.0), None, hop_ms=10)
    out, new = none.edge_negatives(mel, labels, torch.Generator().manual_seed(0))
    assert torch.equal(out, mel) and torch.equal(new, labels)
    half = MelAugmenter(AugmentParams(edge_negatives=0.5), None, hop_ms=10)
    a = half.edge_negatives(mel, labels, torch.Generator().manual_seed(3))
    b = half.edge_negatives(mel, labels, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert 16 <= int((a[1] == 0).sum()) <= 48                 # about half of 64 (binomial, p=0.5)


def test_loader_trains_on_the_edge_negatives_labels():
    from data_loader.data_loaders import InMemoryLoader
    mel = _word_batch([40] * 300, [20] * 300)
    labels = torch.tensor([0, 1, 2] * 100)
    aug = MelAugmenter(AugmentParams(edge_negatives=1.0, time_shift_ms=0, noise_prob=0), None, hop_ms=10)
    loader = InMemoryLoader(mel, labels, lambda m: m.log(), batch_size=64, shuffle=True, augmenter=aug)
    seen = torch.cat([y for _, y in loader])
    assert seen.tolist() == [0] * 300                         # every keyword clip became a negative
    assert labels.tolist() == [0, 1, 2] * 100                 # the stored labels stay
    xs = torch.cat([x for x, _ in loader])
    frames = (xs[:, 0] > -1).sum(dim=1)
    assert (frames == 6).sum() == 200 and (frames == 20).sum() == 100   # keywords: 30% of 20 frames
