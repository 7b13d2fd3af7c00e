"""The mean-MFCC baseline's scoring: cosine of mean MFCCs, EER by the recipe's metric."""

import numpy as np
import pandas as pd
import torch

from local.evaluation.mfcc_baseline import baseline_eer


def test_the_baseline_eer_is_that_of_the_trials_cosine_scores():
    # Independent: the threshold sweep over every score, where the miss and
    # false-alarm rates cross (no tied scores, so the crossing is one point).
    rng = np.random.default_rng(0)
    speakers = rng.integers(0, 20, 400)
    vectors = rng.normal(size=(20, 8))[speakers] + 2 * rng.normal(size=(400, 8))
    embeddings = {f"u{i}": torch.tensor(vector, dtype=torch.float32)
                  for i, vector in enumerate(vectors)}
    enrol, test = rng.integers(0, 400, (2, 3000))
    labels = (speakers[enrol] == speakers[test]).astype(int)
    trials = pd.DataFrame({"label": labels, "enrol": [f"u{i}" for i in enrol],
                           "test": [f"u{i}" for i in test]})
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = np.sum(unit[enrol] * unit[test], axis=1)
    miss = np.array([np.mean(scores[labels == 1] < t) for t in np.sort(scores)])
    false_alarm = np.array([np.mean(scores[labels == 0] >= t) for t in np.sort(scores)])
    crossing = np.argmin(np.abs(miss - false_alarm))
    expected = (miss[crossing] + false_alarm[crossing]) / 2

    assert abs(baseline_eer(embeddings, trials) - expected) < 2 / labels.sum()
