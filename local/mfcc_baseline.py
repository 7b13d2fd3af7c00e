"""A speaker-independent reference point: mean MFCC vectors + cosine scoring.

No training at all: each utterance is the mean of its MFCC frames without c0,
standardised over the utterances of the trial list (so no channel
normalisation beyond a global one). Its EER tells how hard a trial
list is before any model is involved; on the demo corpus it shows that the
target (telephone, other language) trials are harder than the source ones.

Command line::

    python -m local.mfcc_baseline --manifest data/demo/eval.csv \
        --trials data/demo/trials_source.txt data/demo/trials_target.txt
"""

import argparse

import torch
from speechbrain.lobes.features import MFCC
from speechbrain.utils.metric_stats import EER

from data_prep.manifest import read_manifest, read_trials
from local.audio import load_segment


def mean_mfcc_embeddings(manifest):
    """Mean MFCC vector of every manifest row.

    Arguments
    ---------
    manifest : pandas.DataFrame
        As from :func:`data_prep.manifest.read_manifest`.

    Returns
    -------
    dict
        ``{ID: tensor [n_mfcc]}``.
    """
    mfcc = MFCC(deltas=False, context=False, n_mfcc=20)
    embeddings = {}
    with torch.no_grad():
        for row in manifest.itertuples():
            wave = load_segment(row.wav, row.start, row.stop, row.sample_rate)
            embeddings[row.ID] = mfcc(wave.unsqueeze(0)).mean(dim=1).squeeze(0)
    return embeddings


def baseline_eer(embeddings, trials):
    """EER of cosine scores between standardised mean MFCC vectors.

    Arguments
    ---------
    embeddings : dict
        From :func:`mean_mfcc_embeddings`.
    trials : pandas.DataFrame
        From :func:`data_prep.manifest.read_trials`.

    Returns
    -------
    float
        EER as a fraction.
    """
    ids = sorted(set(trials["enrol"]) | set(trials["test"]))
    index = {utt: row for row, utt in enumerate(ids)}
    vectors = torch.stack([embeddings[utt][1:] for utt in ids])
    vectors = (vectors - vectors.mean(dim=0)) / vectors.std(dim=0)
    enrol = vectors[[index[utt] for utt in trials["enrol"]]]
    test = vectors[[index[utt] for utt in trials["test"]]]
    scores = torch.nn.functional.cosine_similarity(enrol, test)
    labels = torch.tensor(trials["label"].to_numpy())
    eer, _ = EER(scores[labels == 1], scores[labels == 0])
    return float(eer)


def main(argv=None):
    """Print the baseline EER of each trial list."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--trials", nargs="+", required=True)
    args = parser.parse_args(argv)
    embeddings = mean_mfcc_embeddings(read_manifest(args.manifest))
    for path in args.trials:
        print(f"{path}: mean-MFCC cosine EER {100 * baseline_eer(embeddings, read_trials(path)):.2f}%")


if __name__ == "__main__":
    main()
