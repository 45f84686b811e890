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


def test_a_floor_in_db_is_librosa_s_amin_and_per_frame_in_the_stream_scan(corpus_dir):
    """``floor_db: -70, top_db: null``: librosa's power_to_db with amin 1e-7 and no top_db, on a
    padded 8 kHz clip (digital silence: the floor binds); and the frame-wise scan of a recording
    (data_loader.frame_features), which applies it frame by frame, gives each window's per-clip
    features (no window is recomputed: there is no clamp below a window's peak)."""
    from data_loader.frame_features import FrameScanner
    p = FeatureParams(top_db=None, floor_db=-70)
    path = sorted((corpus_dir / "two").glob("fsdd*.wav"))[0]
    wave = fit_length(read_wave(path, p.sample_rate), p.clip_samples)
    ours = Mfcc(p)(torch.from_numpy(wave)[None])[0, 0].numpy()
    mel = librosa.feature.melspectrogram(y=wave, sr=p.sample_rate, n_fft=p.n_fft, win_length=p.win_length,
                                         hop_length=p.hop_length, n_mels=p.n_mels, fmin=p.fmin, fmax=p.fmax,
                                         center=True, pad_mode="constant")
    assert (mel[:, :p.frames] < 1e-7).mean() > 0.2
    db = librosa.power_to_db(mel, ref=1.0, amin=1e-7, top_db=None)
    ref = librosa.feature.mfcc(S=db, n_mfcc=p.n_mfcc)[:, :p.frames].T
    np.testing.assert_allclose(ours, ref, atol=1e-2, rtol=0)
    assert np.abs(ours - Mfcc(P)(torch.from_numpy(wave)[None])[0, 0].numpy()).max() > 10   # not the default's
    recording = np.concatenate([wave, 0.3 * wave[::-1], np.zeros(3000, dtype=np.float32), wave]).astype(np.float32)
    scanner = FrameScanner(p, np.zeros(p.n_mfcc), np.ones(p.n_mfcc), 1600)
    n = (len(recording) - p.clip_samples) // 1600 + 1
    frames = scanner.features(recording[:(n - 1) * 1600 + p.clip_samples], n)
    windows = torch.from_numpy(np.stack([recording[i * 1600:i * 1600 + p.clip_samples] for i in range(n)]))
    torch.testing.assert_close(frames, Mfcc(p)(windows), rtol=0, atol=1e-3)
    assert scanner.recomputed == 0 and scanner.windows == n
