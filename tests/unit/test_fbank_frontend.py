"""The filterbank front end: SpeechBrain's log mel filterbanks less each utterance's mean."""

import torch
from speechbrain.lobes.features import Fbank

from local.model.fbank_frontend import FbankFrontend


def test_features_are_the_filterbanks_less_the_mean_of_each_utterances_own_frames():
    torch.manual_seed(0)
    wavs = torch.zeros(2, 16000)
    wavs[0] = 0.1 * torch.randn(16000)
    wavs[1, :8000] = 0.5 * torch.randn(8000)  # 51 frames of the batch's 101
    features = FbankFrontend(n_mels=24).train()(wavs, torch.tensor([1.0, 0.5]))
    filterbanks = Fbank(n_mels=24)(wavs)
    for row, frames in ((0, 101), (1, 51)):
        # Neither divided by a standard deviation nor by statistics of the batch.
        expected = filterbanks[row] - filterbanks[row, :frames].mean(dim=0)
        torch.testing.assert_close(features[row], expected)
