"""MFCC in torch against librosa under the same parameters, on real corpus clips."""
import librosa
import numpy as np
import pytest
import torch

from data_loader.audio import fit_length, read_wave
from data_loader.features import FeatureParams, Mfcc, mel_filterbank

P = FeatureParams()


def librosa_mfcc(wave):
    return librosa.feature.mfcc(y=wave, sr=P.sample_rate, n_mfcc=P.n_mfcc, n_fft=P.n_fft,
                                win_length=P.win_length, hop_length=P.hop_length, n_mels=P.n_mels,
                                fmin=P.fmin, fmax=P.fmax, center=True, pad_mode="constant",
                                )[:, :P.frames].T  # librosa's power_to_db uses top_db=80 like ours


def test_filterbank_matches_librosa():
    ours = mel_filterbank(P.sample_rate, P.n_fft, P.n_mels, P.fmin, P.fmax)
    ref = librosa.filters.mel(sr=P.sample_rate, n_fft=P.n_fft, n_mels=P.n_mels, fmin=P.fmin, fmax=P.fmax)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("clip", ["one/0cb74144_nohash_1.wav", "three/fsddtheo_nohash_3.wav",
                                  "_background_noise_/white_noise.wav"])
def test_mfcc_matches_librosa_on_real_clips(corpus_dir, clip):
    path = corpus_dir / clip
    if not path.exists():  # file names are the corpus's; pick the first of the folder otherwise
        path = sorted(path.parent.glob("*.wav"))[0]
    wave = fit_length(read_wave(path, P.sample_rate), P.clip_samples)
    ours = Mfcc(P)(torch.from_numpy(wave)[None])[0, 0].numpy()
    ref = librosa_mfcc(wave)
    assert ours.shape == (100, 13)
    # float32 STFT vs librosa's float32 path: coefficients span hundreds, agree to 0.01
    assert np.abs(ref).max() > 10
    np.testing.assert_allclose(ours, ref, atol=1e-2, rtol=0)


def test_mfcc_batch_equals_single():
    rng = np.random.default_rng(0)
    waves = torch.from_numpy(rng.standard_normal((3, 16000)).astype(np.float32) * 0.1)
    m = Mfcc(P)
    batch = m(waves)
    for i in range(3):
        torch.testing.assert_close(batch[i], m(waves[i:i + 1])[0], rtol=1e-5, atol=1e-4)
