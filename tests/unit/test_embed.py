import pytest
import torch

from local.errors import ManifestError
from local.evaluation.embed import LengthGuard


def test_an_exported_model_names_the_fix_of_a_waveform_not_a_manifest_row():
    guard = LengthGuard(0.25, 600)
    with pytest.raises(ManifestError, match=r"the waveform: 0.06 s\nFix: give each waveform at "
                                            r"least 0.25 s of audio$") as short:
        guard(torch.zeros(1, 1000))
    with pytest.raises(ManifestError, match=r"the waveform: 601.00 s\nFix: embed it in pieces "
                                            r"of at most 600 s and average their") as long:
        guard(torch.zeros(1, 16000 * 601))
    for refusal in (short, long):
        assert "manifest" not in str(refusal.value)
