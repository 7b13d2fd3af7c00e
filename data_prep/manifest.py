"""Check a manifest, optionally its trial list and enrolment table, and its audio.

The formats are described in :mod:`local.data.schema`; the checks are
:func:`local.data.validation.validate`'s.
"""

import sys

from local.cli import command, option
from local.data.validation import validate
from local.errors import ManifestError
from local.settings import COMMON_HPARAMS, plain_values

# The lengths that training and evaluation embed whole, by default.
DEFAULTS = plain_values(COMMON_HPARAMS)


def check_files(manifest, trials=None, enrolment=None, no_audio=False, train=(),
                allow_speaker_overlap=False, min_embed_seconds=None, max_embed_seconds=None):
    """Command line: ``python -m data_prep.manifest MANIFEST [--trials T] [--enrolment E]
    [--train TRAIN ...]``.

    Arguments
    ---------
    manifest, trials, enrolment : str
        The files, as :func:`local.data.validation.validate` takes them
        (``trials`` and ``enrolment`` may be None).
    no_audio : bool
        Skip opening the audio.
    train : sequence of str
        Training manifests that must share no speaker or file with the trials.
    allow_speaker_overlap : bool
        Warn of shared speakers instead of refusing them.
    min_embed_seconds, max_embed_seconds : float, optional
        With ``trials``, the shortest and longest rows they may score, as
        training and evaluation refuse them (None: no limit). A training
        manifest's rows have none: its crops repeat a short row.

    Returns
    -------
    int
        0 when the files are valid, 1 otherwise (the problem printed to stderr).

    Example
    -------
    >>> import os, tempfile
    >>> from local.data.manifest_io import write_manifest
    >>> path = os.path.join(tempfile.mkdtemp(), "train.csv")
    >>> write_manifest([{"ID": "u1", "duration": 1.0, "wav": "u1.wav", "start": 0,
    ...                  "stop": 16000, "spk_id": "s1", "domain": "demo"}], path)
    >>> main([path, "--no-audio"])
    /.../train.csv: 1 rows, 1 speakers, OK
    0
    """
    try:
        table = validate(manifest, trials, enrolment, not no_audio, train or (),
                         allow_speaker_overlap,
                         (min_embed_seconds, max_embed_seconds) if trials else (None, None))
    except ManifestError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{manifest}: {len(table)} rows, {table['spk_id'].nunique()} speakers, OK")
    return 0


main = command(
    check_files, __doc__,
    option("manifest", help="the manifest (CSV) to check"),
    option("--trials", help="a trial list whose IDs the manifest must hold"),
    option("--enrolment", help="the enrolment table of the trial list's models"),
    option("--no-audio", action="store_true", help="skip opening the audio"),
    option("--train", nargs="+", help="training manifests that must share no speaker "
                                      "(spk_id) or audio file with the trials"),
    option("--allow-speaker-overlap", action="store_true",
           help="warn of speakers shared with --train instead of refusing them"),
    option("--min-embed-seconds", type=float, default=DEFAULTS["min_embed_seconds"],
           help="the shortest row the trials may score (default: hparams/common.yaml's "
                "min_embed_seconds, %(default)s)"),
    option("--max-embed-seconds", type=float, default=DEFAULTS["max_embed_seconds"],
           help="the longest row the trials may score (default: hparams/common.yaml's "
                "max_embed_seconds, %(default)s)"),
)


if __name__ == "__main__":
    sys.exit(main())
