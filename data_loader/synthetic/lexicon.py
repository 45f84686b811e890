"""The words of the synthetic corpus as phoneme strings, and the phoneme inventory.

Keywords first, then Speech Commands' other words, then words that share sounds with the
keywords (they get a higher share of the class-0 clips, so the task is not trivial).
"""

KEYWORDS = ("one", "two", "three")

# Word -> ARPAbet-like phoneme string. Keywords first; then Speech Commands' other words;
# then words that share sounds with the keywords, which get a higher share of the class-0 clips.
WORDS = {
    "one": "W AH N", "two": "T UW", "three": "TH R IY",
    "zero": "Z IH R OW", "four": "F AO R", "five": "F AY V", "six": "S IH K S",
    "seven": "S EH V AX N", "eight": "EY T", "nine": "N AY N", "yes": "Y EH S", "no": "N OW",
    "up": "AH P", "down": "D AW N", "left": "L EH F T", "right": "R AY T", "go": "G OW",
    "stop": "S T AA P", "on": "AA N", "off": "AO F",
    "throw": "TH R OW", "thirty": "TH ER T IY", "ten": "T EH N", "tea": "T IY",
    "wonder": "W AH N D ER", "want": "W AA N T", "twenty": "T W EH N T IY", "wine": "W AY N",
}
CONFUSABLE = ("throw", "thirty", "ten", "tea", "wonder", "want", "twenty", "wine")
CONFUSABLE_WEIGHT = 1.25

# Phoneme inventory. Formants (F1, F2, F3) in Hz for an adult male tract (scale 1.0);
# diphthongs have a second target. dur: base duration in ms; av: voicing amplitude.
# fric: (low Hz, high Hz, level relative to vowel RMS) of the frication noise band.
# Stops: formants are the locus; burst band and level, voice-onset time (vot) in ms.
VOWEL, DIPHTHONG, GLIDE, LIQUID, NASAL, FRICATIVE, STOP = "vowel", "diphthong", "glide", "liquid", "nasal", "fricative", "stop"
PHONEMES = {
    "IY": dict(kind=VOWEL, f=(280, 2250, 2950), dur=130, av=1.0),
    "IH": dict(kind=VOWEL, f=(400, 1900, 2550), dur=95, av=1.0),
    "EH": dict(kind=VOWEL, f=(550, 1770, 2490), dur=110, av=1.0),
    "AE": dict(kind=VOWEL, f=(690, 1660, 2450), dur=140, av=1.0),
    "AH": dict(kind=VOWEL, f=(620, 1220, 2550), dur=110, av=1.0),
    "AA": dict(kind=VOWEL, f=(740, 1100, 2540), dur=140, av=1.0),
    "AO": dict(kind=VOWEL, f=(590, 880, 2540), dur=140, av=1.0),
    "UH": dict(kind=VOWEL, f=(450, 1030, 2380), dur=100, av=1.0),
    "UW": dict(kind=VOWEL, f=(320, 1150, 2250), dur=140, av=0.95),
    "ER": dict(kind=VOWEL, f=(480, 1350, 1700), dur=140, av=0.9),
    "AX": dict(kind=VOWEL, f=(500, 1450, 2500), dur=65, av=0.7),
    "AY": dict(kind=DIPHTHONG, f=(720, 1150, 2500), f2=(420, 1950, 2600), dur=190, av=1.0),
    "OW": dict(kind=DIPHTHONG, f=(560, 950, 2450), f2=(400, 780, 2350), dur=180, av=1.0),
    "EY": dict(kind=DIPHTHONG, f=(500, 1900, 2500), f2=(330, 2200, 2850), dur=170, av=1.0),
    "AW": dict(kind=DIPHTHONG, f=(720, 1250, 2500), f2=(440, 900, 2350), dur=190, av=1.0),
    "W": dict(kind=GLIDE, f=(300, 650, 2200), dur=65, av=0.7),
    "Y": dict(kind=GLIDE, f=(270, 2150, 2950), dur=60, av=0.7),
    "R": dict(kind=LIQUID, f=(360, 1100, 1450), dur=70, av=0.65),
    "L": dict(kind=LIQUID, f=(380, 950, 2650), dur=70, av=0.6),
    "M": dict(kind=NASAL, f=(260, 1000, 2250), zero=950, dur=75, av=0.5),
    "N": dict(kind=NASAL, f=(260, 1550, 2600), zero=1600, dur=75, av=0.5),
    "S": dict(kind=FRICATIVE, f=(350, 1750, 2600), fric=(3800, 8000, 0.45), dur=120, av=0.0),
    "Z": dict(kind=FRICATIVE, f=(350, 1750, 2600), fric=(3800, 8000, 0.25), dur=85, av=0.35),
    "F": dict(kind=FRICATIVE, f=(350, 1100, 2400), fric=(1000, 6500, 0.11), dur=100, av=0.0),
    "V": dict(kind=FRICATIVE, f=(350, 1100, 2400), fric=(1000, 6500, 0.06), dur=70, av=0.35),
    "TH": dict(kind=FRICATIVE, f=(350, 1500, 2600), fric=(2400, 7800, 0.08), dur=100, av=0.0),
    "P": dict(kind=STOP, f=(250, 800, 2200), burst=(500, 2500, 0.35), vot=55, dur=70, av=0.0),
    "B": dict(kind=STOP, f=(250, 800, 2200), burst=(500, 2500, 0.2), vot=12, dur=55, av=0.08),
    "T": dict(kind=STOP, f=(250, 1750, 2700), burst=(3000, 7000, 0.6), vot=65, dur=65, av=0.0),
    "D": dict(kind=STOP, f=(250, 1750, 2700), burst=(3000, 7000, 0.3), vot=15, dur=50, av=0.08),
    "K": dict(kind=STOP, f=(250, 1900, 2450), burst=(1500, 3500, 0.55), vot=70, dur=70, av=0.0),
    "G": dict(kind=STOP, f=(250, 1900, 2450), burst=(1500, 3500, 0.3), vot=20, dur=55, av=0.08),
}
SONORANT = (VOWEL, DIPHTHONG, GLIDE, LIQUID, NASAL)
DURATION_SCALE = 1.35  # words said in isolation are slow
