"""The mean-MFCC baseline's scoring at the size of real trial lists."""

import signal

import numpy as np
import pandas as pd
import torch

from local.evaluation.mfcc_baseline import baseline_eer


def test_eer_of_300000_trials_takes_seconds():
    # SpeechBrain's EER loops over every distinct score: about 3 minutes of
    # CPU time here and an hour at 10^6 trials; one sort takes under a second.
    rng = np.random.default_rng(0)
    speakers = rng.integers(0, 100, 10_000)
    vectors = rng.normal(size=(100, 20))[speakers] + rng.normal(size=(10_000, 20))
    embeddings = {f"u{i}": torch.tensor(vector, dtype=torch.float32) for i, vector in enumerate(vectors)}
    enrol, test = rng.integers(0, 10_000, (2, 300_000))
    trials = pd.DataFrame({"label": (speakers[enrol] == speakers[test]).astype(int),
                           "enrol": [f"u{i}" for i in enrol], "test": [f"u{i}" for i in test]})

    def too_slow(*_):
        raise TimeoutError("baseline_eer took over 30 s on 300,000 trials")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(30)
    try:
        value = baseline_eer(embeddings, trials)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert 0.05 < value < 0.2
