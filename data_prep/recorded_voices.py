"""A two-domain corpus spoken by TTS voices built from recordings of real speakers.

Where the demo corpus has synthetic voices from a source-filter model, this
condition has voices that Festival and Flite built from recordings of real
people (diphone, HTS and cluster-unit voices of Debian's ``festvox-*`` and
``flite`` packages), so that defaults chosen on it are not tuned to the
demo's voice model. The mismatch is in language and channel:

* **source**: English, Italian and Catalan voices, wideband 16 kHz;
* **target**: Czech, Finnish, Russian and Hindi voices through a telephone
  call (a band drawn per call, from 250-400 Hz to 3200-3500 Hz; 8 kHz, line
  noise, G.711 mu-law or A-law).

A *donor* is the recorded person, not the engine's voice file: CMU's kal and
slt exist in both Flite and Festival, and the NSK voices of Hindi, Marathi
and Telugu share one speaker; each donor is used once, through one engine,
and sits in exactly one split (:data:`DONORS`).

Sixteen donors are too few to train and evaluate on, so each donor gives
three speakers by speed perturbation, the convention of Kaldi's and
WeSpeaker's VoxCeleb recipes (resampling by 0.9, 1.0 and 1.1: pitch, formants
and rate move together, as for a shorter or longer vocal tract). The three
speakers of a donor are labelled apart (``kal_sp090``, ``kal_sp100``, ...)
and share the donor's split, so that their pairs are hard non-target trials
within an evaluation list and never a leak between splits.

Each utterance says a different random sentence of its language, with a
random speaking rate and, where the engine allows it, pitch (Flite's
``duration_stretch``/``int_f0_target_mean``; Festival's ``Duration_Stretch``
and, for diphone voices, scaled F0 targets; HTS voices take the rate only, the
Russian cluster-unit voice neither). Everything is a function of the seed.

Splits (donors disjoint across splits)::

    source_train.csv   labelled source speakers           (training, speaker head)
    target_train.csv   target speakers, spk_id kept for     (training, domain branch:
                       analysis only                        the recipe never reads it)
    source_eval.csv    held-out source speakers    + trials_source.txt
    target_eval.csv    held-out target speakers    + trials_target.txt
    eval.csv           both evaluation sets

Trial lists hold as many target as non-target trials, drawn from all pairs.

Needs ``apt-get install flite festival festvox-kdlpc16k festvox-italp16k
festvox-itapc16k festvox-ca-ona-hts festvox-czech-dita festvox-czech-krb
festvox-czech-machac festvox-czech-ph festvox-suopuhe-lj festvox-suopuhe-mv
festvox-ru festvox-hi-nsk festival-hi`` (:data:`APT_INSTALL`).

Command line::

    python -m data_prep.recorded_voices --save_folder data/recorded_voices [--seed 1]
"""

import functools
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import numpy as np
import soundfile
from scipy import signal

from data_prep.preparation import (
    AT_LEAST_ONE,
    AT_LEAST_TWO,
    check_option,
    preparation_command,
    prepare_corpus,
)
from data_prep.telephone import G711_LINE, TELEPHONE_RATE, telephone_channel
from local.cli import option
from local.data.schema import SAMPLE_RATE, utterance_row
from local.errors import ManifestError

DOMAINS = {"source": "wideband", "target": "telephone"}
GROUPS = [(domain, split) for domain in DOMAINS for split in ("train", "eval")]
# donor: engine, voice, package, language, sex, domain, split; `also` names the
# other voice files of the same recorded person, which are not used.
DONORS = {
    "kal": dict(engine="flite", voice="kal16", package="flite", lang="en", sex="m",
                domain="source", split="train",
                also="flite kal (8 kHz), festival kal_diphone (festvox-kallpc16k)"),
    "awb": dict(engine="flite", voice="awb", package="flite", lang="en", sex="m",
                domain="source", split="train", also="flite awb_time"),
    "slt": dict(engine="flite", voice="slt", package="flite", lang="en", sex="f",
                domain="source", split="train",
                also="festival cmu_us_slt_arctic_hts (festvox-us-slt-hts)"),
    "pc": dict(engine="festival", voice="pc_diphone", package="festvox-itapc16k", lang="it",
               sex="m", domain="source", split="train"),
    "lp": dict(engine="festival", voice="lp_diphone", package="festvox-italp16k", lang="it",
               sex="f", domain="source", split="train"),
    "ked": dict(engine="festival", voice="ked_diphone", package="festvox-kdlpc16k", lang="en",
                sex="m", domain="source", split="eval"),
    "rms": dict(engine="flite", voice="rms", package="flite", lang="en", sex="m",
                domain="source", split="eval"),
    "ona": dict(engine="festival", voice="upc_ca_ona_hts", package="festvox-ca-ona-hts",
                lang="ca", sex="f", domain="source", split="eval"),
    "dita": dict(engine="festival", voice="czech_dita", package="festvox-czech-dita",
                 lang="cs", sex="f", domain="target", split="train"),
    "krb": dict(engine="festival", voice="czech_krb", package="festvox-czech-krb", lang="cs",
                sex="m", domain="target", split="train"),
    "machac": dict(engine="festival", voice="czech_machac", package="festvox-czech-machac",
                   lang="cs", sex="m", domain="target", split="train"),
    "mv": dict(engine="festival", voice="hy_fi_mv_diphone", package="festvox-suopuhe-mv",
               lang="fi", sex="m", domain="target", split="train"),
    "nsh": dict(engine="festival", voice="msu_ru_nsh_clunits", package="festvox-ru",
                lang="ru", sex="m", domain="target", split="train"),
    "ph": dict(engine="festival", voice="czech_ph", package="festvox-czech-ph", lang="cs",
               sex="m", domain="target", split="eval"),
    "lj": dict(engine="festival", voice="suo_fi_lj_diphone", package="festvox-suopuhe-lj",
               lang="fi", sex="f", domain="target", split="eval"),
    "nsk": dict(engine="festival", voice="hindi_NSK_diphone",
                package="festvox-hi-nsk festival-hi", lang="hi", sex="m", domain="target",
                split="eval", also="festival marathi_NSK_diphone, telugu_NSK_diphone"),
}
APT_INSTALL = "apt-get install " + " ".join(dict.fromkeys(
    ["flite", "festival"] + [p for d in DONORS.values() for p in d["package"].split()]))
# Speed perturbation factors: one speaker per factor and donor.
SPEEDS = (Fraction(9, 10), Fraction(1), Fraction(11, 10))
# Words the voices pronounce, per language (ASCII where the voice's lexicon allows).
WORDS = {
    "en": "the a house river morning yellow garden quickly seven people window travel "
          "summer bright letter family open small green market winter friend table "
          "music stone paper road silver kitchen doctor orange ocean slowly mountain "
          "evening village forest question number simple water".split(),
    "it": "la casa fiume mattina giallo giardino sette persone finestra viaggio estate "
          "lettera famiglia aperto piccolo verde mercato inverno amico tavola musica "
          "pietra carta strada argento cucina dottore arancia mare montagna sera "
          "villaggio bosco domanda numero semplice acqua".split(),
    "ca": "la casa riu mati groc jardi set persones finestra viatge estiu carta familia "
          "obert petit verd mercat hivern amic taula musica pedra paper carrer plata "
          "cuina metge taronja mar muntanya vespre poble bosc pregunta numero aigua".split(),
    "cs": "dum reka rano zluta zahrada sedm lide okno cesta leto dopis rodina otevreno "
          "maly zeleny trh zima pritel stul hudba kamen papir silnice kuchyne doktor "
          "more hora vecer vesnice les otazka cislo voda mesto kniha pes kocka".split(),
    "fi": "talo joki aamu keltainen puutarha seitseman ihmiset ikkuna matka kesa kirje "
          "perhe auki pieni vihrea tori talvi ystava poyta musiikki kivi paperi tie "
          "hopea keittio laakari meri vuori ilta kyla metsa kysymys numero vesi kaupunki "
          "kirja koira kissa".split(),
    "ru": "дом река утро жёлтый сад семь люди окно дорога лето письмо семья открытый "
          "маленький зелёный рынок зима друг стол музыка камень бумага улица серебро "
          "кухня доктор море гора вечер деревня лес вопрос число вода город книга "
          "собака".split(),
    "hi": "घर नदी सुबह पीला बगीचा सात लोग खिड़की यात्रा गर्मी पत्र परिवार खुला छोटा हरा "
          "बाज़ार सर्दी दोस्त मेज़ संगीत पत्थर कागज़ सड़क चाँदी रसोई डॉक्टर समुद्र पहाड़ शाम "
          "गाँव जंगल सवाल संख्या पानी शहर किताब कुत्ता".split(),
}
# Per-utterance prosody: speaking-rate stretch and F0 scale, uniform in these ranges.
STRETCH_RANGE = (0.85, 1.15)
F0_SCALE_RANGE = (0.9, 1.1)
# Festival: rate by Duration_Stretch (HTS voices: the engine's -r speed), F0 by
# scaling the F0 targets the intonation module predicts (used by diphone voices).
FESTIVAL_PRELUDE = """
(set! h6_f0_scale 1.0)
(set! h6_int_targets Int_Targets)
(define (Int_Targets utt)
  (h6_int_targets utt)
  (mapcar (lambda (target) (item.set_feat target "f0" (* h6_f0_scale (item.feat target "f0"))))
          (utt.relation.items utt 'Target))
  utt)
(define (h6_say text stretch f0_scale path)
  (Parameter.set 'Duration_Stretch stretch)
  (set! h6_f0_scale f0_scale)
  (if (boundp 'h6_hts_params)
      (set! hts_engine_params (append h6_hts_params (list (list "-r" (/ 1.0 stretch))))))
  (utt.save.wave (utt.synth (eval (list 'Utterance 'Text text))) path 'riff))
"""
FLITE_F0_MEAN = {"m": 110.0, "f": 180.0}


class SynthesisError(ManifestError):
    """A TTS engine or voice is missing or failed."""


def _missing(donor, what):
    spec = DONORS[donor]
    raise SynthesisError(
        f"{spec['engine']} voice {spec['voice']} (donor {donor}): {what}\n"
        f"Fix: {APT_INSTALL}  (this voice: apt-get install {spec['package']})")


def check_voices(donors):
    """Fail early, naming the package, when an engine or voice is not installed.

    Arguments
    ---------
    donors : list of str
        Keys of :data:`DONORS`.

    Raises
    ------
    SynthesisError
        Naming the first missing engine or voice and the ``apt-get`` line.
    """
    festival_voices = None
    for donor in donors:
        spec = DONORS[donor]
        if shutil.which(spec["engine"]) is None:
            _missing(donor, f"the {spec['engine']} program is not installed")
        if spec["engine"] == "flite":
            listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
            if spec["voice"] not in listed.split():
                _missing(donor, "flite does not list this voice (flite -lv)")
            continue
        if festival_voices is None:
            listed = subprocess.run(["festival", "--pipe"], input="(print (voice.list))",
                                    capture_output=True, text=True).stdout
            festival_voices = listed.replace("(", " ").replace(")", " ").split()
        if spec["voice"] not in festival_voices:
            _missing(donor, "festival does not list this voice ((voice.list))")


def synthesise(donor, requests):
    """Speak ``requests`` with ``donor``'s voice: one engine process per donor.

    Arguments
    ---------
    donor : str
        Key of :data:`DONORS`.
    requests : list of dict
        Each with ``text``, ``stretch`` (duration factor), ``f0_scale`` and
        ``path`` (the WAV file to write, at the voice's own rate).

    Raises
    ------
    SynthesisError
        When the engine fails or leaves a file unwritten.
    """
    spec = DONORS[donor]
    if spec["engine"] == "flite":
        for request in requests:
            f0 = FLITE_F0_MEAN[spec["sex"]] * request["f0_scale"]
            command = ["flite", "-voice", spec["voice"], "-t", request["text"],
                       "--setf", f"duration_stretch={request['stretch']:.3f}",
                       "--setf", f"int_f0_target_mean={f0:.1f}", "-o", request["path"]]
            _run(donor, command)
    else:
        hts = "(set! h6_hts_params hts_engine_params)\n" if "hts" in spec["voice"] else ""
        lines = [FESTIVAL_PRELUDE, f"(voice_{spec['voice']})\n", hts]
        for request in requests:
            text = request["text"].replace('"', "")
            lines.append(f'(h6_say "{text}" {request["stretch"]:.3f} '
                         f'{request["f0_scale"]:.3f} "{request["path"]}")\n')
        with tempfile.NamedTemporaryFile("w", suffix=".scm", encoding="utf-8",
                                         delete=False) as script:
            script.writelines(lines)
        try:
            _run(donor, ["festival", "-b", script.name])
        finally:
            os.remove(script.name)
    unwritten = [r["path"] for r in requests if not os.path.isfile(r["path"])]
    if unwritten:
        _missing(donor, f"the engine wrote no audio for {unwritten[0]}")


def _run(donor, command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        _missing(donor, f"{' '.join(command[:3])} ... failed: {result.stderr.strip()[-300:]}")


def resample(wave, rate_in, rate_out):
    """Polyphase resampling between any two integer rates.

    Arguments
    ---------
    wave : numpy.ndarray
        Samples.
    rate_in, rate_out : int or fractions.Fraction
        Rates, in Hz.

    Returns
    -------
    numpy.ndarray
        The resampled samples.

    Example
    -------
    >>> resample(np.zeros(22050), 22050, 16000).shape
    (16000,)
    """
    ratio = Fraction(rate_out) / Fraction(rate_in)
    return signal.resample_poly(wave, ratio.numerator, ratio.denominator)


def random_sentence(rng, lang):
    """Five to nine random words of ``lang``.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random source.
    lang : str
        Key of :data:`WORDS`.

    Returns
    -------
    str
        The sentence.

    Example
    -------
    >>> len(random_sentence(np.random.default_rng(0), "fi").split()) in range(5, 10)
    True
    """
    return " ".join(rng.choice(WORDS[lang], size=int(rng.integers(5, 10))))


def speakers(domain_split):
    """Speakers of one (domain, split): each donor there times each speed.

    Arguments
    ---------
    domain_split : tuple of str
        ``("source" | "target", "train" | "eval")``.

    Returns
    -------
    list of tuple
        ``(donor, speed, spk_id)``.

    Example
    -------
    >>> speakers(("source", "eval"))[:2]
    [('ked', Fraction(9, 10), 'ked_sp090'), ('ked', Fraction(1, 1), 'ked_sp100')]
    """
    domain, split = domain_split
    return [(donor, speed, f"{donor}_sp{int(speed * 100):03d}")
            for donor, spec in DONORS.items()
            if spec["domain"] == domain and spec["split"] == split for speed in SPEEDS]


def balanced_trials(rng, rows, n_per_label):
    """Up to ``n_per_label`` target and as many non-target trials, from all pairs.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random source.
    rows : list of dict
        Manifest rows (``ID``, ``spk_id``).
    n_per_label : int
        Trials per label; fewer when there are not that many target pairs.

    Returns
    -------
    list of tuple
        ``(label, enrol, test)``, targets and non-targets interleaved.

    Example
    -------
    >>> rows = [dict(ID=f"u{i}", spk_id=f"s{i % 2}") for i in range(4)]
    >>> sorted(label for label, _, _ in balanced_trials(np.random.default_rng(0), rows, 5))
    [0, 0, 1, 1]
    """
    pairs = {0: [], 1: []}
    for enrol, test in itertools.combinations(rows, 2):
        pairs[int(enrol["spk_id"] == test["spk_id"])].append((enrol["ID"], test["ID"]))
    count = min(n_per_label, len(pairs[1]), len(pairs[0]))
    chosen = {label: [pairs[label][i] for i in
                      np.sort(rng.choice(len(pairs[label]), size=count, replace=False))]
              for label in (1, 0)}
    return [(label, *chosen[label][i]) for i in range(count) for label in (1, 0)]


def _render(raw_path, out_path, speed, domain, rng):
    """Engine output to corpus audio (16 kHz, speed, level, channel); returns the channel."""
    wave, rate = soundfile.read(raw_path, dtype="float64")
    wave = resample(wave, rate * speed, SAMPLE_RATE)  # played `speed` times faster
    wave = rng.uniform(0.3, 0.9) * wave / (np.abs(wave).max() + 1e-9)
    channel, rate = DOMAINS[domain], SAMPLE_RATE
    if domain == "target":
        (wave, law), rate = telephone_channel(rng, wave, G711_LINE), TELEPHONE_RATE
        channel = f"{channel}_{law}law"
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    soundfile.write(out_path, np.clip(wave, -1, 1).astype(np.float32), rate, subtype="PCM_16")
    return channel


def prepare_recorded_voices(save_folder, seed=1, utts_per_speaker=30, trials_per_label=3000,
                            workers=2, synthesiser=synthesise):
    """Generate the recorded-voice corpus, its manifests and balanced trial lists.

    Does nothing when ``save_folder`` already holds a corpus made with the
    same arguments.

    Arguments
    ---------
    save_folder : str
        Where audio, manifests and trial lists go.
    seed : int
        Texts, prosody, levels and channels are a function of this seed.
    utts_per_speaker : int
        Utterances per speaker (donor x speed) in every split.
    trials_per_label : int
        Target trials, and as many non-target trials, per evaluation list.
    workers : int
        Engine processes run at once (one donor each).
    synthesiser : callable
        ``synthesiser(donor, requests)`` as :func:`synthesise`; tests inject a
        fake one, and only the default checks that the voices are installed.

    Returns
    -------
    dict
        Paths of the written files, keyed ``source_train``, ``target_train``,
        ``source_eval``, ``target_eval``, ``eval``, ``trials_source``, ``trials_target``.

    Raises
    ------
    OptionError
        When a numeric option is outside its range.
    SynthesisError
        When an engine or voice is missing or fails.
    """
    check_option("utts_per_speaker", utts_per_speaker, AT_LEAST_TWO,
                 "the utterances per speaker (target trials need two)", integer=True)
    check_option("trials_per_label", trials_per_label, AT_LEAST_ONE,
                 "the target trials, and as many non-target trials, per list", integer=True)
    check_option("workers", workers, AT_LEAST_ONE, "the engine processes run at once",
                 integer=True)
    options = dict(folder=os.path.realpath(save_folder), seed=seed,  # as prepare_demo's
                   utts_per_speaker=utts_per_speaker, trials_per_label=trials_per_label)
    outputs = [f"{domain}_{split}.csv" for domain, split in GROUPS]
    outputs += ["eval.csv"] + [f"trials_{domain}.txt" for domain in DOMAINS]
    generate = functools.partial(_generate, options, workers, synthesiser)
    return prepare_corpus("Recorded-voice corpus", save_folder, options, outputs, generate,
                          generated=True)


def _generate(options, workers, synthesiser):
    """Audio, manifests and trial lists of the corpus that ``options`` describe."""
    if synthesiser is synthesise:
        check_voices(list(DONORS))
    folder = options["folder"]
    rng = np.random.default_rng(options["seed"])
    plan = {donor: [] for donor in DONORS}
    for group in GROUPS:
        for donor, speed, spk_id in speakers(group):
            lang, sex = DONORS[donor]["lang"], DONORS[donor]["sex"]
            for index in range(options["utts_per_speaker"]):
                utt_id = f"{spk_id}_{index:03d}"
                plan[donor].append(dict(
                    group=group, spk_id=spk_id, speed=speed, utt_id=utt_id, lang=lang,
                    gender=sex, text=random_sentence(rng, lang),
                    stretch=rng.uniform(*STRETCH_RANGE), f0_scale=rng.uniform(*F0_SCALE_RANGE),
                    path=os.path.join(folder, "engine", donor, f"{utt_id}.wav"),
                    seed=int(rng.integers(2**31))))
    for requests in plan.values():
        os.makedirs(os.path.dirname(requests[0]["path"]), exist_ok=True)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(synthesiser, plan, plan.values()))
    rows = {group: [] for group in GROUPS}
    for donor, requests in plan.items():
        for request in requests:
            domain = request["group"][0]
            wav = os.path.join(folder, "wav", domain, request["spk_id"], f"{request['utt_id']}.wav")
            channel = _render(request["path"], wav, request["speed"], domain,
                              np.random.default_rng(request["seed"]))
            rows[request["group"]].append(utterance_row(
                request["utt_id"], wav, request["spk_id"], domain, lang=request["lang"],
                gender=request["gender"], session=request["utt_id"], channel=channel))
    shutil.rmtree(os.path.join(folder, "engine"))
    tables = {f"{domain}_{split}": group_rows for (domain, split), group_rows in rows.items()}
    for domain in DOMAINS:
        tables[f"trials_{domain}"] = balanced_trials(rng, tables[f"{domain}_eval"],
                                                     options["trials_per_label"])
    tables["eval"] = tables["source_eval"] + tables["target_eval"]
    return tables


main = preparation_command(
    prepare_recorded_voices, "Generate the recorded-voice corpus.",
    option("--save_folder", required=True,
           help="where the audio, manifests and trial lists go"),
    option("--seed", type=int, default=1,
           help="texts, prosody, levels and channels are a function of this seed"),
    option("--workers", type=int, default=2,
           help="speech engine processes run at once (one voice each)"),
)


if __name__ == "__main__":
    sys.exit(main())
