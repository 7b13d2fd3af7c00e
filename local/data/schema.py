"""The one manifest schema every corpus is turned into, and a manifest row of an audio file.

A *manifest* is a SpeechBrain CSV with one row per utterance (or chunk)::

    ID,duration,wav,start,stop,spk_id,domain[,lang,channel,phrase,gender,session,sample_rate]

``start``/``stop`` are sample indices into ``wav`` at the file's own rate,
``duration`` is ``(stop - start) / sample_rate`` in seconds and ``sample_rate``
(optional, default 16000) is the rate the file is stored at; the data pipeline
resamples anything else to 16 kHz on the fly. ``spk_id`` may be empty for
utterances whose speaker is unknown (unlabelled target data, evaluation
utterances of a challenge without a key).

A *trial list* has VoxCeleb's form, one trial a line: ``label enrol test``
(``1`` target, ``0`` non-target), optionally followed by a trial type such as
DeepMine's ``TC``/``TW``/``IC``/``IW``. ``enrol`` is a manifest ID or the ID of
an enrolment model listed in an *enrolment table*: a CSV
``model_id,utt_ids[,spk_id,phrase]`` with space-separated utterance IDs.

:func:`local.data.validation.validate` checks the three against each other
and against the audio, and is what training and evaluation call before they
start.
"""

import os

import soundfile

from local.errors import fail

REQUIRED_COLUMNS = ["ID", "duration", "wav", "start", "stop", "spk_id", "domain"]
OPTIONAL_COLUMNS = ["lang", "channel", "phrase", "gender", "session", "sample_rate"]
TRIAL_COLUMNS = ["label", "enrol", "test", "trial_type"]
TRIAL_LABELS = ("0", "1")
# SdSV (DeepMine) trial types, target or impostor speaker and correct or wrong
# phrase: whether the two sides have the same speaker and the same phrase.
SDSV_TRIAL_TYPES = {"TC": (True, True), "TW": (True, False), "IC": (False, True),
                    "IW": (False, False)}
# The label of each: only TC is a target trial.
SDSV_TRIAL_LABELS = {kind: int(same_speaker and same_phrase)
                     for kind, (same_speaker, same_phrase) in SDSV_TRIAL_TYPES.items()}
# The columns, of the manifest and the enrolment table, that a trial type says are the
# same or differ on its two sides (in the order of SDSV_TRIAL_TYPES' pairs).
SDSV_TRIAL_COLUMNS = ("spk_id", "phrase")
# The column of manifest_io.read_fields that holds what follows the expected fields.
REST = "rest"
ENROLMENT_COLUMNS = ["model_id", "utt_ids"]
# The rate the models take, and the rate of a manifest row that names none.
SAMPLE_RATE = 16000
# A duration may differ from (stop - start) / sample_rate by rounding only.
DURATION_TOLERANCE_S = 0.01


def audio_info(path):
    """Return ``(sample_rate, num_frames)`` of an audio file.

    Arguments
    ---------
    path : str
        Audio file readable by libsndfile (wav, flac, ...).

    Returns
    -------
    tuple of int
        The sample rate and the number of frames.

    Raises
    ------
    ManifestError
        When the file is missing, a folder or unreadable (:func:`unreadable`),
        or coded so that libsndfile cannot seek in it (GSM 6.10 or G.72x
        samples): its header reads, but a row or training crop that starts
        inside it could not be read.

    Example
    -------
    >>> import os, tempfile
    >>> import numpy as np
    >>> wav = os.path.join(tempfile.mkdtemp(), "u1.wav")
    >>> soundfile.write(wav, np.zeros(8000), 8000)
    >>> audio_info(wav)
    (8000, 8000)
    >>> soundfile.write(wav, np.zeros(8000), 8000, subtype="GSM610")
    >>> audio_info(wav)
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: /...u1.wav: GSM 6.10 samples, which libsndfile cannot read from a given sample on (a row or training crop that starts inside the file): convert it to PCM
    Fix: ...
    """
    try:
        with soundfile.SoundFile(path) as audio:
            rate, frames, seekable, coding = (audio.samplerate, audio.frames, audio.seekable(),
                                              audio.subtype_info)
    except Exception as err:  # libsndfile raises several types
        unreadable(path, err)
    if not seekable:
        fail(path, f"{coding} samples, which libsndfile cannot read from a given sample on (a "
                   "row or training crop that starts inside the file): convert it to PCM",
             fix="convert it to 16-bit PCM wav or flac (e.g. ffmpeg -i IN -c:a pcm_s16le "
                 "OUT.wav) and give the converted file in the manifest")
    return rate, frames


def unreadable(path, err):
    """Raise the message of an audio file that could not be read: missing, a folder, or not audio.

    Arguments
    ---------
    path : str
        The audio file.
    err : Exception
        What reading it raised.

    Raises
    ------
    ManifestError
        Always.

    Example
    -------
    >>> import tempfile
    >>> unreadable(tempfile.mkdtemp(), OSError("Format not recognised"))
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: /...: is a folder, not an audio file
    Fix: give the path of an audio file (wav, flac...) in the manifest's wav column
    """
    if os.path.isdir(path):
        fail(path, "is a folder, not an audio file",
             fix="give the path of an audio file (wav, flac...) in the manifest's wav column")
    if not os.path.isfile(path):
        where = ("" if os.path.isabs(path) else
                 f" (a relative path: looked for in the current directory {os.getcwd()})")
        fail(path, f"audio file does not exist{where}", fix="check the corpus folder")
    fail(path, f"cannot read audio ({err})",
         fix="convert it to wav or flac (e.g. ffmpeg -i IN -ar 16000 OUT.wav)")


def utterance_row(utt_id, wav, spk_id, domain, **columns):
    """Manifest row for a whole audio file, reading its length from the header.

    Arguments
    ---------
    utt_id : str
        Unique utterance ID.
    wav : str
        Path to the audio file.
    spk_id : str
        Speaker label ("" if unknown).
    domain : str
        Domain name (``voxceleb``, ``deepmine``, ...).
    **columns
        Optional schema columns (``lang``, ``channel``, ...).

    Returns
    -------
    dict
        One manifest row.

    Example
    -------
    >>> import os, tempfile
    >>> import numpy as np
    >>> wav = os.path.join(tempfile.mkdtemp(), "u1.wav")
    >>> soundfile.write(wav, np.zeros(4000), 8000)
    >>> row = utterance_row("u1", wav, "spk1", "demo", lang="l1")
    >>> row["duration"], row["stop"], row["sample_rate"], row["lang"]
    (0.5, 4000, 8000, 'l1')
    """
    sample_rate, frames = audio_info(wav)
    row = {
        "ID": utt_id,
        "duration": round(frames / sample_rate, 4),
        "wav": wav,
        "start": 0,
        "stop": frames,
        "spk_id": spk_id,
        "domain": domain,
    }
    row.update(columns)
    row["sample_rate"] = sample_rate
    return row
