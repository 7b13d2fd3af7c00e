"""Training and evaluation data pipelines."""

import errno
import os

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder

from local.data import dataio
from local.data.audio import (
    check_lengths,
    load_random_crop,
    load_segment,
    relative_lengths,
    sample_counts,
    signal_key,
)
from local.data.dataio import (
    PairedDataset,
    SpeakerBatchSampler,
    add_crop_pipeline,
    add_speaker_labels,
    add_whole_pipeline,
    collate_pairs,
    manifest_dataset,
    speaker_class,
    speaker_classes,
)
from local.data.schema import audio_info
from local.embedding import compute_embeddings, embeddable_ids, equal_length_batches
from local.errors import ManifestError
from tests.conftest import in_two_processes


def test_segment_is_resampled_to_16k(tmp_path):
    path = tmp_path / "tone.wav"
    time = np.arange(8000) / 8000
    soundfile.write(path, 0.5 * np.sin(2 * np.pi * 440 * time), 8000)
    wave = load_segment(str(path), 0, 8000, 8000).numpy()
    assert wave.shape == (16000,)
    peak = np.argmax(np.abs(np.fft.rfft(wave)))
    assert peak * 16000 / wave.size == pytest.approx(440, abs=2)


def test_crop_reads_inside_the_row_and_repeats_short_rows(tmp_path):
    path = tmp_path / "ramp.wav"
    soundfile.write(path, np.arange(32000) / 32000 - 0.5, 16000, subtype="FLOAT")
    torch.manual_seed(0)
    for _ in range(20):
        crop = load_random_crop(str(path), 8000, 24000, 16000, 0.5).numpy()
        first = round((crop[0] + 0.5) * 32000)
        assert 8000 <= first <= 16000 and crop.size == 8000
        assert np.allclose(np.diff(crop), 1 / 32000, atol=1e-6)
    short = load_random_crop(str(path), 0, 3000, 16000, 0.5).numpy()
    assert short.size == 8000
    assert np.array_equal(short[:3000], short[3000:6000])


def test_crop_starts_anywhere_in_the_row_the_last_start_included(tmp_path):
    path = tmp_path / "ramp.wav"
    soundfile.write(path, np.arange(32000) / 32000 - 0.5, 16000, subtype="FLOAT")
    torch.manual_seed(0)
    firsts = [round((load_random_crop(str(path), 8000, 16001, 16000, 0.5)[0].item() + 0.5) * 32000)
              for _ in range(50)]
    assert set(firsts) == {8000, 8001}  # one sample longer than the crop: two starts
    spread = [round((load_random_crop(str(path), 0, 32000, 16000, 0.5)[0].item() + 0.5) * 32000)
              for _ in range(200)]
    assert min(spread) < 2400 and max(spread) > 21600 and len(set(spread)) > 190


def test_crop_of_an_8k_row_is_seconds_of_its_audio_starting_anywhere(tmp_path):
    path = tmp_path / "ramp8k.wav"
    soundfile.write(path, np.arange(16000) / 16000 - 0.5, 8000, subtype="FLOAT")
    # One 8 kHz sample longer than a 0.5 s crop: the crop is one of two segments.
    segments = {first: load_segment(str(path), first, first + 4000, 8000)
                for first in (4000, 4001)}
    torch.manual_seed(0)
    firsts = []
    for _ in range(30):
        crop = load_random_crop(str(path), 4000, 8001, 8000, 0.5)
        matches = [first for first, segment in segments.items() if torch.equal(crop, segment)]
        assert len(matches) == 1
        firsts += matches
    assert set(firsts) == {4000, 4001}


def test_a_multichannel_segment_is_the_mean_of_its_channels(tmp_path):
    path = tmp_path / "stereo.wav"
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, (16000, 2)).astype(np.float32)
    soundfile.write(path, wave, 16000, subtype="FLOAT")
    expected = torch.from_numpy(wave[4000:12000].astype(np.float64).mean(axis=1)).float()
    torch.testing.assert_close(load_segment(str(path), 4000, 12000, 16000), expected)


def test_a_crop_of_a_long_8k_row_is_its_window_resampled_alone(tmp_path):
    """Only the crop is read: resampled with the rest of the row, its last samples would differ."""
    path = tmp_path / "ramp8k.wav"
    soundfile.write(path, np.arange(16000) / 16000 - 0.5, 8000, subtype="FLOAT")
    torch.manual_seed(0)
    firsts = set()
    for _ in range(10):
        crop = load_random_crop(str(path), 0, 16000, 8000, 0.5)
        near = round((crop[4000].item() + 0.5) * 16000) - 2000  # its middle: 2000 samples in
        matches = [first for first in range(max(0, near - 2), min(12000, near + 2) + 1)
                   if torch.equal(crop, load_segment(str(path), first, first + 4000, 8000))]
        assert len(matches) == 1
        firsts.update(matches)
    assert len(firsts) == 10


def test_a_row_shorter_than_the_crop_repeats_from_its_first_sample(tmp_path):
    path = tmp_path / "ramp.wav"
    soundfile.write(path, np.arange(16000) / 16000 - 0.5, 16000, subtype="FLOAT")
    row = load_segment(str(path), 1000, 4000, 16000)
    crop = load_random_crop(str(path), 1000, 4000, 16000, 0.5)
    assert torch.equal(crop, torch.cat([row, row, row[:2000]]))


def _datasets(n_source, n_target):
    source = DynamicItemDataset({f"s{i}": {"spk_id": f"spk{i % 2}"} for i in range(n_source)})
    target = DynamicItemDataset({f"t{i}": {"spk_id": f"true{i}"} for i in range(n_target)})
    source.set_output_keys(["id", "spk_id"])
    target.set_output_keys(["id"])
    return source, target


@pytest.mark.parametrize("n_source, n_target", [(7, 3), (3, 7), (5, 5)])
def test_pairs_cover_both_sets_and_the_shorter_cycles(n_source, n_target):
    pairs = PairedDataset(*_datasets(n_source, n_target), seed=1)
    assert len(pairs) == max(n_source, n_target)
    sources = [s["id"] for s, _ in pairs]
    targets = [t["id"] for _, t in pairs]
    assert set(sources) == {f"s{i}" for i in range(n_source)}
    assert set(targets) == {f"t{i}" for i in range(n_target)}
    shorter = min(n_source, n_target)
    assert max(np.unique(sources + targets, return_counts=True)[1]) <= -(-len(pairs) // shorter)


def test_crops_differ_between_pairs_and_epochs_and_repeat_with_the_seed(tmp_path):
    path = tmp_path / "ramp.wav"
    soundfile.write(path, np.arange(32000) / 32000 - 0.5, 16000, subtype="FLOAT")
    row = {"wav": str(path), "start": 0, "stop": 32000, "sample_rate": 16000}

    def cropped(n):
        data = DynamicItemDataset({f"u{i}": dict(row) for i in range(n)})
        add_crop_pipeline(data, 0.5)
        data.set_output_keys(["sig"])
        return data

    def first_samples(pairs):
        return [round(float(s["sig"][0]), 6) for s, _ in pairs]

    pairs = PairedDataset(cropped(8), cropped(1), seed=1)
    assert len(set(first_samples(pairs))) == 8  # one file in every row: the crops differ
    assert first_samples(pairs) == first_samples(PairedDataset(cropped(8), cropped(1), seed=1))
    alone = PairedDataset(cropped(1), cropped(1), seed=1)  # at index 0 in every epoch
    epochs = []
    for epoch in range(4):
        alone.set_epoch(epoch)
        epochs += first_samples(alone)
    assert len(set(epochs)) == 4


def test_the_whole_pipeline_gives_the_span_of_a_row_cut_inside_its_file(tmp_path):
    path = tmp_path / "ramp8k.wav"
    soundfile.write(path, np.arange(16000) / 16000 - 0.5, 8000, subtype="FLOAT")
    data = DynamicItemDataset({"late": {"wav": str(path), "start": 6000, "stop": 10000,
                                        "sample_rate": 8000}})
    add_whole_pipeline(data)
    data.set_output_keys(["sig"])
    sig = data[0]["sig"]
    assert torch.equal(sig, load_segment(str(path), 6000, 10000, 8000))
    # Its middle is the ramp 2000 samples into the row, 8000 into the file.
    assert sig.shape == (8000,) and sig[4000].item() == pytest.approx(0.0, abs=1e-3)


def test_the_crop_pipeline_gives_crops_of_the_seconds_asked_inside_the_row(tmp_path):
    path = tmp_path / "ramp8k.wav"
    soundfile.write(path, np.arange(16000) / 16000 - 0.5, 8000, subtype="FLOAT")
    data = DynamicItemDataset({"u1": {"wav": str(path), "start": 2000, "stop": 14000,
                                      "sample_rate": 8000}})
    add_crop_pipeline(data, 0.75)
    data.set_output_keys(["sig"])
    torch.manual_seed(0)
    for _ in range(5):
        sig = data[0]["sig"]
        assert sig.shape == (12000,)
        # Its middle sample lies half a crop (3000 samples at 8 kHz) or more from either end.
        middle = round((sig[6000].item() + 0.5) * 16000)
        assert 2000 + 3000 - 2 <= middle <= 14000 - 3000 + 2


def test_a_pair_seeds_only_the_cpu_generator_it_gives_back(monkeypatch):
    """The crops draw on the CPU: a pair leaves the CUDA generators alone, which it would not
    give back (and seeding them costs about 0.1 ms a pair), and the CPU state as it was."""
    cuda_seeds = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", cuda_seeds.append)
    monkeypatch.setattr(torch.cuda, "manual_seed", cuda_seeds.append)
    pairs = PairedDataset(*_datasets(3, 2), seed=1)
    before = torch.get_rng_state()
    pairs[0]
    assert cuda_seeds == []
    assert torch.equal(torch.get_rng_state(), before)


def in_process(monkeypatch, rank, world=2):
    """Make this process read as process ``rank`` of a DDP group of ``world``."""
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: world)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: rank)


def test_steps_per_epoch_are_each_process_share(monkeypatch):
    """The schedule of the domain losses counts each process's steps: its share of the data,
    in whole batches, as the training loader drops a last, smaller one (drop_last)."""
    pairs = PairedDataset(*_datasets(26, 10), seed=1)
    assert pairs.steps_per_epoch(4) == 6
    in_process(monkeypatch, 1)
    assert pairs.steps_per_epoch(4) == 3
    source, target = _datasets(24, 10)
    batches = SpeakerBatchSampler([source.data[i]["spk_id"] for i in source.data_ids],
                                  2, 2, n_batches=6, seed=1)
    assert PairedDataset(source, target, 1, batches).steps_per_epoch(4) == 3  # 6 whole batches


@pytest.mark.parametrize("n_source, per_process", [(24, 3), (9, 1)])
def test_each_process_takes_whole_speaker_batches_of_its_own(monkeypatch, n_source,
                                                             per_process):
    """In two processes, every speaker batch of the epoch is taken whole, by one process, and
    each takes as many: 24 crops fill 6 batches of 2 speakers x 2 (3 each), 9 crops 2 (one
    each, where one process takes 4 of them); 5 batches would be 6, one drawn for the second."""
    source, target = _datasets(n_source, 3)
    n_batches = dataio.speaker_batches_per_epoch(n_source, 4, 2)
    assert n_batches == 2 * per_process
    sampler = SpeakerBatchSampler([source.data[i]["spk_id"] for i in source.data_ids],
                                  2, 2, n_batches=n_batches, seed=1)
    pairs = PairedDataset(source, target, 1, sampler)
    epoch = [[pairs.source.data_ids[i] for i in batch] for batch in sampler]
    for rank in (0, 1):
        in_process(monkeypatch, rank)
        assert pairs.steps_per_epoch(4) == per_process
        batches = [[pairs[i][0]["id"] for i in batch] for batch in pairs.process_batches(4)]
        assert batches == epoch[rank::2]


def test_pairing_depends_on_epoch_and_is_reproducible():
    pairs = PairedDataset(*_datasets(6, 4), seed=1)
    first = [(s["id"], t["id"]) for s, t in pairs]
    pairs.set_epoch(1)
    second = [(s["id"], t["id"]) for s, t in pairs]
    pairs.set_epoch(0)
    assert [(s["id"], t["id"]) for s, t in pairs] == first != second


@pytest.mark.parametrize("source_batches", [False, True], ids=["shuffled", "speaker_batches"])
def test_each_epoch_draws_its_own_target_order(source_batches):
    """The target crops that share a step change from epoch to epoch, as the source's do."""
    source, target = _datasets(6, 6)
    batches = SpeakerBatchSampler([source.data[i]["spk_id"] for i in source.data_ids],
                                  2, 2, n_batches=3, seed=1) if source_batches else None
    pairs = PairedDataset(source, target, 1, batches)
    orders, partners = set(), set()
    for epoch in range(4):
        pairs.set_epoch(epoch)
        targets = tuple(t["id"] for _, t in pairs)
        orders.add(targets)
        partners.update(t["id"] for s, t in pairs if s["id"] == "s0")
    assert len(orders) == 4
    assert len(partners) > 1  # a source crop meets other target crops


def test_the_pairs_of_each_epoch_follow_the_speaker_batches_of_that_epoch():
    labels = [f"spk{i % 4}" for i in range(16)]
    source = DynamicItemDataset({f"s{i}": {"spk_id": spk} for i, spk in enumerate(labels)})
    target = DynamicItemDataset({f"t{i}": {"spk_id": ""} for i in range(4)})
    source.set_output_keys(["id"])
    target.set_output_keys(["id"])
    pairs = PairedDataset(source, target, seed=3,
                          source_batches=SpeakerBatchSampler(labels, 2, 2, n_batches=4, seed=5))
    orders = []
    for epoch in (0, 1, 2):
        pairs.set_epoch(epoch)
        alone = SpeakerBatchSampler(labels, 2, 2, n_batches=4, seed=5)
        alone.set_epoch(epoch)
        orders.append([f"s{i}" for batch in alone for i in batch])
        assert [pairs[i][0]["id"] for i in range(len(pairs))] == orders[-1]
    assert orders[0] != orders[1] != orders[2]


def test_the_crops_of_a_pair_draw_from_a_stream_apart_from_the_training_steps(tmp_path):
    """Pair ``index`` crops from ``random_seed(seed, CROP_STREAM, epoch, index)``: not from the
    seed of the training step of that number, which draws its dropout and augmentations."""
    path = tmp_path / "ramp.wav"
    soundfile.write(path, np.arange(32000) / 32000 - 0.5, 16000, subtype="FLOAT")
    row = {"wav": str(path), "start": 0, "stop": 32000, "sample_rate": 16000}
    datasets = [DynamicItemDataset({f"u{i}": dict(row) for i in range(n)}) for n in (3, 1)]
    for data in datasets:
        add_crop_pipeline(data, 0.5)
        data.set_output_keys(["sig"])
    pairs = PairedDataset(*datasets, seed=7)
    pairs.set_epoch(2)

    def drawn_from(stream, index):
        torch.manual_seed(dataio.random_seed(7, stream, 2, index))
        return load_random_crop(str(path), 0, 32000, 16000, 0.5)

    for index in range(3):
        crop = pairs[index][0]["sig"]
        assert torch.equal(crop, drawn_from(dataio.CROP_STREAM, index))
        assert not torch.equal(crop, drawn_from(dataio.STEP_STREAM, index))


def test_the_source_items_come_in_an_order_drawn_anew_each_epoch():
    """Without speaker batches a manifest's order (speaker by speaker) would make every batch
    of one or two speakers."""
    source, target = _datasets(20, 20)
    pairs = PairedDataset(source, target, seed=1)
    orders = []
    for epoch in range(3):
        pairs.set_epoch(epoch)
        orders.append([s["id"] for s, _ in pairs])
        assert sorted(orders[-1]) == sorted(source.data_ids)
    assert source.data_ids not in orders
    assert orders[0] != orders[1] != orders[2]


def test_target_batches_carry_no_speaker():
    source, target = _datasets(4, 4)
    source_batch, target_batch = collate_pairs([PairedDataset(source, target, 0)[i] for i in range(4)])
    assert len(source_batch.spk_id) == 4
    assert not hasattr(target_batch, "spk_id")


def test_speaker_labels_are_encoded_from_source(tmp_path):
    source, _ = _datasets(4, 1)
    encoder = add_speaker_labels(source, str(tmp_path / "labels.txt"))
    source.set_output_keys(["spk_id", "spk_id_encoded"])
    for item in source:
        assert encoder.decode_ndim(item["spk_id_encoded"].item()) == item["spk_id"]
    assert len(encoder) == 2


def test_label_encoder_reads_each_class_once_and_numbers_them_by_first_item(tmp_path,
                                                                             monkeypatch):
    # Each item's class is made once, from its columns, not by running the
    # dataset's pipeline over every item twice (seconds at a million rows).
    made = []
    monkeypatch.setattr(dataio, "speaker_class",
                        lambda *values: made.append(values) or speaker_class(*values))
    source = DynamicItemDataset({f"u{i}": {"spk_id": spk, "phrase": phrase} for i, (spk, phrase)
                                 in enumerate([("b", "02"), ("a", "01"), ("b", "01"),
                                               ("b", "02"), ("c", "01")])})
    encoder = add_speaker_labels(source, str(tmp_path / "labels.txt"), "spk_phrase")
    assert len(made) == len(source)
    assert encoder.lab2ind == {("b", "02"): 0, ("a", "01"): 1, ("b", "01"): 2, ("c", "01"): 3}
    source.set_output_keys(["speaker_class", "spk_id_encoded"])
    assert [item["spk_id_encoded"].item() for item in source] == [0, 1, 2, 0, 3]


def test_a_reloaded_label_encoder_lacking_a_source_speaker_fails_up_front(tmp_path):
    """A resumed run on other source data: the same speaker count, one speaker renamed."""
    add_speaker_labels(_datasets(4, 1)[0], str(tmp_path / "labels.txt"))
    renamed = DynamicItemDataset({"s0": {"spk_id": "spk0"}, "s1": {"spk_id": "spk7"}})
    with pytest.raises(ValueError, match=r"labels.txt: lacks 1 classes \(spk_id\) of the source "
                                         r"training data, e.g. spk7: it was made by a run "
                                         r"with another speaker_label or source manifest"):
        add_speaker_labels(renamed, str(tmp_path / "labels.txt"))
    same = DynamicItemDataset({"s0": {"spk_id": "spk1"}, "s1": {"spk_id": "spk0"}})
    assert add_speaker_labels(same, str(tmp_path / "labels.txt")).encode_label("spk1") == 1


def test_speaker_classes_name_the_rows_without_a_value_of_their_columns():
    rows = pd.DataFrame({"ID": ["u1", "u2", "u3"], "spk_id": ["a", "a", "b"],
                         "phrase": ["01", "", "02"]})
    assert speaker_classes(rows, "spk_id", "train.csv") == ["a", "a", "b"]
    with pytest.raises(ManifestError, match=r"train.csv: speaker_label: spk_phrase needs a "
                                            r"'phrase' in every row of the source training "
                                            r"manifest; 1 rows have none\n  u2\nFix: "):
        speaker_classes(rows, "spk_phrase", "train.csv")


def test_item_classes_and_label_numbers_follow_the_items_not_their_sorted_ids(tmp_path):
    data = DynamicItemDataset({"z9": {"spk_id": "b", "phrase": "02"},
                               "a1": {"spk_id": "a", "phrase": "01"},
                               "m5": {"spk_id": "b", "phrase": "01"}})
    assert dataio.item_classes(data, "spk_phrase") == [("b", "02"), ("a", "01"), ("b", "01")]
    assert dataio.item_classes(data, "spk_id") == ["b", "a", "b"]
    assert add_speaker_labels(data, str(tmp_path / "labels.txt")).lab2ind == {"b": 0, "a": 1}


def test_a_reloaded_label_encoder_with_classes_the_source_lacks_refuses_to_encode(tmp_path):
    path = str(tmp_path / "labels.txt")
    add_speaker_labels(DynamicItemDataset({f"u{i}": {"spk_id": f"spk{i}"} for i in range(3)}),
                       path)
    fewer = DynamicItemDataset({"u0": {"spk_id": "spk0"}, "u1": {"spk_id": "spk1"}})
    assert len(add_speaker_labels(fewer, path)) == 3
    fewer.set_output_keys(["spk_id_encoded"])
    with pytest.raises(RuntimeError, match=r"expect_len\(2\) was called, but 3 categories"):
        fewer[0]


def test_a_full_disk_leaves_no_half_label_encoder(tmp_path, monkeypatch):
    path = tmp_path / "labels.txt"

    def half_then_full(encoder, file):
        with open(file, "w") as out:
            out.write("'spk0' => 0\n'sp")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(CategoricalEncoder, "save", half_then_full)
    with pytest.raises(OSError, match="No space left on device"):
        add_speaker_labels(_datasets(4, 1)[0], str(path))
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    assert len(add_speaker_labels(_datasets(4, 1)[0], str(path))) == 2


def label_in_process(rank, folder):
    """One DDP process of two adding speaker labels to a dataset; what it raised is saved."""
    try:
        add_speaker_labels(_datasets(4, 1)[0], os.path.join(folder, "save", "labels.txt"))
        got = None
    except Exception as error:
        got = (type(error).__name__, str(error))
    torch.save(got, os.path.join(folder, f"rank{rank}.pt"))


def test_a_label_encoder_the_main_process_cannot_write_stops_every_process(tmp_path):
    # The main process alone writes it; the other one stopped at its next collective with an
    # error of the connection ("Connection closed by peer").
    (tmp_path / "save").touch()  # a file where the folder should be
    in_two_processes(label_in_process, str(tmp_path))
    main, other = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    assert main[0] == "NotADirectoryError"
    assert other == ("RuntimeError", f"the main process failed with NotADirectoryError: {main[1]}")


def test_manifest_dataset_validates(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("ID,wav\na,a.wav\n")
    with pytest.raises(ManifestError, match=r"m.csv: missing columns \['duration', 'start', "
                                            r"'stop', 'spk_id', 'domain'\].*\nFix: a manifest "
                                            r"needs the header"):
        manifest_dataset(str(manifest))
    soundfile.write(tmp_path / "a.wav", np.zeros(8000), 8000)
    manifest.write_text("ID,duration,wav,start,stop,spk_id,domain\n"
                        f"a,1.0,{tmp_path / 'a.wav'},0,16000,s,d\n")
    # Its audio is opened: the file is 8 kHz, where a manifest without sample_rate says 16 kHz.
    with pytest.raises(ManifestError, match=r"m.csv: .*\n  a: .*a.wav is 8000 Hz but the "
                                            r"manifest says 16000 Hz"):
        manifest_dataset(str(manifest))
    data = manifest_dataset(str(manifest), check_audio=False)
    assert data.data == {"a": {"duration": 1.0, "wav": str(tmp_path / "a.wav"), "start": 0,
                               "stop": 16000, "spk_id": "s", "domain": "d",
                               "sample_rate": 16000}}


def test_equal_length_batches_never_mix_lengths():
    lengths = [3, 5, 3, 3, 7, 5, 3]
    batches = equal_length_batches(lengths, batch_size=2)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert all(len({lengths[i] for i in b}) == 1 and len(b) <= 2 for b in batches)
    assert [lengths[b[0]] for b in batches] == [7, 5, 3, 3]  # longest first


@pytest.mark.parametrize("front", ["fbank", "wavlm", "wav2vec2"])
def test_embeddings_do_not_depend_on_batch_neighbours(front, tiny_ssl, tmp_path):
    from speechbrain.dataio.batch import PaddedBatch
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    from local.data.manifest_io import write_manifest
    from local.data.schema import utterance_row
    from local.data.dataio import add_whole_pipeline
    from local.model.fbank_frontend import FbankFrontend
    from local.model.ssl_frontend import SSLFrontend
    from tests.conftest import TINY_SSL_DIM

    rng = np.random.default_rng(0)
    rows = []
    for n, length in enumerate([16000, 12000, 16000, 20000, 12000, 16000]):
        path = tmp_path / f"u{n}.wav"
        soundfile.write(path, rng.uniform(-0.3, 0.3, length), 16000)
        rows.append(utterance_row(f"u{n}", str(path), "s", "d"))
    write_manifest(rows, tmp_path / "m.csv")
    dataset = manifest_dataset(str(tmp_path / "m.csv"))
    add_whole_pipeline(dataset)

    torch.manual_seed(0)
    if front == "fbank":
        frontend, size = FbankFrontend(n_mels=24).eval(), 24
    else:
        frontend = SSLFrontend(tiny_ssl[front], str(tmp_path), family=front).eval()
        size = TINY_SSL_DIM
    encoder = ECAPA_TDNN(size, channels=[32, 32, 32, 32, 96], lin_neurons=16).eval()

    def embed(wavs, lens):
        return encoder(frontend(wavs, lens), lens)

    batched = compute_embeddings(embed, dataset, batch_size=8)
    single = compute_embeddings(embed, dataset, batch_size=1)
    assert batched.keys() == single.keys() == {f"u{n}" for n in range(6)}
    for utt in batched:
        assert torch.allclose(batched[utt], single[utt], atol=1e-5)
    # What equal-length batching avoids: padding changes a short utterance's embedding.
    dataset.set_output_keys(["id", "sig"])
    mixed = PaddedBatch([dataset[1], dataset[3]])
    with torch.no_grad():
        padded = embed(mixed.sig.data, mixed.sig.lengths)[0, 0]
    assert not torch.allclose(padded, single["u1"], atol=1e-3)


@pytest.mark.parametrize("batching", ["equal_length", "length_sorted"])
def test_each_utterance_gets_the_embedding_of_its_own_audio(batching):
    # IDs out of sorted order, lengths in no order: each batch holds several of them.
    levels = {"u3": 3.0, "u1": 1.0, "u4": 4.0, "u2": 2.0, "u0": 0.5}
    dataset = DynamicItemDataset({
        utt: {"wav": f"{utt}.wav", "start": 0, "stop": 4 + 2 * (n % 2), "sample_rate": 16000,
              "sig": torch.full((4 + 2 * (n % 2),), level)}
        for n, (utt, level) in enumerate(levels.items())})
    embeddings = compute_embeddings(lambda wavs, lens: wavs[:, None, :1], dataset, batch_size=3,
                                    batching=batching)
    assert {utt: vector.item() for utt, vector in embeddings.items()} == levels
    chosen = compute_embeddings(lambda wavs, lens: wavs[:, None, :1], dataset, batch_size=3,
                                ids=["u4", "u2", "u0"], batching=batching)
    assert {utt: vector.item() for utt, vector in chosen.items()} == {
        utt: levels[utt] for utt in ("u4", "u2", "u0")}


def test_a_padded_batch_passes_each_utterance_its_relative_length():
    dataset = DynamicItemDataset({
        utt: {"wav": f"{utt}.wav", "start": 0, "stop": n, "sample_rate": 16000,
              "sig": torch.ones(n)} for utt, n in (("long", 8), ("short", 2), ("mid", 6))})
    embeddings = compute_embeddings(lambda wavs, lens: lens[:, None, None], dataset,
                                    batch_size=3, batching="length_sorted")
    assert {utt: vector.item() for utt, vector in embeddings.items()} == {
        "long": 1.0, "short": 0.25, "mid": 0.75}


def test_a_row_cut_from_a_long_recording_counts_its_own_span():
    """A 1 s row from 700 s into a recording: 1 s to embed, as long as a 1 s row from its start."""
    rows = {"early": {"wav": "long.wav", "start": 0, "stop": 16000, "sample_rate": 16000,
                      "sig": torch.full((16000,), 1.0)},
            "late": {"wav": "long.wav", "start": 16000 * 700, "stop": 16000 * 701,
                     "sample_rate": 16000, "sig": torch.full((16000,), 2.0)}}
    batches = []

    def embed(wavs, wav_lens):
        batches.append(len(wavs))
        return wavs[:, None, :1]

    assert embeddable_ids(DynamicItemDataset(rows), 0.5, 600) == ["early", "late"]
    embeddings = compute_embeddings(embed, DynamicItemDataset(rows), limits=(0.5, 600))
    assert {utt: vector.item() for utt, vector in embeddings.items()} == {"early": 1.0,
                                                                            "late": 2.0}
    assert batches == [2]  # one length: one batch without padding


def test_relative_lengths_count_back_as_their_samples():
    # Rounded down below k / total, a length read back by truncation would count k - 1.
    for total in (101, 160, 257, 4001):
        counts = list(range(1, total + 1))
        lengths = relative_lengths(counts, total, torch.ones(1))
        assert sample_counts(torch.zeros(total, total), lengths) == counts


def test_a_file_named_by_a_relative_path_has_the_signal_key_of_its_absolute_path(tmp_path,
                                                                                monkeypatch):
    row = {"wav": "a.wav", "start": 0, "stop": 800, "sample_rate": 8000}
    for folder in (tmp_path / "one", tmp_path / "two"):
        folder.mkdir()
        soundfile.write(folder / "a.wav", np.zeros(800), 8000)
    monkeypatch.chdir(tmp_path / "one")
    assert signal_key(row) == signal_key(dict(row, wav=str(tmp_path / "one" / "a.wav")))
    monkeypatch.chdir(tmp_path / "two")
    assert signal_key(row) == signal_key(dict(row, wav=str(tmp_path / "two" / "a.wav")))
    assert signal_key(row) != signal_key(dict(row, wav=str(tmp_path / "one" / "a.wav")))


def test_embedding_cache_is_reused(tmp_path):
    dataset = DynamicItemDataset({"a": {"wav": "a.wav", "start": 0, "stop": 4,
                                        "sample_rate": 16000}})

    def sig(start):
        return torch.ones(4)

    dataset.add_dynamic_item(sig, takes="start", provides="sig")
    cache = str(tmp_path / "emb.pt")
    first = compute_embeddings(lambda w, l: w.sum(1, keepdim=True).unsqueeze(1), dataset,
                               cache_path=cache)
    again = compute_embeddings(lambda w, l: 0 * w[:, None, :1], dataset, cache_path=cache)
    assert torch.equal(first["a"], again["a"]) and first["a"].item() == 4


def test_audio_changed_after_the_check_is_named_when_it_is_read(tmp_path):
    path = tmp_path / "u.wav"
    soundfile.write(path, np.zeros(16000), 16000)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # truncated: about 8000 samples left
    with pytest.raises(ManifestError, match=rf"{path}: has \d+ samples from sample 0 on, where "
                                            r"the manifest's row needs 16000 .*\nFix: the file "
                                            r"changed after the manifest was written"):
        load_segment(str(path), 0, 16000, 16000)
    path.write_bytes(data[:44])  # the header alone: no sample, where a crop divided by 0
    with pytest.raises(ManifestError, match=rf"{path}: has 0 samples"):
        load_random_crop(str(path), 0, 16000, 16000, 0.5)
    path.write_bytes(b"not audio" * 10)
    with pytest.raises(ManifestError, match=rf"{path}: cannot read audio"):
        load_segment(str(path), 0, 16000, 16000)


def test_a_file_at_another_rate_than_its_row_says_is_named_when_it_is_read(tmp_path):
    """Without the audio check, an 8 kHz file in a manifest with no sample_rate column (16 kHz)
    would train as sped-up speech: its crop names the file instead."""
    path = tmp_path / "telephone.wav"
    soundfile.write(path, np.zeros(16000), 8000)
    manifest = tmp_path / "train.csv"
    pd.DataFrame([{"ID": "u1", "duration": 1.0, "wav": str(path), "start": 0, "stop": 16000,
                   "spk_id": "s1", "domain": "tel"}]).to_csv(manifest, index=False)
    data = manifest_dataset(str(manifest), check_audio=False)
    add_crop_pipeline(data, 0.5)
    data.set_output_keys(["sig"])
    with pytest.raises(ManifestError, match=r"telephone.wav: is 8000 Hz, but its manifest row "
                                            r"says 16000 Hz(.|\n)*sample_rate column"):
        data[0]


def test_a_wav_path_that_is_a_folder_says_so(tmp_path):
    with pytest.raises(ManifestError, match=rf"{tmp_path}: is a folder, not an audio file"):
        audio_info(str(tmp_path))
    with pytest.raises(ManifestError, match=rf"{tmp_path}: is a folder, not an audio file"):
        load_segment(str(tmp_path), 0, 16000, 16000)


def test_utterances_too_short_or_too_long_to_embed_are_refused_before_any_is_embedded():
    rows = {"u1": {"wav": "u1.wav", "start": 0, "stop": 16000, "sample_rate": 16000},
            "u2": {"wav": "u2.wav", "start": 0, "stop": 800, "sample_rate": 8000},
            "u3": {"wav": "u3.wav", "start": 0, "stop": 16000 * 700, "sample_rate": 16000}}
    embedded = []

    def embed(wavs, wav_lens):
        embedded.append(len(wavs))
        return wavs.mean(dim=1, keepdim=True).unsqueeze(1)

    with pytest.raises(ManifestError, match=r"utterances to embed: 1 inputs are shorter than "
                                            r"min_embed_seconds \(0.5 s\).*\n  u2 \(u2.wav\): "
                                            r"0.10 s\n"):
        compute_embeddings(embed, DynamicItemDataset(rows), limits=(0.5, 600))
    with pytest.raises(ManifestError, match=r"1 inputs are longer than max_embed_seconds "
                                            r"\(600 s\).*\n  u3 \(u3.wav\): 700.00 s\nFix: cut "
                                            r"each into rows of at most 600 s"):
        compute_embeddings(embed, DynamicItemDataset(rows), ids=["u1", "u3"], limits=(0.5, 600))
    assert embedded == []


def test_check_lengths_takes_the_limits_themselves():
    seconds = pd.Series([0.5, 600.0], index=["u1", "u2"])
    check_lengths(seconds, "eval.csv", 0.5, 600)
    with pytest.raises(ManifestError, match=r"1 inputs are shorter .*\n  u1: 0.50 s"):
        check_lengths(seconds, "eval.csv", 0.51, 600)
    with pytest.raises(ManifestError, match=r"1 inputs are longer .*\n  u2: 600.00 s"):
        check_lengths(seconds, "eval.csv", 0.5, 599.9)


def test_embeddable_ids_take_the_limits_themselves():
    # As check_lengths: a row of exactly min_embed_seconds or max_embed_seconds is embedded.
    dataset = DynamicItemDataset({
        utt: {"wav": f"{utt}.wav", "start": 0, "stop": round(seconds * 8000), "sample_rate": 8000}
        for utt, seconds in (("u1", 0.5), ("u2", 600.0), ("u3", 0.49), ("u4", 600.1))})
    assert embeddable_ids(dataset, 0.5, 600) == ["u1", "u2"]


def test_embeddable_ids_measure_each_row_from_its_start():
    # Rows cut from one recording: u2 is 0.25 s long, though it stops 1.25 s into the file.
    dataset = DynamicItemDataset({
        utt: {"wav": "long.wav", "start": start, "stop": stop, "sample_rate": 8000}
        for utt, start, stop in (("u1", 0, 4000), ("u2", 8000, 10000), ("u3", 4000, 8000))})
    assert embeddable_ids(dataset, 0.4, 0.6) == ["u1", "u3"]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_float_file_with_nan_or_infinite_samples_is_named_when_it_is_read(bad, tmp_path):
    """Such samples made NaN embeddings, refused only at scoring after the whole evaluation
    set was embedded, and naming no file; a training crop over them, a NaN loss."""
    path = tmp_path / "enhanced.wav"
    wave = np.full((16000, 2), 0.1, dtype=np.float32)
    wave[8000:8003, 1] = bad
    soundfile.write(path, wave, 16000, subtype="FLOAT")
    refusal = (rf"{path}: NaN or infinite samples, which no model can embed\n  samples 0 to "
               r"16000: 3 such samples\nFix: write the file again from its source audio")
    with pytest.raises(ManifestError, match=refusal):
        load_segment(str(path), 0, 16000, 16000)
    with pytest.raises(ManifestError, match=refusal):
        load_random_crop(str(path), 0, 16000, 16000, 2.0)
    assert torch.equal(load_segment(str(path), 0, 8000, 16000), torch.full((8000,), 0.1))
