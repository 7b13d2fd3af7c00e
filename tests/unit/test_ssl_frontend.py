"""The SSL front end: loading, the weighted layer sum, frozen and fine-tuned modes."""

import os
from pathlib import Path

import huggingface_hub
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from local.errors import ManifestError
from local.model.distributed import unwrapped, wrap_in_ddp
from local.model.ssl_frontend import (
    SSLFrontend,
    WeightedLayerSum,
    save_layer_weights,
    ssl_fingerprint,
)
from tests.conftest import TINY_SSL, in_two_processes, save_tiny_ssl

FAMILIES = ["wavlm", "wav2vec2"]


def frontend(tiny_ssl, family, tmp_path, **options):
    torch.manual_seed(0)
    return SSLFrontend(tiny_ssl[family], str(tmp_path / "cache"), family=family, **options)


def wavs(batch=2, seconds=0.5):
    return 0.1 * torch.randn(batch, int(16000 * seconds), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("family", FAMILIES)
def test_loads_by_path_and_mixes_every_hidden_state(tiny_ssl, family, tmp_path):
    model = frontend(tiny_ssl, family, tmp_path)
    layers = TINY_SSL["num_hidden_layers"] + 1  # the CNN output counts too
    assert len(model.layer_sum.weights) == layers
    assert torch.allclose(model.layer_sum.layer_weights(), torch.full((layers,), 1 / layers))
    out = model(wavs(), torch.ones(2))
    assert out.shape == (2, 24, TINY_SSL["hidden_size"])  # 20 ms frames of 0.5 s
    with torch.no_grad():
        hidden = model.hidden_states(wavs())
    assert hidden.shape[0] == layers
    assert torch.allclose(out, model.layer_sum(hidden), atol=1e-6)


def test_a_hubert_checkpoint_loads_with_the_wav2vec2_wrapper(tmp_path):
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    HubertModel(HubertConfig(**TINY_SSL)).save_pretrained(tmp_path / "hubert")
    Wav2Vec2FeatureExtractor().save_pretrained(tmp_path / "hubert")
    model = SSLFrontend(str(tmp_path / "hubert"), str(tmp_path / "cache"), family="wav2vec2")
    assert type(model.ssl.model).__name__ == "HubertModel"
    assert model(wavs(), torch.ones(2)).shape == (2, 24, TINY_SSL["hidden_size"])
    assert len(model.layer_sum.weights) == TINY_SSL["num_hidden_layers"] + 1


def test_weighted_sum_is_a_softmax_over_layers():
    layer_sum = WeightedLayerSum(3)
    with torch.no_grad():
        layer_sum.weights.copy_(torch.tensor([0.0, 1.0, 2.0]))
    hidden = torch.randn(3, 2, 4, 5)
    expected = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0)
    assert torch.allclose(layer_sum(hidden), torch.einsum("l,lbtd->btd", expected, hidden),
                          atol=1e-6)
    scaled = hidden * torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1, 1)
    standardised = (scaled - scaled.mean(-1, keepdim=True)) / torch.sqrt(
        scaled.var(-1, unbiased=False, keepdim=True) + 1e-5)
    normed = WeightedLayerSum(3, layernorm=True)(scaled)
    assert torch.allclose(normed, standardised.mean(dim=0), atol=1e-5)
    with pytest.raises(ValueError, match="4 hidden states for 3 layer weights"):
        layer_sum(torch.randn(4, 2, 4, 5))


@pytest.mark.parametrize("family", FAMILIES)
def test_frozen_ssl_gets_no_gradient_and_keeps_no_activations(tiny_ssl, family, tmp_path):
    model = frontend(tiny_ssl, family, tmp_path).train()
    assert not model.ssl.model.training  # no dropout in a frozen model, even in training
    with torch.no_grad():
        hidden = model.ssl(wavs())
    assert not hidden.requires_grad  # nothing of the SSL forward is kept for backward
    model(wavs()).pow(2).mean().backward()
    assert model.layer_sum.weights.grad is not None
    assert model.layer_sum.weights.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.ssl.parameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_fine_tuned_ssl_gets_gradient_except_the_frozen_cnn(tiny_ssl, family, tmp_path):
    def cnn_output(model):
        outputs = []
        model.ssl.model.feature_extractor.register_forward_hook(
            lambda module, inputs, output: outputs.append(output))
        model.train()(wavs()).pow(2).mean().backward()
        return outputs[0]

    model = frontend(tiny_ssl, family, tmp_path, freeze=False)
    # The frozen CNN keeps no activations for the backward pass.
    assert cnn_output(model).grad_fn is None
    cnn = {id(p) for p in model.ssl.model.feature_extractor.parameters()}
    transformer = [p for p in model.ssl.parameters() if id(p) not in cnn]
    assert all(p.grad is None for p in model.ssl.model.feature_extractor.parameters())
    assert sum(p.grad.abs().sum() for p in transformer if p.grad is not None) > 0
    assert model.layer_sum.weights.grad.abs().sum() > 0

    whole = frontend(tiny_ssl, family, tmp_path, freeze=False, freeze_feature_extractor=False)
    assert cnn_output(whole).grad_fn is not None
    assert all(p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0
               for p in whole.ssl.model.feature_extractor.parameters())


def test_waveform_normalisation_follows_the_checkpoint(tiny_ssl, tmp_path):
    """wav2vec2-base normalises its input (do_normalize), WavLM-base-plus does not."""
    x = wavs(batch=1)
    for family, invariant in (("wav2vec2", True), ("wavlm", False)):
        model = frontend(tiny_ssl, family, tmp_path).eval()
        with torch.no_grad():
            same = torch.allclose(model(x), model(3.0 * x), atol=1e-4)
        assert same == invariant, family


def save_ssl(folder, family, cnn_norm, do_normalize, attention_mask, **config):
    """A tiny checkpoint whose CNN has ``cnn_norm`` ("group" or "layer") normalisation;
    ``config`` overrides the model configuration's other values."""
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
        WavLMConfig,
        WavLMModel,
    )

    torch.manual_seed(0)
    if family == "wavlm":
        model = WavLMModel(WavLMConfig(num_buckets=32, max_bucket_distance=64,
                                       feat_extract_norm=cnn_norm, **{**TINY_SSL, **config}))
    else:
        model = Wav2Vec2Model(Wav2Vec2Config(feat_extract_norm=cnn_norm, **{**TINY_SSL, **config}))
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=do_normalize,
                             return_attention_mask=attention_mask).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("do_normalize", [False, True])
@pytest.mark.parametrize("cnn_norm, attention_mask", [("group", False), ("layer", True)])
def test_a_padded_batch_is_prepared_as_transformers_prepares_it(
        family, do_normalize, cnn_norm, attention_mask, tmp_path):
    """Each waveform normalised over its own samples (as the extractor does when it returns a
    mask; without one it would normalise the padded batch), and the mask passed only where the
    checkpoint's extractor returns one."""
    from transformers import AutoFeatureExtractor, AutoModel

    folder = save_ssl(tmp_path / "ssl", family, cnn_norm, do_normalize, attention_mask)
    model = SSLFrontend(folder, str(tmp_path / "cache"), family=family).eval()
    long, short = wavs(batch=1, seconds=1.5)[0], 3 * wavs(batch=1)[0] + 0.5
    batch = torch.zeros(2, len(long))
    batch[0], batch[1, :len(short)] = long, short
    with torch.no_grad():
        padded = model.hidden_states(batch, torch.tensor([1.0, len(short) / len(long)]))
        alone = model.hidden_states(short.unsqueeze(0))[:, 0]
        inputs = AutoFeatureExtractor.from_pretrained(folder)(
            [long.numpy(), short.numpy()], sampling_rate=16000, padding=True,
            return_attention_mask=True, return_tensors="pt")
        expected = AutoModel.from_pretrained(folder)(
            inputs.input_values, attention_mask=inputs.attention_mask if attention_mask else None,
            output_hidden_states=True)
    assert torch.allclose(padded, torch.stack(expected.hidden_states), atol=1e-4)
    # With a mask the padding does not reach the short waveform's hidden states.
    if attention_mask:
        assert torch.allclose(padded[:, 1, :alone.shape[1]], alone, atol=1e-4)


# The structural settings of published checkpoints (their config.json and
# preprocessor_config.json): family, CNN normalisation, waveform normalisation,
# attention mask, and the transformer's layer norm placement and CNN biases.
PUBLISHED = {
    "wavlm-base-plus": ("wavlm", "group", False, True, dict(do_stable_layer_norm=False)),
    "wavlm-large": ("wavlm", "layer", True, True, dict(do_stable_layer_norm=True)),
    "wav2vec2-base": ("wav2vec2", "group", True, False, dict(do_stable_layer_norm=False)),
    "wav2vec2-large-lv60": ("wav2vec2", "layer", True, True,
                            dict(do_stable_layer_norm=True, conv_bias=True)),
}


@pytest.mark.parametrize("published", PUBLISHED)
def test_checkpoints_shaped_as_the_published_ones_mix_every_layer_as_transformers_runs_them(
        published, tmp_path):
    """Another depth and width than the other tiny checkpoints: one weight per hidden state,
    the encoder's input size the hidden size, the mask passed exactly when the checkpoint's
    extractor returns one, and the frame lengths transformers' own."""
    from transformers import AutoFeatureExtractor, AutoModel

    family, cnn_norm, do_normalize, attention_mask, config = PUBLISHED[published]
    folder = save_ssl(tmp_path / "ssl", family, cnn_norm, do_normalize, attention_mask,
                      hidden_size=48, num_hidden_layers=3, layerdrop=0.9, **config)
    model = SSLFrontend(folder, str(tmp_path / "cache"), family=family).eval()
    assert len(model.layer_sum.weights) == 4 and model.output_size == 48
    masks = []
    model.ssl.model.register_forward_pre_hook(
        lambda module, args, kwargs: masks.append(kwargs["attention_mask"]), with_kwargs=True)
    # Loud enough that the variance floor of the waveform normalisation (1e-5, as in
    # fairseq's pre-training; transformers' extractor takes 1e-7) changes nothing.
    long, short = wavs(batch=1, seconds=1.5)[0] * 5, 3 * wavs(batch=1)[0] + 0.5
    batch = torch.zeros(2, len(long))
    batch[0], batch[1, :len(short)] = long, short
    lengths = torch.tensor([1.0, len(short) / len(long)])
    with torch.no_grad():
        padded = model.hidden_states(batch, lengths)
        inputs = AutoFeatureExtractor.from_pretrained(folder)(
            [long.numpy(), short.numpy()], sampling_rate=16000, padding=True,
            return_attention_mask=True, return_tensors="pt")
        reference = AutoModel.from_pretrained(folder)
        expected = reference(inputs.input_values,
                             attention_mask=inputs.attention_mask if attention_mask else None,
                             output_hidden_states=True)
    assert (masks[0] is not None) == attention_mask
    assert padded.shape == (4, 2, 74, 48)
    torch.testing.assert_close(padded, torch.stack(expected.hidden_states), atol=1e-4, rtol=1e-4)
    frames = reference._get_feat_extract_output_lengths(torch.tensor([len(long), len(short)]))
    assert torch.allclose(model.frame_lengths(batch, lengths), frames / frames[0])

    # The checkpoint's LayerDrop (the published ones have 0.05 or 0.1) would leave the
    # layers it skips out of a fine-tuned model's hidden states.
    tuned = SSLFrontend(folder, str(tmp_path / "cache"), family=family, freeze=False).train()
    for _ in range(5):
        assert tuned(wavs()).shape == (2, 24, 48)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_checkpoint_saved_in_half_precision_runs_in_float32(dtype, tmp_path):
    """transformers loads a checkpoint in the precision its files hold (config ``dtype``);
    the front end runs as the rest of the model does, in float32, mixed precision being
    --precision's."""
    from transformers import WavLMModel

    folder = save_tiny_ssl(tmp_path / "ssl", "wavlm")
    WavLMModel.from_pretrained(folder).to(dtype).save_pretrained(folder)
    expected = WavLMModel.from_pretrained(folder).float().eval()
    model = SSLFrontend(folder, str(tmp_path / "cache")).eval()
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    with torch.no_grad():
        hidden = model.hidden_states(wavs())
        reference = expected(wavs(), output_hidden_states=True).hidden_states
    torch.testing.assert_close(hidden, torch.stack(reference))


def test_unreachable_hub_is_a_message_with_the_fix(tmp_path, monkeypatch):
    # A ManifestError, which the scripts print without a traceback.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ManifestError, match=r"^--ssl_source=no-org/no-model: cannot load the SSL "
                       r"model: it is not a local folder, and the Hugging Face hub did not "
                       r"provide it(.|\n)*\nFix: with the hub reachable(.|\n)*pass "
                       r"--ssl_source=DIR \(to an exported model: from_hparams\(\.\.\., "
                       r"overrides=\{.frontend.: \{.source.: DIR\}\}\)\)$"):
        SSLFrontend("no-org/no-model", str(tmp_path / "cache"))


def test_the_download_commands_of_the_fix_are_those_huggingface_hub_installs(tmp_path,
                                                                             monkeypatch):
    import importlib.metadata
    import re

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ManifestError) as refusal:
        SSLFrontend("no-org/no-model", str(tmp_path / "cache"))
    commands = re.findall(r"\((\S+) download no-org/no-model ", str(refusal.value))
    installed = {entry.name for entry in importlib.metadata.distribution(
        "huggingface_hub").entry_points if entry.group == "console_scripts"}
    assert commands and set(commands) <= installed


def test_a_hub_id_loads_offline_from_the_filled_cache(tmp_path, monkeypatch):
    """The hub cache's layout (refs/main naming the snapshot) under save_path, with no hub."""
    repo = tmp_path / "cache" / "models--org--tiny"
    folder = save_tiny_ssl(repo / "snapshots" / "a1", "wavlm")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    by_id = SSLFrontend("org/tiny", str(tmp_path / "cache")).eval()
    by_path = SSLFrontend(folder, str(tmp_path / "unused")).eval()
    assert by_id.fingerprint == by_path.fingerprint
    torch.testing.assert_close(by_id(wavs()), by_path(wavs()))


def test_local_folder_without_feature_extractor_is_a_clear_error(tiny_ssl, tmp_path):
    folder = tmp_path / "incomplete"
    folder.mkdir()
    for name in os.listdir(tiny_ssl["wavlm"]):
        if name != "preprocessor_config.json":
            (folder / name).write_bytes(open(os.path.join(tiny_ssl["wavlm"], name), "rb").read())
    with pytest.raises(ManifestError, match=r"incomplete: cannot load the SSL model from this "
                                            r"folder(.|\n)*\nFix: (.|\n)*preprocessor_config"):
        SSLFrontend(str(folder), str(tmp_path / "cache"))


def test_unknown_family(tiny_ssl, tmp_path):
    with pytest.raises(ManifestError, match=r"^--ssl_family=hubert: ssl_family must be one of "
                                            r"\['wav2vec2', 'wavlm'\], got 'hubert'\nFix: pass "
                                            r"the family of ssl_source$"):
        SSLFrontend(tiny_ssl["wavlm"], str(tmp_path), family="hubert")


def test_layer_weights_are_written_as_table_and_chart(tmp_path):
    layer_sum = WeightedLayerSum(4)
    with torch.no_grad():
        layer_sum.weights.copy_(torch.tensor([2.0, 1.0, 0.0, 0.0]))
    table = save_layer_weights(layer_sum, str(tmp_path))
    saved = pd.read_csv(tmp_path / "layer_weights.csv")
    expected = torch.softmax(torch.tensor([2.0, 1.0, 0.0, 0.0]), 0).tolist()
    assert list(saved["layer"]) == [0, 1, 2, 3]
    assert list(saved["weight"]) == pytest.approx(expected, abs=1e-6)
    assert list(table["weight"]) == pytest.approx(expected, abs=1e-6)
    with Image.open(tmp_path / "layer_weights.png") as image:
        assert image.format == "PNG" and image.size[0] > 100


@pytest.mark.parametrize("writer, name", [("to_csv", "layer_weights.csv"),
                                          ("savefig", "layer_weights.png")])
def test_layer_weights_file_of_a_write_that_fails_halfway_is_left_as_before(tmp_path, monkeypatch,
                                                                           writer, name):
    save_layer_weights(WeightedLayerSum(4), str(tmp_path))
    before = (tmp_path / name).read_bytes()
    owner = pd.DataFrame if writer == "to_csv" else Figure
    write = getattr(owner, writer)

    def disk_full_halfway(self, out, *args, **kwargs):
        write(self, out, *args, **kwargs)
        target = out if isinstance(out, str) else out.name
        os.truncate(target, os.path.getsize(target) // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(owner, writer, disk_full_halfway)
    trained = WeightedLayerSum(4)
    with torch.no_grad():
        trained.weights.copy_(torch.tensor([2.0, 1.0, 0.0, 0.0]))
    with pytest.raises(OSError, match="No space left"):
        save_layer_weights(trained, str(tmp_path))
    assert (tmp_path / name).read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["layer_weights.csv", "layer_weights.png"]


def test_gradient_checkpointing_recomputes_layers_and_keeps_the_gradients(tiny_ssl, tmp_path):
    runs = {}
    for checkpointing in (False, True):
        model = frontend(tiny_ssl, "wavlm", tmp_path, freeze=False,
                         gradient_checkpointing=checkpointing).train()  # dropout on
        layers = model.ssl.model.encoder.layers
        assert [layer.gradient_checkpointing for layer in layers] == [checkpointing] * len(layers)
        calls = []
        layers[0].feed_forward.register_forward_hook(lambda *args: calls.append(1))
        torch.manual_seed(5)
        model(wavs()).pow(2).mean().backward()
        runs[checkpointing] = len(calls), {name: p.grad for name, p in model.named_parameters()
                                           if p.grad is not None}
    (plain_calls, plain), (checkpointed_calls, checkpointed) = runs[False], runs[True]
    assert (plain_calls, checkpointed_calls) == (1, 2)  # run again in the backward pass
    assert plain.keys() == checkpointed.keys() and len(plain) > 10
    for name, grad in plain.items():
        assert torch.allclose(grad, checkpointed[name], rtol=1e-5, atol=1e-7), name


def test_gradient_checkpointing_of_a_frozen_model_is_a_clear_error(tiny_ssl, tmp_path):
    with pytest.raises(ManifestError, match=r"^--ssl_gradient_checkpointing=True: "
                                            r"ssl_gradient_checkpointing needs a fine-tuned SSL "
                                            r"model \(freeze_ssl: False\).*\nFix: pass "
                                            r"--freeze_ssl=False or "
                                            r"--ssl_gradient_checkpointing=False$"):
        frontend(tiny_ssl, "wavlm", tmp_path, gradient_checkpointing=True)


def test_checkpoint_of_another_front_end_is_a_clear_error(tiny_ssl, tmp_path):
    from speechbrain.utils.checkpoints import Checkpointer

    saved = Checkpointer(tmp_path / "save", {"frontend": frontend(tiny_ssl, "wavlm", tmp_path)})
    checkpoint = saved.save_checkpoint()
    path = os.path.join(checkpoint.path, "frontend.ckpt")
    state = torch.load(path)
    assert list(state) == ["layer_sum.weights"]  # frozen: the SSL model is not saved
    torch.save({**state, "projection.weight": torch.zeros(2, 2)}, path)
    loading = Checkpointer(tmp_path / "save", {"frontend": frontend(tiny_ssl, "wavlm", tmp_path)})
    with pytest.raises(RuntimeError, match=r"frontend.ckpt does not fit this front end "
                       r"\(missing \[\], unexpected \['projection.weight'\]\)"):
        loading.recover_if_possible()


def test_a_checkpoint_without_the_layer_weights_is_a_clear_error(tiny_ssl, tmp_path):
    from speechbrain.utils.checkpoints import Checkpointer

    saved = Checkpointer(tmp_path / "save", {"frontend": frontend(tiny_ssl, "wavlm", tmp_path)})
    torch.save({}, os.path.join(saved.save_checkpoint().path, "frontend.ckpt"))
    loading = Checkpointer(tmp_path / "save", {"frontend": frontend(tiny_ssl, "wavlm", tmp_path)})
    with pytest.raises(RuntimeError, match=r"frontend.ckpt does not fit this front end "
                       r"\(missing \['layer_sum.weights'\], unexpected \[\]\)"):
        loading.recover_if_possible()


def test_a_fine_tuned_front_end_is_recovered_with_its_ssl_model(tiny_ssl, tmp_path):
    from speechbrain.utils.checkpoints import Checkpointer

    tuned = frontend(tiny_ssl, "wavlm", tmp_path, freeze=False)
    with torch.no_grad():
        for parameter in tuned.parameters():
            parameter.add_(0.01)  # as training moves them
    Checkpointer(tmp_path / "save", {"frontend": tuned}).save_checkpoint()
    recovered = frontend(tiny_ssl, "wavlm", tmp_path, freeze=False)
    Checkpointer(tmp_path / "save", {"frontend": recovered}).recover_if_possible()
    state = recovered.state_dict()
    assert any(name.startswith("ssl.") for name in state)
    for name, value in tuned.state_dict().items():
        assert torch.equal(state[name], value), name


def test_a_model_replaced_in_its_folder_gets_another_fingerprint(tmp_path):
    folder = save_tiny_ssl(tmp_path / "ssl", "wavlm")
    before = SSLFrontend(folder, str(tmp_path / "cache")).eval()
    assert SSLFrontend(folder, str(tmp_path / "cache")).fingerprint == before.fingerprint
    save_tiny_ssl(folder, "wavlm")  # another model's files in its place
    after = SSLFrontend(folder, str(tmp_path / "cache")).eval()
    assert after.fingerprint != before.fingerprint
    assert not torch.equal(after(wavs()), before(wavs()))


def test_the_fingerprint_is_of_the_files_from_pretrained_loads_not_of_the_others(tmp_path):
    """A folder filled by `hf download` holds the repository's other files too."""
    folder = Path(save_tiny_ssl(tmp_path / "ssl", "wavlm"))
    before = ssl_fingerprint(str(folder), "unused")
    (folder / "pytorch_model.bin").write_bytes(b"the same weights, in the other format")
    (folder / "vocab.json").write_text('{"a": 0}')
    (folder / "tokenizer_config.json").write_text("{}")
    assert ssl_fingerprint(folder, "unused") == before
    # Without safetensors, the PyTorch weights are the model's.
    (folder / "model.safetensors").unlink()
    without = ssl_fingerprint(folder, "unused")
    (folder / "pytorch_model.bin").write_bytes(b"other weights")
    assert ssl_fingerprint(folder, "unused") not in (without, before)


def test_a_hub_id_is_fingerprinted_by_the_snapshot_it_resolves_to(tmp_path):
    """The hub cache's layout: refs/main names the commit whose snapshot is loaded."""
    repo = tmp_path / "models--org--tiny"
    snapshots = {commit: save_tiny_ssl(repo / "snapshots" / commit, "wavlm")
                 for commit in ("a1", "b2")}
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a1")
    first = ssl_fingerprint("org/tiny", str(tmp_path))
    assert first == ssl_fingerprint(snapshots["a1"], "unused")
    (repo / "refs" / "main").write_text("b2")
    assert ssl_fingerprint("org/tiny", str(tmp_path)) == ssl_fingerprint(snapshots["b2"], "")
    assert ssl_fingerprint("org/tiny", str(tmp_path)) != first


def padded_front_end(front, tmp_path):
    """A front end whose features of a waveform do not depend on the padding after it:
    filterbanks, or a CNN with layer normalisation given the attention mask (the tiny
    wav2vec2 normalises its waveform as wav2vec2-base does, the tiny WavLM does not)."""
    from local.model.fbank_frontend import FbankFrontend

    if front == "fbank":
        return FbankFrontend(n_mels=24).eval()
    folder = save_ssl(tmp_path / "ssl", front, "layer", front == "wav2vec2", True)
    return SSLFrontend(folder, str(tmp_path / "cache"), family=front).eval()


@pytest.mark.parametrize("front", ["fbank"] + FAMILIES)
@pytest.mark.parametrize("samples", [16000, 47990])
def test_a_padded_batch_embeds_a_short_waveform_as_alone(front, samples, tmp_path):
    """The encoder's pooling gets the lengths of the front end's frames: those of the samples
    count a frame of padding as the waveform's (the SSL models' 1 s, the filterbanks' 47,990
    samples), or leave out its last frame (the filterbanks' 1 s). The encoder
    here is the pooling of SpeechBrain's x-vector alone (the convolutions of the real ones
    see the padding beyond an utterance's last frames too)."""
    from types import SimpleNamespace

    from speechbrain.nnet.pooling import StatisticsPooling

    from local.model.dann_brain import DANNBrain

    frontend = padded_front_end(front, tmp_path)
    brain = SimpleNamespace(modules=SimpleNamespace(frontend=frontend,
                                                    embedding_model=StatisticsPooling()))
    long, short = wavs(batch=1, seconds=3)[0], 3 * wavs(batch=1, seconds=3)[0, :samples] + 0.5
    batch = torch.zeros(2, len(long))
    batch[0], batch[1, :len(short)] = long, short
    with torch.no_grad():
        padded = DANNBrain.embed(brain, batch, torch.tensor([1.0, len(short) / len(long)]))[1]
        alone = DANNBrain.embed(brain, short.unsqueeze(0), torch.ones(1))[0]
    torch.testing.assert_close(padded, alone, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("front", ["fbank"] + FAMILIES + ["cached"])
def test_the_pooling_mask_of_a_padded_batch_counts_each_utterances_own_frames(front, tmp_path):
    """ECAPA's attentive pooling masks the frames below ``lengths * frames``: a float32
    length above its utterance's share of the batch (51 of 101 frames) counted a frame of
    padding, for filterbanks, the SSL models' frames and cached hidden states alike."""
    from speechbrain.dataio.dataio import length_to_mask

    from local.data.ssl_cache import frame_count, frame_geometry

    if front == "cached":
        frontend = padded_front_end("wavlm", tmp_path)
        # Cached hidden states [batch, frames, layers, hidden], padded as PaddedBatch pads.
        batch, total = torch.zeros(2, 101, 3, 8), 101
        lengths = torch.tensor([1.0, 51 / 101])
        frames = [101, 51]
    else:
        frontend = padded_front_end(front, tmp_path)
        if front == "fbank":
            receptive_field, stride = 0, frontend.fbank.compute_STFT.hop_length
        else:
            receptive_field, stride = frame_geometry(frontend.ssl.config)
        samples = [receptive_field + frames * stride for frames in (100, 50)]
        frames = [(count - receptive_field) // stride + 1 for count in samples]
        if front != "fbank":
            assert frames == [frame_count(count, receptive_field, stride) for count in samples]
        batch, total = torch.zeros(2, samples[0]), frames[0]
        lengths = torch.tensor([1.0, samples[1] / samples[0]])
    assert frames == [101, 51]
    counted = length_to_mask(frontend.frame_lengths(batch, lengths) * total, max_len=total)
    assert counted.sum(dim=1).tolist() == frames


@pytest.mark.parametrize("front", ["fbank"] + FAMILIES)
def test_a_batch_of_one_length_has_whole_frame_lengths(front, tmp_path):
    """What the recipe embeds and trains on: the encoder gets the lengths it got before."""
    frontend = padded_front_end(front, tmp_path)
    ones = torch.ones(3)
    assert torch.equal(frontend.frame_lengths(wavs(batch=3), ones), ones)


def fine_tune_in_process(rank, source, family, folder):
    """One DDP process of two taking SGD steps of a fine-tuned front end on its own waveforms."""
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"frontend": SSLFrontend(
        source, os.path.join(folder, "cache"), family=family, freeze=False).train()})
    wrap_in_ddp(model, find_unused_parameters=False)  # the default of SpeechBrain's Brain
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(2):
        model["frontend"](wavs(seconds=0.3 * (rank + 1 + step))).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    torch.save(unwrapped(model["frontend"]).state_dict(), os.path.join(folder, f"rank{rank}.pt"))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("published", ["base", "large"])
def test_fine_tuned_ssl_stays_the_same_in_every_ddp_process(tiny_ssl, family, published,
                                                            tmp_path):
    """Every trainable parameter must get a gradient at every step: DDP waits for the
    gradients of all of them before it averages any, and fails at the next step. A large
    checkpoint's transformer (do_stable_layer_norm, as wavlm-large's and
    wav2vec2-large-lv60's) ends with a layer norm that follows the last hidden state."""
    source = tiny_ssl[family] if published == "base" else save_ssl(
        tmp_path / "large", family, "layer", True, True, do_stable_layer_norm=True)
    in_two_processes(fine_tune_in_process, source, family, str(tmp_path))
    main, other = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    assert all(torch.equal(main[name], other[name]) for name in main)
