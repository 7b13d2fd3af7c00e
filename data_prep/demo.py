"""A small two-domain speaker corpus, generated from a seed in seconds.

The demo corpus lets every command of the recipe run offline. It has a real
mismatch in both of the senses the recipe targets:

* **language**: source speakers speak language ``l1`` (its own vowel and
  consonant inventory, falling intonation), target speakers language ``l2``
  (another inventory, rising intonation, shorter segments);
* **channel**: source audio is wideband 16 kHz; target audio passes through a
  telephone channel (a band drawn per call, from 250-450 Hz to 2900-3500 Hz;
  a handset resonance, mu-law companding, line hum and noise) and is stored
  at 8 kHz, so the pipeline's on-the-fly resampling is used.

Voices come from a source-filter model: a glottal pulse train with the
speaker's pitch, jitter and spectral tilt, shaped by formant resonators whose
frequencies are scaled by the speaker's vocal-tract length and personal
formant offsets. Each utterance adds session variability (pitch shift, level,
microphone colouring, background noise), so that speakers are not trivially
separable.

Splits (speakers disjoint across splits)::

    source_train.csv   labelled source speakers           (training, speaker head)
    target_train.csv   target speakers, spk_id kept for     (training, domain branch:
                       analysis only                        the recipe never reads it)
    source_eval.csv    held-out source speakers    + trials_source.txt
    target_eval.csv    held-out target speakers    + trials_target.txt
    eval.csv           both evaluation sets (what the trial lists refer to)

With ``phrases=N`` each utterance says one of N fixed phrases per language
(text-dependent mode): the manifests get a ``phrase`` column and the trial
lists carry SdSV trial types (TC target, TW/IC/IW non-targets).

Command line::

    python -m data_prep.demo --save_folder data/demo [--seed 1234] [--phrases 5]
"""

import functools
import itertools
import os
import sys

import numpy as np
import pandas as pd
import soundfile
from scipy import signal

from data_prep.preparation import (
    AT_LEAST_ONE,
    AT_LEAST_TWO,
    check_option,
    preparation_command,
    prepare_corpus,
)
from data_prep.telephone import HANDSET_LINE, TELEPHONE_RATE, resonate, telephone_channel
from local.cli import option
from local.data.schema import SAMPLE_RATE, utterance_row

# Formants (F1, F2, F3 in Hz) of an average adult vocal tract per vowel.
VOWELS = {
    "l1": {"a": (730, 1090, 2440), "i": (270, 2290, 3010), "u": (300, 870, 2240),
           "e": (530, 1840, 2480), "o": (570, 840, 2410)},
    "l2": {"ae": (660, 1720, 2410), "y": (280, 1800, 2200), "ih": (390, 1990, 2550),
           "schwa": (500, 1500, 2500), "oe": (450, 1500, 2300)},
}
# Fricative noise bands (centre Hz, bandwidth Hz).
FRICATIVES = {
    "l1": {"s": (6000, 2500), "f": (4000, 4000), "sh": (3000, 1500)},
    "l2": {"x": (1500, 1000), "th": (5000, 3000), "zh": (2500, 1200)},
}
# F0 slope over an utterance, and a factor of every segment's duration.
PROSODY = {"l1": {"f0_slope": -0.25, "rate": 1.0}, "l2": {"f0_slope": 0.2, "rate": 0.9}}
DOMAINS = {"source": {"lang": "l1", "channel": "wideband"},
           "target": {"lang": "l2", "channel": "telephone"}}
FORMANT_BANDWIDTHS = (80.0, 110.0, 160.0)
# Segment loudness: vowels carry the voice, consonants are quieter.
VOWEL_RMS, FRICATIVE_RMS, CLOSURE_RMS = 0.1, 0.025, 0.002


def draw_speaker(rng, spk_id):
    """Random voice parameters of one speaker.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random source.
    spk_id : str
        Speaker ID, stored in the result.

    Returns
    -------
    dict
        Pitch, jitter, tilt, vocal-tract scale, formant offsets, rate, breathiness.

    Example
    -------
    >>> speaker = draw_speaker(np.random.default_rng(0), "spk1")
    >>> speaker["spk_id"], speaker["gender"] in ("m", "f")
    ('spk1', True)
    """
    gender = rng.choice(["m", "f"])
    f0 = rng.uniform(85, 155) if gender == "m" else rng.uniform(165, 255)
    return {
        "spk_id": spk_id,
        "gender": gender,
        "f0": f0,
        "jitter": rng.uniform(0.005, 0.03),
        "tilt": rng.uniform(0.85, 0.98),
        "vtl": rng.uniform(0.88, 1.12) * (1.0 if gender == "m" else 1.12),
        "formant_offsets": rng.uniform(0.93, 1.07, size=3),
        "rate": rng.uniform(0.8, 1.25),
        "breath": rng.uniform(0.02, 0.25),
    }


def _glottal_source(rng, f0_track, jitter, tilt):
    """Pulse train following ``f0_track`` (Hz per sample), low-passed by the tilt."""
    period_noise = 1.0 + jitter * rng.standard_normal(f0_track.size)
    phase = np.cumsum(f0_track * period_noise / SAMPLE_RATE)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    return signal.lfilter([1.0 - tilt], [1.0, -tilt], pulses)


def _resonate(excitation, formants):
    """Cascade of two-pole resonators, one per formant."""
    out = excitation
    for freq, bandwidth in zip(formants, FORMANT_BANDWIDTHS):
        out = resonate(out, freq, bandwidth)
    return out


def _fricative(rng, n, centre, width):
    low = max(centre - width / 2, 100) / (SAMPLE_RATE / 2)
    high = min(centre + width / 2, 7800) / (SAMPLE_RATE / 2)
    sos = signal.butter(2, [low, high], btype="band", output="sos")
    return signal.sosfilt(sos, rng.standard_normal(n))


def synthesize(rng, speaker, lang, segments):
    """Speak a sequence of phoneme names of ``lang`` with ``speaker``'s voice.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random source (session variability).
    speaker : dict
        As from :func:`draw_speaker`.
    lang : str
        ``l1`` or ``l2``.
    segments : list of str
        Vowel, fricative or ``"."`` (a stop closure) names.

    Returns
    -------
    numpy.ndarray
        16 kHz waveform, peak-normalised to 0.5 before the session gain.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> wave = synthesize(rng, draw_speaker(rng, "spk1"), "l1", ["s", "a", ".", "i"])
    >>> round(float(np.abs(wave).max()), 3)
    0.5
    """
    prosody = PROSODY[lang]
    durations = []
    for name in segments:
        base = 0.11 if name in VOWELS[lang] else 0.07 if name in FRICATIVES[lang] else 0.04
        durations.append(base * prosody["rate"] * speaker["rate"] * rng.uniform(0.7, 1.4))
    lengths = (np.array(durations) * SAMPLE_RATE).astype(int)
    total = int(lengths.sum())
    time = np.linspace(0.0, 1.0, total)
    session_f0 = speaker["f0"] * rng.uniform(0.9, 1.1)
    f0_track = session_f0 * (1 + prosody["f0_slope"] * (time - 0.5))
    f0_track *= 1 + 0.05 * np.sin(2 * np.pi * rng.uniform(1, 4) * time)
    source = _glottal_source(rng, f0_track, speaker["jitter"], speaker["tilt"])
    source += speaker["breath"] * 0.05 * rng.standard_normal(total)
    scale = speaker["vtl"] * speaker["formant_offsets"]
    fade = int(0.008 * SAMPLE_RATE)
    out = np.zeros(total + fade)
    start = 0
    for name, length in zip(segments, lengths):
        excitation = source[start:start + length + fade]
        if name in VOWELS[lang]:
            piece = _resonate(excitation, np.array(VOWELS[lang][name]) * scale)
            level = VOWEL_RMS
        elif name in FRICATIVES[lang]:
            centre, width = FRICATIVES[lang][name]
            piece = _fricative(rng, excitation.size, centre * speaker["vtl"], width)
            level = FRICATIVE_RMS
        else:
            piece, level = rng.standard_normal(excitation.size), CLOSURE_RMS
        piece *= level / (np.sqrt(np.mean(piece**2)) + 1e-12)
        ramp = np.ones(piece.size)
        ramp[:fade] = np.linspace(0, 1, fade)
        ramp[-fade:] = np.linspace(1, 0, fade)
        out[start:start + piece.size] += piece * ramp
        start += length
    return 0.5 * out / (np.abs(out).max() + 1e-9)


def session_effects(rng, wave):
    """Microphone colouring, level and background noise of one recording.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random source (colouring, level, signal-to-noise ratio).
    wave : numpy.ndarray
        16 kHz waveform.

    Returns
    -------
    numpy.ndarray
        The recording, as long as ``wave``.

    Example
    -------
    >>> session_effects(np.random.default_rng(0), np.ones(100)).shape
    (100,)
    """
    tilt = rng.uniform(-0.4, 0.4)
    wave = signal.lfilter([1.0, tilt], [1.0], wave)
    wave *= rng.uniform(0.3, 1.0) / (np.abs(wave).max() + 1e-9)
    snr_db = rng.uniform(15, 35)
    noise = rng.standard_normal(wave.size) * np.sqrt(np.mean(wave**2) / 10 ** (snr_db / 10))
    return wave + noise


def random_words(rng, lang, n_syllables):
    """A random consonant-vowel sequence of ``lang``.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random source.
    lang : str
        ``l1`` or ``l2``.
    n_syllables : int
        Number of consonant-vowel syllables.

    Returns
    -------
    list of str
        Segment names for :func:`synthesize`, a consonant (or ``"."``, a
        stop closure) then a vowel per syllable.

    Example
    -------
    >>> words = random_words(np.random.default_rng(0), "l2", 3)
    >>> len(words), all(vowel in VOWELS["l2"] for vowel in words[1::2])
    (6, True)
    """
    vowels, fricatives = list(VOWELS[lang]), list(FRICATIVES[lang]) + ["."]
    return [s for _ in range(n_syllables) for s in (rng.choice(fricatives), rng.choice(vowels))]


def _speaker_sets(rng, n_train, n_eval):
    sets = {}
    for domain, spec in DOMAINS.items():
        for split, count in (("train", n_train), ("eval", n_eval)):
            prefix = f"{domain[:3]}{split[0]}"
            sets[(domain, split)] = [
                draw_speaker(rng, f"{prefix}{i:03d}") for i in range(count)
            ]
    return sets


def _write_utterance(rng, save_folder, domain, speaker, index, words, phrase):
    spec = DOMAINS[domain]
    wave = session_effects(rng, synthesize(rng, speaker, spec["lang"], words))
    rate = SAMPLE_RATE
    if spec["channel"] == "telephone":
        (wave, _), rate = telephone_channel(rng, wave, HANDSET_LINE), TELEPHONE_RATE
    utt_id = f"{speaker['spk_id']}_{index:03d}"
    path = os.path.join(save_folder, "wav", domain, speaker["spk_id"], f"{utt_id}.wav")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, np.clip(wave, -1, 1).astype(np.float32), rate, subtype="PCM_16")
    columns = dict(lang=spec["lang"], channel=spec["channel"], gender=speaker["gender"],
                   session=utt_id)
    if phrase:
        columns["phrase"] = phrase
    return utterance_row(utt_id, path, speaker["spk_id"], domain, **columns)


def _trials(rows, typed):
    """All pairs of utterances; text-dependent trials get SdSV types."""
    trials = []
    for enrol, test in itertools.combinations(rows, 2):
        same_spk = enrol["spk_id"] == test["spk_id"]
        if not typed:
            trials.append((int(same_spk), enrol["ID"], test["ID"]))
            continue
        same_phrase = enrol["phrase"] == test["phrase"]
        kind = ("T" if same_spk else "I") + ("C" if same_phrase else "W")
        trials.append((int(kind == "TC"), enrol["ID"], test["ID"], kind))
    return trials


def prepare_demo(save_folder, seed=1234, n_train_speakers=24, n_eval_speakers=10,
                 utts_per_train_speaker=10, utts_per_eval_speaker=6, phrases=0):
    """Generate the demo corpus, its manifests and trial lists.

    Does nothing when ``save_folder`` already holds a corpus made with the
    same arguments.

    Arguments
    ---------
    save_folder : str
        Where audio, manifests and trial lists go.
    seed : int
        Everything is a function of this seed.
    n_train_speakers : int
        Speakers per domain in the training splits.
    n_eval_speakers : int
        Speakers per domain in the evaluation splits.
    utts_per_train_speaker : int
        Utterances per training speaker.
    utts_per_eval_speaker : int
        Utterances per evaluation speaker.
    phrases : int
        0 for free text; N > 0 for text-dependent mode with N phrases per
        language, N below ``utts_per_eval_speaker``.

    Returns
    -------
    dict
        Paths of the written files, keyed ``source_train``, ``target_train``,
        ``source_eval``, ``target_eval``, ``eval``, ``trials_source``, ``trials_target``.

    Raises
    ------
    OptionError
        When a numeric option is outside its range.

    Example
    -------
    >>> import tempfile
    >>> from local.data.manifest_io import read_trials
    >>> from local.data.validation import validate
    >>> paths = prepare_demo(tempfile.mkdtemp(), n_train_speakers=2, n_eval_speakers=2,
    ...                      utts_per_train_speaker=1, utts_per_eval_speaker=2)
    >>> len(validate(paths["source_train"])), len(read_trials(paths["trials_target"]))
    (2, 6)
    """
    check_option("n_train_speakers", n_train_speakers, AT_LEAST_ONE,
                 "the training speakers per domain", integer=True)
    check_option("n_eval_speakers", n_eval_speakers, AT_LEAST_TWO,
                 "the evaluation speakers per domain (non-target trials need two)", integer=True)
    check_option("utts_per_train_speaker", utts_per_train_speaker, AT_LEAST_ONE,
                 "the utterances per training speaker", integer=True)
    check_option("utts_per_eval_speaker", utts_per_eval_speaker, AT_LEAST_TWO,
                 "the utterances per evaluation speaker (target trials need two)", integer=True)
    # Utterance i of a speaker says phrase i mod N: a speaker says a phrase
    # twice, the only target trials (TC), with more utterances than phrases.
    check_option("phrases", phrases, pd.Interval(0, utts_per_eval_speaker - 1, closed="both"),
                 "0 for free text, else the phrases per language, fewer than the "
                 f"{utts_per_eval_speaker} utterances per evaluation speaker (target trials "
                 "need a phrase said twice)", integer=True)
    # Manifests name the audio by its resolved path, so that they work from any
    # working directory and the folder reached through a symbolic link is the
    # same corpus, not generated again in place; a corpus moved elsewhere is.
    options = dict(folder=os.path.realpath(save_folder), seed=seed,
                   n_train_speakers=n_train_speakers,
                   n_eval_speakers=n_eval_speakers,
                   utts_per_train_speaker=utts_per_train_speaker,
                   utts_per_eval_speaker=utts_per_eval_speaker, phrases=phrases)
    outputs = [f"{domain}_{split}.csv" for split in ("train", "eval") for domain in DOMAINS]
    outputs += ["eval.csv"] + [f"trials_{domain}.txt" for domain in DOMAINS]
    return prepare_corpus("Demo corpus", save_folder, options, outputs,
                          functools.partial(_generate, options), generated=True)


def _generate(options):
    """Audio, manifests and trial lists of the corpus that ``options`` describe."""
    rng = np.random.default_rng(options["seed"])
    phrases = options["phrases"]
    phrase_words = {
        lang: [random_words(rng, lang, 5) for _ in range(phrases)] for lang in VOWELS
    }
    speakers = _speaker_sets(rng, options["n_train_speakers"], options["n_eval_speakers"])
    tables = {"eval": []}
    for (domain, split), group in speakers.items():
        lang = DOMAINS[domain]["lang"]
        count = options[f"utts_per_{split}_speaker"]
        rows = []
        for speaker, index in itertools.product(group, range(count)):
            if phrases:
                phrase = index % phrases
                words, label = phrase_words[lang][phrase], f"{phrase + 1:02d}"
            else:
                words, label = random_words(rng, lang, int(rng.integers(6, 11))), ""
            rows.append(_write_utterance(rng, options["folder"], domain, speaker, index, words,
                                         label))
        tables[f"{domain}_{split}"] = rows
        if split == "eval":
            tables["eval"] += rows
            tables[f"trials_{domain}"] = _trials(rows, typed=bool(phrases))
    return tables


main = preparation_command(
    prepare_demo, "Generate the two-domain demo corpus.",
    option("--save_folder", required=True,
           help="where the audio, manifests and trial lists go"),
    option("--seed", type=int, default=1234, help="everything is a function of this seed"),
    option("--phrases", type=int, default=0,
           help="text-dependent mode with this many phrases per language"),
)


if __name__ == "__main__":
    sys.exit(main())
