import numpy as np
import pytest
import soundfile as sf

from data_loader.audio import AudioError, fit_length, read_wave


def test_fit_length_pads_and_crops_centred():
    np.testing.assert_array_equal(fit_length(np.arange(1, 5, dtype=np.float32), 8), [0, 0, 1, 2, 3, 4, 0, 0])
    np.testing.assert_array_equal(fit_length(np.arange(10, dtype=np.float32), 4), [3, 4, 5, 6])
    assert fit_length(np.ones(16000, np.float32), 16000).shape == (16000,)


def test_8khz_clip_is_resampled(corpus_dir):
    path = next((corpus_dir / "two").glob("fsdd*.wav"))
    raw, sr = sf.read(path)
    assert sr == 8000
    wave = read_wave(path, 16000)
    assert abs(len(wave) - 2 * len(raw)) <= 1
    assert wave.dtype == np.float32


def test_resampled_tone_keeps_its_frequency(tmp_path):
    t = np.arange(8000) / 8000
    sf.write(tmp_path / "tone.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000, subtype="PCM_16")
    wave = read_wave(tmp_path / "tone.wav", 16000)
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16000 / len(wave) - 440) < 2


def test_corrupt_file_raises_audio_error(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(AudioError, match="bad.wav"):
        read_wave(bad, 16000)
