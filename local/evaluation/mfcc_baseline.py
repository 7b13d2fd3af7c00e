"""A speaker-independent reference point: mean MFCC vectors + cosine scoring.

No training at all: each utterance is the mean of its MFCC frames without c0,
standardised over the utterances of the trial list (so no channel
normalisation beyond a global one). Its EER tells how hard a trial
list is before any model is involved; on the demo corpus it shows that the
target (telephone, other language) trials are harder than the source ones.

An enrolment model (a trial list with an enrolment table, as SdSV's) is the
normalised mean of its utterances' vectors, as the recipe scores it. Each
trial list is checked against the manifest (and the enrolment table) before
any audio is read.

Command line::

    python -m local.evaluation.mfcc_baseline --manifest data/demo/eval.csv \
        --trials data/demo/trials_source.txt data/demo/trials_target.txt \
        [--enrolment enrolment.csv]
"""

import torch
from speechbrain.lobes.features import MFCC

from local.cli import command, option
from local.data.audio import load_segment
from local.data.manifest_io import read_enrolment, read_manifest, read_trials
from local.data.validation import validate
from local.errors import exit_on_bad_input
from local.evaluation.metrics import eer
from local.evaluation.scoring import score_trials


def mean_mfcc_embeddings(manifest):
    """Mean MFCC vector of every manifest row.

    Arguments
    ---------
    manifest : pandas.DataFrame
        As from :func:`local.data.manifest_io.read_manifest`.

    Returns
    -------
    dict
        ``{ID: tensor [n_mfcc]}``.

    Example
    -------
    >>> import os, tempfile, numpy, soundfile, pandas
    >>> wav = os.path.join(tempfile.mkdtemp(), "u1.wav")
    >>> soundfile.write(wav, numpy.random.default_rng(0).uniform(-0.1, 0.1, 8000), 16000)
    >>> manifest = pandas.DataFrame({"ID": ["u1"], "wav": [wav], "start": [0], "stop": [8000],
    ...                              "sample_rate": [16000]})
    >>> mean_mfcc_embeddings(manifest)["u1"].shape
    torch.Size([20])
    """
    mfcc = MFCC(deltas=False, context=False, n_mfcc=20)
    embeddings = {}
    with torch.no_grad():
        for row in manifest.itertuples():
            wave = load_segment(row.wav, row.start, row.stop, row.sample_rate)
            embeddings[row.ID] = mfcc(wave.unsqueeze(0)).mean(dim=1).squeeze(0)
    return embeddings


def baseline_eer(embeddings, trials, models=None):
    """EER of cosine scores between standardised mean MFCC vectors.

    Arguments
    ---------
    embeddings : dict
        From :func:`mean_mfcc_embeddings`.
    trials : pandas.DataFrame
        From :func:`local.data.manifest_io.read_trials`.
    models : dict, optional
        ``{model ID: [utterance IDs]}`` of the enrolment models the trials
        name (:func:`local.data.manifest_io.read_enrolment`).

    Returns
    -------
    float
        EER as a fraction.

    Example
    -------
    >>> import pandas
    >>> vectors = {"a1": [0.0, 1.0, 0.0], "a2": [0.0, 1.0, 0.1],
    ...            "b1": [0.0, 0.0, 1.0], "b2": [0.0, 0.1, 1.0]}
    >>> embeddings = {utt: torch.tensor(vector) for utt, vector in vectors.items()}
    >>> trials = pandas.DataFrame({"label": [1, 0, 1, 0], "enrol": ["a1", "a1", "b1", "a2"],
    ...                            "test": ["a2", "b1", "b2", "b2"]})
    >>> baseline_eer(embeddings, trials)
    0.0
    >>> baseline_eer(embeddings, trials.assign(enrol=["m_a", "m_a", "b1", "a2"]),
    ...              {"m_a": ["a1", "a2"]})
    0.0
    """
    models = models or {}
    ids = sorted({utt for side in set(trials["enrol"]) for utt in models.get(side, [side])}
                 | set(trials["test"]))
    vectors = torch.stack([embeddings[utt][1:] for utt in ids])
    vectors = (vectors - vectors.mean(dim=0)) / vectors.std(dim=0)
    scores = score_trials(dict(zip(ids, vectors)), trials, models)
    return eer(scores, trials["label"].to_numpy())


def print_baseline_eers(manifest, trials, enrolment=None):
    """Print the baseline EER of each trial list.

    Arguments
    ---------
    manifest : str
        The manifest of every utterance the trial lists name.
    trials : list of str
        The trial lists.
    enrolment : str, optional
        The enrolment table of the models the trial lists name.

    Example
    -------
    >>> import os, tempfile, numpy, soundfile
    >>> from local.data.manifest_io import write_manifest, write_trials
    >>> from local.data.schema import utterance_row
    >>> folder, rng = tempfile.mkdtemp(), numpy.random.default_rng(0)
    >>> rows = []
    >>> for utt, spk in [("a1", "a"), ("a2", "a"), ("b1", "b")]:
    ...     wav = os.path.join(folder, f"{utt}.wav")
    ...     soundfile.write(wav, rng.uniform(-0.1, 0.1, 8000), 16000)
    ...     rows.append(utterance_row(utt, wav, spk, "demo"))
    >>> write_manifest(rows, os.path.join(folder, "eval.csv"))
    >>> write_trials([(1, "a1", "a2"), (0, "a1", "b1")], os.path.join(folder, "trials.txt"))
    >>> main(["--manifest", os.path.join(folder, "eval.csv"),
    ...       "--trials", os.path.join(folder, "trials.txt")])
    /.../trials.txt: mean-MFCC cosine EER ...%
    """
    for path in trials:
        validate(manifest, path, enrolment, check_audio=False)
    models = read_enrolment(enrolment)[0] if enrolment else {}
    embeddings = mean_mfcc_embeddings(read_manifest(manifest))
    for path in trials:
        rate = baseline_eer(embeddings, read_trials(path), models)
        print(f"{path}: mean-MFCC cosine EER {100 * rate:.2f}%")


main = command(
    print_baseline_eers, __doc__,
    option("--manifest", required=True, help="the manifest of every utterance the trials name"),
    option("--trials", nargs="+", required=True, help="the trial lists to score"),
    option("--enrolment", help="the enrolment table of the models the trial lists name"),
)


if __name__ == "__main__":
    exit_on_bad_input(main)
