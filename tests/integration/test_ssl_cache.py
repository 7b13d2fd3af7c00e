"""The cache of frozen SSL hidden states: same losses as the SSL model, aligned crops, errors."""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

from local import errors
from local.data.dataio import add_whole_pipeline, manifest_dataset
from local.data.ssl_cache import (
    INFO_FILE,
    LOCK_FILE,
    add_cached_crop_pipeline,
    cache_hidden_states,
    cache_paths,
)
from local.errors import ManifestError
from local.model.ssl_frontend import SSLFrontend
from tests.conftest import TINY_SSL, save_tiny_ssl
from tests.integration.test_train_dann import logged, train_ssl


# A manifest row whose file is not read: its hidden states are written by the test.
ROW = {"wav": "short.wav", "start": 0, "stop": 3200, "sample_rate": 16000}


def whole_dataset(csv_path, rows=None):
    dataset = manifest_dataset(csv_path, check_audio=False)
    if rows is not None:
        dataset = DynamicItemDataset({utt: dataset.data[utt] for utt in dataset.data_ids[:rows]})
    add_whole_pipeline(dataset)
    return dataset


def truncated(csv_path, folder, seconds):
    """The manifest with every row cut to its first ``seconds``: a crop of that length is the row."""
    table = pd.read_csv(csv_path)
    table["stop"] = table["start"] + (seconds * table["sample_rate"]).round().astype(int)
    table["duration"] = seconds
    path = os.path.join(folder, os.path.basename(csv_path))
    table.to_csv(path, index=False)
    return path


def test_cached_and_uncached_runs_give_the_same_losses(demo_corpus, tiny_ssl, tmp_path):
    """With rows as long as the crop, both runs see the same first batch: the SSL model run
    on the waveforms, or their float16 hidden states read from the cache."""
    data = [f"--{split}={truncated(demo_corpus[split], str(tmp_path), 0.7)}"
            for split in ("source_train", "target_train")]
    options = [*data, "--crop_seconds=0.7", "--number_of_epochs=1", "--adv_weight=1.0",
               "--adv_warmup=0.0", "--debug", "--debug_batches=1", "--debug_epochs=1"]
    train_ssl(demo_corpus, tmp_path / "plain", "dann_wavlm", tiny_ssl["wavlm"], *options)
    cache = tmp_path / "features"
    train_ssl(demo_corpus, tmp_path / "cached", "dann_wavlm", tiny_ssl["wavlm"], *options,
              "--cache_ssl_features=True", f"--ssl_features_folder={cache}")
    assert len(os.listdir(cache)) == 240 + 240 + 2  # the rows, cache_info.json, its lock
    for key in ("speaker_loss", "domain_loss"):
        plain, cached = logged(tmp_path / "plain", key), logged(tmp_path / "cached", key)
        # float16 rounds each hidden state by up to 2^-11 of its size.
        assert len(plain) == 1 and cached == pytest.approx(plain, rel=1e-3), key
    # The layer weights train on cached hidden states as they do without the cache.
    weights = [pd.read_csv(tmp_path / run / "layer_weights.csv")["weight"]
               for run in ("plain", "cached")]
    assert weights[1].std() > 1e-5
    assert weights[1].to_list() == pytest.approx(weights[0].to_list(), abs=1e-5)


def test_cached_hidden_states_train_in_bf16(demo_corpus, tiny_ssl, tmp_path):
    # The float16 hidden states of source and target crops are joined into one batch under
    # the bf16 autocast of --precision=bf16.
    train_ssl(demo_corpus, tmp_path / "run", "dann_wavlm", tiny_ssl["wavlm"],
              "--precision=bf16", "--cache_ssl_features=True",
              f"--ssl_features_folder={tmp_path / 'features'}", "--number_of_epochs=1",
              "--debug", "--debug_batches=2", "--debug_epochs=1")
    losses = logged(tmp_path / "run", "speaker_loss")
    assert len(losses) == 1 and np.isfinite(losses[0])


@pytest.fixture(scope="module")
def cnn_only_frames(tmp_path_factory):
    """A tiny WavLM whose CNN normalises each frame alone (``feat_extract_norm: layer``),
    so that its first hidden state of a frame does not depend on the rest of the utterance."""
    folder = tmp_path_factory.mktemp("tiny_wavlm_layer_norm")
    config = WavLMConfig(num_buckets=32, max_bucket_distance=64, feat_extract_norm="layer",
                         **TINY_SSL)
    WavLMModel(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(folder)
    torch.manual_seed(0)
    return SSLFrontend(str(folder), str(folder / "hub"))


def test_cached_crops_start_on_a_frame_and_match_the_ssl_model_on_that_waveform_crop(
        demo_corpus, cnn_only_frames, tmp_path):
    dataset = whole_dataset(demo_corpus["source_train"], rows=3)
    info = cache_hidden_states(cnn_only_frames, dataset, str(tmp_path))
    assert (info["receptive_field"], info["stride"]) == (400, 320)
    crops = DynamicItemDataset({utt: dataset.data[utt] for utt in dataset.data_ids})
    add_cached_crop_pipeline(crops, str(tmp_path), seconds=0.5)
    crops.set_output_keys(["id", "sig"])
    starts = set()
    for seed in range(8):
        torch.manual_seed(seed)
        crop = crops[0]["sig"]
        whole = torch.from_numpy(np.load(cache_paths(str(tmp_path), crops)[crops[0]["id"]]))
        assert crop.shape == (24, TINY_SSL["num_hidden_layers"] + 1, TINY_SSL["hidden_size"])
        start = next(k for k in range(len(whole) - 23) if torch.equal(whole[k:k + 24], crop))
        starts.add(start)
        # The waveform crop that starts on the same frame gives the same first hidden
        # state, except at the edges, within reach of the positional convolution.
        with dataset.output_keys_as(["sig"]):
            wav = dataset[0]["sig"][320 * start:320 * start + 8000]
        layer0 = cnn_only_frames.hidden_states(wav.unsqueeze(0))[0, 0]
        reach = TINY_SSL["num_conv_pos_embeddings"] // 2
        assert torch.allclose(crop[reach:-reach, 0].float(), layer0[reach:-reach], atol=5e-3)
    assert len(starts) > 4  # random crops, not always the same one


def test_short_utterances_repeat_their_frames(tmp_path):
    with open(tmp_path / INFO_FILE, "w") as fout:
        json.dump({"source": "m", "receptive_field": 400, "stride": 320}, fout)
    frames = np.arange(10, dtype=np.float16).reshape(10, 1, 1)
    dataset = DynamicItemDataset({"short": ROW})
    np.save(cache_paths(str(tmp_path), dataset)["short"], frames)
    add_cached_crop_pipeline(dataset, str(tmp_path), seconds=0.5)
    dataset.set_output_keys(["sig"])
    assert dataset[0]["sig"].flatten().tolist() == [*range(10), *range(10), *range(4)]


def test_cached_crops_start_at_any_frame_the_last_included(tmp_path):
    with open(tmp_path / INFO_FILE, "w") as fout:
        json.dump({"source": "m", "receptive_field": 400, "stride": 320}, fout)
    frames = np.arange(25, dtype=np.float16).reshape(25, 1, 1)  # a 0.5 s crop has 24
    dataset = DynamicItemDataset({"long": ROW})
    np.save(cache_paths(str(tmp_path), dataset)["long"], frames)
    add_cached_crop_pipeline(dataset, str(tmp_path), seconds=0.5)
    dataset.set_output_keys(["sig"])
    torch.manual_seed(0)
    assert {int(dataset[0]["sig"][0]) for _ in range(50)} == {0, 1}


def test_uncached_utterances_are_a_clear_error(tmp_path):
    with open(tmp_path / INFO_FILE, "w") as fout:
        json.dump({"source": "m", "receptive_field": 400, "stride": 320}, fout)
    with pytest.raises(FileNotFoundError, match="1 utterances \\(first: u9\\) have no hidden"):
        add_cached_crop_pipeline(DynamicItemDataset({"u9": ROW}), str(tmp_path), seconds=1.0)


def test_a_fine_tuned_ssl_model_cannot_be_cached(demo_corpus, tiny_ssl, tmp_path):
    frontend = SSLFrontend(tiny_ssl["wavlm"], str(tmp_path / "hub"), freeze=False)
    dataset = whole_dataset(demo_corpus["source_train"], rows=1)
    with pytest.raises(ValueError, match="cache_ssl_features needs a frozen SSL model"):
        cache_hidden_states(frontend, dataset, str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="Cached hidden states reached a fine-tuned SSL model"):
        frontend(torch.zeros(1, 24, 3, TINY_SSL["hidden_size"]))
    # Before anything of the run is written.
    with pytest.raises(ValueError, match="cache_ssl_features needs a frozen SSL model"):
        train_ssl(demo_corpus, tmp_path / "run", "dann_wavlm", tiny_ssl["wavlm"],
                  "--freeze_ssl=False", "--cache_ssl_features=True",
                  f"--ssl_features_folder={tmp_path / 'run_cache'}")
    assert not (tmp_path / "run").exists()


def test_a_cache_of_another_model_is_refused(demo_corpus, tiny_ssl, tmp_path):
    dataset = whole_dataset(demo_corpus["source_train"], rows=1)
    wavlm = SSLFrontend(tiny_ssl["wavlm"], str(tmp_path / "hub"))
    cache_hidden_states(wavlm, dataset, str(tmp_path / "cache"))
    wav2vec2 = SSLFrontend(tiny_ssl["wav2vec2"], str(tmp_path / "hub"), family="wav2vec2")
    with pytest.raises(ValueError, match="holds the hidden states of another model"):
        cache_hidden_states(wav2vec2, dataset, str(tmp_path / "cache"))


def test_a_cache_of_a_model_replaced_under_the_same_source_is_refused(demo_corpus, tmp_path):
    source = save_tiny_ssl(tmp_path / "ssl", "wavlm")
    dataset = whole_dataset(demo_corpus["source_train"], rows=1)
    cache_hidden_states(SSLFrontend(source, str(tmp_path / "hub")), dataset,
                        str(tmp_path / "cache"))
    save_tiny_ssl(source, "wavlm")  # another model's files in its place
    with pytest.raises(ValueError, match=rf"the files of {re.escape(source)} are not those it "
                                         "was filled from"):
        cache_hidden_states(SSLFrontend(source, str(tmp_path / "hub")), dataset,
                            str(tmp_path / "cache"))


@pytest.mark.parametrize("library", ["torch", "transformers", None])
def test_a_cache_filled_under_other_libraries_is_refused(demo_corpus, tiny_ssl, tmp_path,
                                                         library):
    dataset = whole_dataset(demo_corpus["source_train"], rows=1)
    frontend = SSLFrontend(tiny_ssl["wavlm"], str(tmp_path / "hub"))
    cache = tmp_path / "cache"
    cache_hidden_states(frontend, dataset, str(cache))
    info = json.loads((cache / "cache_info.json").read_text())
    if library:
        info["libraries"][library] += ".post1"
        recorded = re.escape(str(info["libraries"]))
    else:  # a cache whose record names no library versions
        del info["libraries"]
        recorded = "not recorded"
    (cache / "cache_info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=rf"holds hidden states computed with other libraries "
                                         rf"\({recorded}, not "):
        cache_hidden_states(frontend, dataset, str(cache))


def test_audio_changed_under_the_same_id_is_cached_again(demo_corpus, tiny_ssl, tmp_path):
    table = pd.read_csv(demo_corpus["source_train"])[:1]
    table["wav"] = shutil.copy(table["wav"][0], tmp_path / "u.wav")
    table.to_csv(tmp_path / "m.csv", index=False)
    frontend = SSLFrontend(tiny_ssl["wavlm"], str(tmp_path / "hub"))
    cache = tmp_path / "cache"
    cache_hidden_states(frontend, whole_dataset(str(tmp_path / "m.csv")), str(cache))
    first, = cache.glob("*.npy")
    before = np.load(first)
    signal, rate = soundfile.read(tmp_path / "u.wav")
    soundfile.write(tmp_path / "u.wav", signal[::-1], rate)  # other audio, same length
    cache_hidden_states(frontend, whole_dataset(str(tmp_path / "m.csv")), str(cache))
    second, = set(cache.glob("*.npy")) - {first}
    assert np.array_equal(np.load(first), before)  # the earlier file is kept as it was
    assert not np.array_equal(np.load(second), before)


@pytest.mark.parametrize("span", [dict(start=1600), dict(stop=3000), dict(sample_rate=8000)])
def test_another_span_of_the_file_under_the_same_id_is_another_cache_file(tmp_path, span):
    # A manifest cut again (other start, stop or rate) keeps its IDs: the cache must not.
    paths = [cache_paths(str(tmp_path), DynamicItemDataset({"u1": row}))["u1"]
             for row in (ROW, {**ROW, **span})]
    assert paths[0] != paths[1]


def test_a_full_disk_while_caching_names_the_cache_and_keeps_what_it_holds(
        demo_corpus, tiny_ssl, tmp_path, monkeypatch):
    frontend = SSLFrontend(tiny_ssl["wavlm"], str(tmp_path / "hub"))
    cache = tmp_path / "cache"
    cache_hidden_states(frontend, whole_dataset(demo_corpus["source_train"], rows=1), str(cache))
    first, = cache.glob("*.npy")
    before = first.read_bytes()
    save = np.save

    def full_disk(file, array):
        save(file, array[:1])  # a part written, then numpy's error, which names no cause
        raise OSError("problem writing element 2048 to file")

    monkeypatch.setattr(np, "save", full_disk)
    monkeypatch.setattr(errors.shutil, "disk_usage", lambda path: SimpleNamespace(free=0))
    with pytest.raises(ManifestError, match=rf"{re.escape(str(cache))}: the disk is full: the "
                                            r"SSL feature cache could not be written .*\nFix: "
                                            r"free space on the disk of .*caches only the rest"):
        cache_hidden_states(frontend, whole_dataset(demo_corpus["source_train"], rows=2),
                            str(cache))
    assert first.read_bytes() == before
    assert sorted(path.name for path in cache.iterdir()) == sorted([first.name, INFO_FILE, LOCK_FILE])


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Another run filling the cache argv[3] with the hidden states of argv[1] on argv[2]'s first
# rows; it says when it starts filling.
OTHER_RUN = ("import sys; from local.data.dataio import add_whole_pipeline, manifest_dataset; "
             "from local.data.ssl_cache import cache_hidden_states; "
             "from local.model.ssl_frontend import SSLFrontend; "
             "data = manifest_dataset(sys.argv[2], check_audio=False); "
             "data = data.filtered_sorted(select_n=2); add_whole_pipeline(data); "
             "frontend = SSLFrontend(sys.argv[1], sys.argv[4]); print('filling', flush=True); "
             "cache_hidden_states(frontend, data, sys.argv[3])")


def started_run(source, manifest, folder, hub):
    """:data:`OTHER_RUN`, given 10 s to fill ``folder`` (it may wait for this run's lock)."""
    run = subprocess.Popen([sys.executable, "-c", OTHER_RUN, source, manifest, str(folder),
                            str(hub)], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    assert run.stdout.readline().strip() == "filling"
    with contextlib.suppress(subprocess.TimeoutExpired):
        run.wait(timeout=10)
    return run


def test_two_runs_filling_one_cache_at_once(demo_corpus, tiny_ssl, tmp_path, monkeypatch):
    """Runs of several seeds share the default ssl_features_folder: another run may
    write the whole cache while this one writes a file of it."""
    dataset = whole_dataset(demo_corpus["source_train"], rows=2)
    frontend = SSLFrontend(tiny_ssl["wavlm"], str(tmp_path / "hub"))
    other_runs = []

    def interleaved(write):
        def written(*args, **kwargs):
            write(*args, **kwargs)
            if not other_runs:  # this run's file not yet complete
                other_runs.append(started_run(tiny_ssl["wavlm"], demo_corpus["source_train"],
                                              folder, tmp_path / "hub"))
        return written

    for module, function in ((np, "save"), (json, "dump")):
        folder = tmp_path / function
        with monkeypatch.context() as patch:
            patch.setattr(module, function, interleaved(getattr(module, function)))
            cache_hidden_states(frontend, dataset, str(folder))
        other, = other_runs
        _, errors = other.communicate(timeout=300)
        assert other.returncode == 0, errors[-3000:]
        assert sorted(os.listdir(folder)) == sorted(
            [INFO_FILE, LOCK_FILE,
             *map(os.path.basename, cache_paths(str(folder), dataset).values())])
        other_runs.clear()


def test_runs_of_two_models_filling_one_empty_cache_at_once(demo_corpus, tmp_path, monkeypatch):
    """Runs of two SSL models of one size (wavlm-base and wavlm-base-plus under one
    model file) share the default ssl_features_folder: the one that finds it without a
    record as the other records its model is refused, not given the other's files."""
    ours, theirs = (save_tiny_ssl(tmp_path / name, "wavlm") for name in ("ours", "theirs"))
    dataset = whole_dataset(demo_corpus["source_train"], rows=2)
    frontend = SSLFrontend(ours, str(tmp_path / "hub"))
    folder, other = tmp_path / "cache", []
    dump = json.dump

    def recorded(*args, **kwargs):  # as this run records its model
        dump(*args, **kwargs)
        if not other:
            other.append(started_run(theirs, demo_corpus["source_train"], folder,
                                     tmp_path / "hub"))

    monkeypatch.setattr(json, "dump", recorded)
    cache_hidden_states(frontend, dataset, str(folder))
    _, errors = other[0].communicate(timeout=300)
    assert other[0].returncode != 0 and "holds the hidden states of another model" in errors
    dataset.set_output_keys(["id", "sig"])
    for item, path in zip(dataset, cache_paths(str(folder), dataset).values()):
        states = frontend.hidden_states(item["sig"].unsqueeze(0))[:, 0].transpose(0, 1)
        assert np.array_equal(np.load(path), states.to(torch.float16).numpy())


def test_utterances_the_ssl_model_cannot_take_whole_are_refused_before_caching(tiny_ssl,
                                                                              tmp_path):
    """The cache runs the SSL model on each whole training row: one shorter than a frame
    (400 samples) has no hidden states, one longer than max_embed_seconds unbounded memory."""
    rows = {}
    for utt, samples in (("blip", 150), ("call", 32000)):  # 8 kHz: 300 and 64000 at 16 kHz
        wav = str(tmp_path / f"{utt}.wav")
        soundfile.write(wav, np.full(samples, 0.1), 8000)
        rows[utt] = {"wav": wav, "start": 0, "stop": samples, "sample_rate": 8000}
    frontend = SSLFrontend(tiny_ssl["wavlm"], str(tmp_path / "hub"))
    cache = tmp_path / "cache"
    both = DynamicItemDataset(rows)
    add_whole_pipeline(both)
    with pytest.raises(ValueError, match=r"1 training utterances are shorter than one frame of "
                                         r"the SSL model \(400 samples at 16 kHz\)[^\n]*\n"
                                         rf"  blip \({re.escape(rows['blip']['wav'])}\): 300 "
                                         "samples\nFix: .*cache_ssl_features: False"):
        cache_hidden_states(frontend, both, str(cache), longest=600)
    call = DynamicItemDataset({"call": rows["call"]})
    add_whole_pipeline(call)
    with pytest.raises(ValueError, match=r"1 inputs are longer than max_embed_seconds \(3.5 s\)"
                                         r"[^\n]*\n  call \(.*\): 4.00 s"):
        cache_hidden_states(frontend, call, str(cache), longest=3.5)
    assert not list(cache.glob("*.npy"))
    cache_hidden_states(frontend, call, str(cache))  # no limit
    assert len(list(cache.glob("*.npy"))) == 1


def test_an_utterance_of_one_frame_is_cached(tiny_ssl, tmp_path):
    """550 samples at 22.05 kHz resample to 400 at 16 kHz (399.1, rounded up): one frame."""
    wav = str(tmp_path / "one_frame.wav")
    soundfile.write(wav, np.full(550, 0.1), 22050)
    dataset = DynamicItemDataset({"u1": {"wav": wav, "start": 0, "stop": 550,
                                         "sample_rate": 22050}})
    add_whole_pipeline(dataset)
    cache = tmp_path / "cache"
    cache_hidden_states(SSLFrontend(tiny_ssl["wavlm"], str(tmp_path / "hub")), dataset,
                        str(cache))
    states, = cache.glob("*.npy")
    assert np.load(states).shape == (1, TINY_SSL["num_hidden_layers"] + 1,
                                     TINY_SSL["hidden_size"])
