"""Built-in synthetic keyword corpus in Google Speech Commands layout (the offline default).

Everything here is *synthetic*: no recording of a person is involved. Each clip is a
word-like sound made by source-filter (formant) synthesis, in the manner of the Klatt
synthesiser, from a phoneme string of the word:

- voiced sounds: a Rosenberg glottal-pulse train (with jitter, shimmer, breathiness and a
  pitch contour) through a cascade of time-varying formant resonators plus a nasal
  pole/zero pair; formant targets are interpolated between phonemes (coarticulation);
- fricatives ("s", "f", "th", voiced "z", "v"): band-limited noise with smooth envelopes;
- plosives ("t", "k", "p", "d", "g", "b"): closure, a short filtered burst, and aspiration
  noise through the formants of the following vowel (voice-onset time).

Per speaker (drawn once): mean pitch, vocal-tract length (scales all formants), speaking
rate, glottal open quotient, breathiness, an "accent" (vowel formant offsets) and a
microphone response. Per clip: pitch contour, durations, formant jitter, loudness, onset,
optional room reverberation (a fifth of the clips) and background noise at a random SNR of
8-30 dB (15% of the clips have none).

Keywords are "one", "two", "three"; class-0 words include Speech Commands' own words and
words that share sounds with the keywords ("tea", "want", "wonder", "throw", "ten"...), so
the task is not trivial. Closer pairs such as "tree"/"three", "tooth"/"two" or "once"/"one"
are left out: the project's small default model mostly could not tell them apart here.
Clips from a fixed seed are byte-identical on every run: each clip's random stream comes
from ``(seed, clip index)`` only, whatever the worker count.

The corpus is built in a hidden sibling folder and renamed into place when complete (with
a ``.complete`` marker), so an interrupted run never leaves a half corpus at ``root``. The
individual WAVs are not written through ``utils.atomic`` (one fsync per clip would be slow);
the folder rename is the atomic step.

Modules: ``lexicon`` (words, phonemes), ``voices`` (speakers), ``speech`` (synthesis), ``noise``,
``clips`` (one clip and its WAV), ``corpus`` (planning, building, reusing), ``__main__`` (CLI).
"""
from data_loader.synthetic.corpus import (CLIPS_PER_SPEAKER, GENERATOR_VERSION, MARKER, NOISE_FOLDER,
                                          generate_corpus, plan_corpus, summary_line)
from data_loader.synthetic.lexicon import KEYWORDS, WORDS
from data_loader.synthetic.noise import NOISE_FILES

__all__ = ["CLIPS_PER_SPEAKER", "GENERATOR_VERSION", "KEYWORDS", "MARKER", "NOISE_FILES", "NOISE_FOLDER", "WORDS",
           "generate_corpus", "plan_corpus", "summary_line"]
