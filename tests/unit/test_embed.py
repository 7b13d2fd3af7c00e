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


def encoder(name, input_size):
    """A small encoder of the kind a model file names."""
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.lobes.models.ResNet import ResNet
    from speechbrain.lobes.models.Xvector import Xvector

    torch.manual_seed(0)
    if name == "ecapa":
        return ECAPA_TDNN(input_size, channels=[32, 32, 32, 32, 96], lin_neurons=16)
    if name == "resnet":
        return ResNet(input_size, channels=[8, 8, 16, 16], block_sizes=[1, 1, 1, 1],
                      strides=[1, 2, 2, 2], lin_neurons=16)
    return Xvector(in_channels=input_size, lin_neurons=16)


@pytest.mark.parametrize("front, name", [("fbank", "ecapa"), ("fbank", "resnet"),
                                         ("wavlm-base-plus", "xvector")])
def test_an_exported_model_embeds_each_waveform_of_a_padded_batch_as_alone(front, name,
                                                                          tmp_path):
    """encode_batch's embedder: the padding after a shorter waveform reaches neither the
    encoder's convolutions nor the ResNet's pooling, which takes no lengths, nor an SSL CNN
    with group normalisation (wavlm-base-plus's), in any order of the batch."""
    from local.evaluation.embed import FrameLengthEmbedder
    from local.model.fbank_frontend import FbankFrontend
    from local.model.ssl_frontend import SSLFrontend
    from tests.unit.test_ssl_frontend import save_ssl

    if front == "fbank":
        frontend, size = FbankFrontend(n_mels=24), 24
    else:
        frontend = SSLFrontend(save_ssl(tmp_path / "ssl", "wavlm", "group", False, True),
                               str(tmp_path / "cache"))
        size = frontend.output_size
    embedder = FrameLengthEmbedder(frontend, encoder(name, size)).eval()
    generator = torch.Generator().manual_seed(1)
    lengths = [16000, 48000, 16000, 20000]
    wavs = [0.1 * torch.randn(n, generator=generator) for n in lengths]
    batch = torch.zeros(len(wavs), max(lengths))
    for row, wav in zip(batch, wavs):
        row[:len(wav)] = wav
    with torch.no_grad():
        padded = embedder(batch, torch.tensor(lengths) / max(lengths))
        alone = torch.cat([embedder(wav.unsqueeze(0), torch.ones(1)) for wav in wavs])
    torch.testing.assert_close(padded, alone, atol=1e-4, rtol=1e-4)


def test_an_exported_model_refuses_a_waveform_with_nan_or_infinite_samples():
    """It gave a NaN embedding, and verify_batch a NaN score read as a rejection."""
    wavs = torch.zeros(3, 16000)
    wavs[1, 5], wavs[2, 7:9] = float("nan"), float("inf")
    with pytest.raises(ManifestError, match=r"the waveform to embed: NaN or infinite samples, "
                                            r"which no model can embed\n  waveform 1 of the "
                                            r"batch: 1 such samples\n  waveform 2 of the batch: "
                                            r"2 such samples\nFix: replace or drop the waveform"):
        LengthGuard(0.25, 600)(wavs, torch.ones(3))


def test_a_guard_holding_the_front_end_gives_its_features_of_the_checked_waveforms():
    """Models exported before the embedder held the front end have it in the guard."""
    from local.model.fbank_frontend import FbankFrontend

    frontend = FbankFrontend(n_mels=24)
    guard = LengthGuard(0.25, 600, frontend)
    wavs = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([1.0, 0.5])
    features = guard(wavs, lengths)
    assert features.shape[-1] == 24
    torch.testing.assert_close(features, frontend(wavs, lengths), atol=0, rtol=0)
    with pytest.raises(ManifestError, match=r"waveform 1 of the batch: 0.01 s"):
        guard(wavs, torch.tensor([1.0, 0.01]))


def test_an_exported_model_embeds_in_the_precision_its_report_scored_in():
    """A run scored in bf16 (--eval_precision) exports an embedder of bf16 embeddings, as
    float32 tensors: those its thresholds were set on, a rounding step from float32's."""
    from local.evaluation.embed import FrameLengthEmbedder
    from local.model.fbank_frontend import FbankFrontend

    frontend, model = FbankFrontend(n_mels=24).eval(), encoder("xvector", 24).eval()
    wavs = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        bf16, fp32 = (FrameLengthEmbedder(frontend, model, precision)(wavs, torch.ones(2))
                      for precision in ("bf16", "fp32"))
    assert bf16.dtype == fp32.dtype == torch.float32
    # The encoder's last layer ran in bf16: each value is one of bf16's, as float32's are not.
    torch.testing.assert_close(bf16, bf16.bfloat16().float(), atol=0, rtol=0)
    assert (fp32 != fp32.bfloat16().float()).any()
    torch.testing.assert_close(bf16, fp32, atol=1e-3, rtol=1e-2)
