"""Check a manifest, optionally its trial list and enrolment table, and its audio.

The formats are described in :mod:`local.data.schema`; the checks are
:func:`local.data.validation.validate`'s.
"""

import argparse
import sys

from local.data.validation import validate
from local.errors import ManifestError


def main(argv=None):
    """Command line: ``python -m data_prep.manifest MANIFEST [--trials T] [--enrolment E]``.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("--trials")
    parser.add_argument("--enrolment")
    parser.add_argument("--no-audio", action="store_true", help="skip opening the audio")
    args = parser.parse_args(argv)
    try:
        manifest = validate(args.manifest, args.trials, args.enrolment, not args.no_audio)
    except ManifestError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{args.manifest}: {len(manifest)} rows, {manifest['spk_id'].nunique()} speakers, OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
