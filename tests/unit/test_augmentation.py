"""Waveform augmentation: each augmented crop keeps its labels, and what cannot work is refused."""

import os
import random
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch
from speechbrain.augment.preparation import write_csv
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.checkpoints import Checkpointer

from local.errors import ManifestError
from local.model.dann_brain import DANNBrain
from local.model.augmentation import (
    DATA_KEYS,
    DataPositions,
    augmented_pair,
    check_augmentation,
    check_data_csv,
)
from local.run_folder import AUGMENTATION_DATA
from local.model.speaker_heads import GE2EHead, GE2ELoss
from local.settings import load_model_hparams
from tests.conftest import in_two_processes

N_SOURCE, N_TARGET, SAMPLES = 4, 3, 16000
# Each crop is white noise at its own level, 8x apart: an augmented copy
# (speed, bands and up to 10,000 of its samples dropped, noise at 0-15 dB SNR,
# its level kept) is told by its level.
LEVELS = 8.0 ** np.arange(N_SOURCE + N_TARGET) / 1000


def wav_augment(folder, **overrides):
    """The recipe's ``wav_augment`` (hparams/common.yaml), as a run into ``folder`` builds it."""
    hparams = load_model_hparams("hparams/dann_fbank.yaml",
                                 {"condition": "demo", "n_speakers": 5, "num_workers": 0,
                                  "output_folder": str(folder), "augment": True, **overrides})
    return hparams["wav_augment"]


def crops():
    """A step's (source, target) batches, each crop at its level of :data:`LEVELS`."""
    generator = torch.Generator().manual_seed(0)
    wavs = [level * torch.randn(SAMPLES, generator=generator) for level in LEVELS]
    source = PaddedBatch([{"id": f"s{i}", "sig": wavs[i], "spk_id_encoded": torch.tensor([10 + i])}
                          for i in range(N_SOURCE)])
    target = PaddedBatch([{"id": f"t{i}", "sig": wavs[N_SOURCE + i]} for i in range(N_TARGET)])
    return source, target


def crop_of(wav):
    """The index of the crop whose level a waveform has (its samples that were not dropped)."""
    kept = wav[wav != 0].abs().median().item() / 0.6745  # a Gaussian's median |x| / sigma
    return int(np.argmin(np.abs(np.log(LEVELS) - np.log(kept))))


@pytest.fixture
def noise_csv(tmp_path):
    """A noise CSV of two 16 kHz recordings, written by SpeechBrain's own writer."""
    files = []
    for i, seconds in enumerate((0.5, 3.0)):
        path = str(tmp_path / f"noise{i}.wav")
        soundfile.write(path, np.random.default_rng(i).normal(size=int(16000 * seconds)), 16000)
        files.append(path)
    csv = str(tmp_path / "noise.csv")
    write_csv(files, csv)
    return csv


@pytest.mark.parametrize("with_noise", [False, True])
def test_each_augmented_crop_keeps_its_labels(with_noise, request, tmp_path):
    overrides = {"noise_csv": request.getfixturevalue("noise_csv")} if with_noise else {}
    augmenter = wav_augment(tmp_path, **overrides)
    assert len(augmenter.augmentations) == 3 + with_noise
    source, target = crops()
    for step in range(3):  # several draws of speed and drops
        torch.manual_seed(step)
        aug_source, aug_target = augmented_pair(augmenter, source, target)
        assert (len(aug_source), len(aug_target)) == (2 * N_SOURCE, 2 * N_TARGET)
        assert aug_source.sig.data.shape[1] == aug_target.sig.data.shape[1]
        for row in range(2 * N_SOURCE):
            crop = crop_of(aug_source.sig.data[row])
            assert crop < N_SOURCE
            assert aug_source.id[row] == f"s{crop}"
            assert aug_source.spk_id_encoded.data[row].item() == 10 + crop
        for row in range(2 * N_TARGET):
            assert aug_target.id[row] == f"t{crop_of(aug_target.sig.data[row]) - N_SOURCE}"
        # The clean crops first, then their augmented copies, which differ from them.
        clean = source.sig.data
        assert torch.equal(aug_source.sig.data[:N_SOURCE, :SAMPLES], clean)
        copies = aug_source.sig.data[N_SOURCE:]
        width = min(copies.shape[1], SAMPLES)
        assert not torch.allclose(copies[:, :width], clean[:, :width], atol=1e-3)


def test_a_changed_speed_gives_every_crop_its_own_length(tmp_path):
    """Speed perturbation at 95 % lengthens the copies: the clean crops' lengths shrink to match."""
    augmenter = wav_augment(tmp_path)
    source, target = crops()
    for seed in range(20):
        torch.manual_seed(seed)
        aug_source, _ = augmented_pair(augmenter, source, target)
        if aug_source.sig.data.shape[1] > SAMPLES:
            lengths = aug_source.sig.lengths
            assert torch.allclose(lengths[:N_SOURCE] * aug_source.sig.data.shape[1],
                                  torch.full((N_SOURCE,), float(SAMPLES)), atol=1)
            assert torch.all(lengths[N_SOURCE:] == 1)
            return
    pytest.fail("no draw of 20 slowed the crops down")


def test_ge2e_takes_the_augmented_copies_as_more_crops_of_each_speaker():
    speakers, utterances, dim = 3, 2, 4
    head = GE2EHead(GE2ELoss(), speakers, utterances, source_speakers=5,
                    batch_size=speakers * utterances)
    clean, copies = torch.randn(2, speakers * utterances, 1, dim)
    expected = head.loss(torch.cat([clean.reshape(speakers, utterances, dim),
                                    copies.reshape(speakers, utterances, dim)], dim=1))
    loss, _ = head(torch.cat([clean, copies]), None, None, None)
    assert torch.allclose(loss, expected)
    plain, _ = head(clean, None, None, None)
    assert torch.allclose(plain, head.loss(clean.reshape(speakers, utterances, dim)))


def settings(**given):
    """What check_augmentation reads, augmentation on, no SSL cache."""
    return {"augment": True, "noise_csv": None, "rir_csv": None, **given}


def test_the_ssl_feature_cache_is_refused_with_augmentation():
    with pytest.raises(ManifestError, match=r"m.yaml: --augment=True with "
                                            r"--cache_ssl_features=True: .*clean audio.*\nFix: "
                                            r"pass --cache_ssl_features=False \(the SSL model "
                                            r"then runs on every augmented crop, at its cost\), "
                                            r"or --augment=False$"):
        check_augmentation("m.yaml", settings(cache_ssl_features=True))
    check_augmentation("m.yaml", settings(cache_ssl_features=False))
    check_augmentation("m.yaml", settings(augment=False, cache_ssl_features=True))


def test_a_data_file_without_augmentation_is_refused(noise_csv):
    with pytest.raises(ManifestError, match=r"^m.yaml: --noise_csv=.*noise.csv augments "
                                            r"nothing without --augment=True\nFix: pass "
                                            r"--augment=True as well, or leave them out$"):
        check_augmentation("m.yaml", settings(augment=False, noise_csv=noise_csv))
    check_augmentation("m.yaml", settings(noise_csv=noise_csv))


def test_the_run_record_hashes_every_augmentation_data_file():
    assert AUGMENTATION_DATA == tuple(f"{key}_sha256" for key in DATA_KEYS)


def test_a_missing_csv_is_refused_naming_it(tmp_path):
    missing = str(tmp_path / "rirs.csv")
    with pytest.raises(ManifestError, match=rf"{missing}: --rir_csv: no such file\nFix: give "
                                            "a CSV of room impulse responses"):
        check_augmentation("m.yaml", settings(rir_csv=missing))


@pytest.mark.parametrize("text, problem", [
    ("ID,wav,wav_format,wav_opts\nn1,a.wav,wav,\n", "not a SpeechBrain augmentation CSV"),
    ("ID,duration,wav,wav_format\nn1,1.0,a.wav,wav\n", "not a SpeechBrain augmentation CSV"),
    ("ID,duration,wav,wav_format,wav_opts\n", "has no rows"),
    ("ID,duration,path,path_format,path_opts\nn1,1.0,a.wav,wav,\n",
     r"its first audio column is \['path'\], not wav"),
    ("ID,duration,wav,wav_format,wav_opts\nn1,1.0,$noise_root/a.wav,wav,\n",
     "not a SpeechBrain augmentation CSV"),
])
def test_a_malformed_csv_is_refused_naming_it(tmp_path, text, problem):
    path = tmp_path / "noise.csv"
    path.write_text(text)
    with pytest.raises(ManifestError, match=rf"{path}: --noise_csv: {problem}"):
        check_data_csv(str(path), "noise_csv")


def test_a_csv_row_whose_audio_cannot_be_used_is_named(noise_csv, tmp_path):
    slow = str(tmp_path / "slow.wav")
    soundfile.write(slow, np.zeros(8000), 8000)
    with open(noise_csv, "a") as csv:
        csv.write(f"slow,1.0,{slow},wav,\ngone,1.0,{tmp_path}/gone.wav,wav,\n")
    with pytest.raises(ManifestError) as err:
        check_data_csv(noise_csv, "noise_csv")
    message = str(err.value)
    assert message.startswith(f"{noise_csv}: --noise_csv: 2 of its 4 noise recordings")
    assert f"slow: {slow} is 8000 Hz, not 16000" in message
    assert "gone: " in message and "noise0" not in message


def test_a_csv_with_a_single_unusable_file_is_refused(noise_csv, tmp_path):
    slow = str(tmp_path / "slow.wav")
    soundfile.write(slow, np.zeros(8000), 8000)
    with open(noise_csv, "a") as csv:
        csv.write(f"slow,1.0,{slow},wav,\n")
    with pytest.raises(ManifestError, match=rf"^{noise_csv}: --noise_csv: 1 of its 3 noise "
                                            rf"recordings cannot be used\n  slow: {slow} is 8000 Hz"):
        check_data_csv(noise_csv, "noise_csv")


def test_the_draws_are_the_torch_state_s_alone(tmp_path):
    """A step seeds torch (DANNBrain.fit_batch): the same seed draws the same augmentation,
    whatever Python's own random state, so a resumed run augments as an uninterrupted one."""
    augmenter = wav_augment(tmp_path)
    outputs = []
    for python_seed in (1, 2):
        random.seed(python_seed)
        torch.manual_seed(7)
        outputs.append(augmented_pair(augmenter, *crops())[0].sig.data)
    assert torch.equal(*outputs)
    torch.manual_seed(8)
    assert not torch.equal(outputs[0], augmented_pair(augmenter, *crops())[0].sig.data)


def augmented_at_a_step(folder, step=3):
    """The crops augmented at ``step`` of epoch 2 of a run of seed 1986, seeded as
    DANNBrain.fit_batch seeds a step."""
    augmenter = wav_augment(folder)  # before the seed: building the hparams seeds torch
    brain = SimpleNamespace(step=step, hparams=SimpleNamespace(
        seed=1986, epoch_counter=SimpleNamespace(current=2)))
    DANNBrain.seed_step(brain)
    return augmented_pair(augmenter, *crops())[0].sig.data


def test_each_step_of_an_epoch_draws_its_own_augmentation(tmp_path):
    # Steps seeded alike would augment every batch of the epoch with the same speed,
    # bands and chunks dropped.
    assert torch.equal(augmented_at_a_step(tmp_path), augmented_at_a_step(tmp_path))
    assert not torch.equal(augmented_at_a_step(tmp_path), augmented_at_a_step(tmp_path, step=4))

def augment_in_process(rank, folder):
    """One DDP process of two augmenting the same crops at the same step; saved."""
    torch.save(augmented_at_a_step(folder), os.path.join(folder, f"rank{rank}.pt"))


def test_each_ddp_process_draws_its_own_augmentation_and_the_main_one_a_single_process_s(
        tmp_path):
    # Every process seeded its steps alike: with the same speed, bands and chunks dropped,
    # and the same dropout, the processes' crops of a step were augmented all alike.
    in_two_processes(augment_in_process, str(tmp_path))
    main, other = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    assert not torch.equal(main, other)
    # A run of one process augments as before, and as the main process of several.
    assert torch.equal(main, augmented_at_a_step(tmp_path))


def data_csv(folder, name, count, seconds):
    """A CSV of ``count`` 16 kHz recordings of ``seconds`` each, each its own decaying noise."""
    files = []
    for i in range(count):
        path = str(folder / f"{name}{i}.wav")
        decay = np.exp(-np.arange(int(16000 * seconds)) / (800 * (i + 1)))
        soundfile.write(path, 0.1 * decay * np.random.default_rng(i).normal(size=len(decay)),
                        16000)
        files.append(path)
    csv = str(folder / f"{name}.csv")
    write_csv(files, csv)
    return csv


def steps(augmenter, positions, numbers):
    """The augmented source crops of each step of ``numbers``, as DANNBrain.fit_batch makes them:
    the loaders restored, then the step's seed."""
    outputs = []
    for step in numbers:
        positions.restore(*crops())
        torch.manual_seed(step)
        outputs.append(augmented_pair(augmenter, *crops())[0].sig.data)
    return outputs


def test_a_resumed_run_adds_the_noises_and_impulse_responses_of_an_uninterrupted_one(
        tmp_path):
    """The noise and RIR loaders are where the checkpoint left them: the steps after it
    (each seeded as DANNBrain.fit_batch seeds it) add the same files as without a break."""
    # A noise batch of the step's 7 crops from 10 files, one of 3 impulse responses a step:
    # each step leaves the loaders at another position.
    csvs = {"noise_csv": data_csv(tmp_path, "noise", 10, 1.2),
            "rir_csv": data_csv(tmp_path, "rir", 3, 0.1)}

    augmenter = wav_augment(tmp_path, **csvs)
    positions = DataPositions(augmenter)
    steps(augmenter, positions, range(4))
    Checkpointer(tmp_path / "save", {"augmentation_data": positions}).save_checkpoint()
    uninterrupted = steps(augmenter, positions, range(4, 8))
    resumed = wav_augment(tmp_path, **csvs)
    positions = DataPositions(resumed)
    Checkpointer(tmp_path / "save", {"augmentation_data": positions}).recover_if_possible()
    assert all(map(torch.equal, steps(resumed, positions, range(4, 8)), uninterrupted))
    # Loaders started again at their first files add other noises and impulse responses.
    restarted = wav_augment(tmp_path, **csvs)
    assert not all(map(torch.equal, steps(restarted, DataPositions(restarted), range(4, 8)),
                       uninterrupted))


def test_a_checkpoint_saved_before_a_loader_was_built_resumes_as_without_a_break(tmp_path):
    """A loader is built by its augmentation's first call: one saved before it (an Augmenter
    whose max_augmentations draws fewer than it has) has no position yet."""
    csvs = {"noise_csv": data_csv(tmp_path, "noise", 10, 1.2),
            "rir_csv": data_csv(tmp_path, "rir", 3, 0.1)}
    augmenter = wav_augment(tmp_path, **csvs)
    source, target = crops()
    # The impulse responses' loader alone is built, and gives one batch.
    augmenter.augment(torch.cat([source.sig.data, target.sig.data]),
                      torch.cat([source.sig.lengths, target.sig.lengths]), ["AddReverb1"])
    positions = DataPositions(augmenter)
    Checkpointer(tmp_path / "save", {"augmentation_data": positions}).save_checkpoint()
    uninterrupted = steps(augmenter, positions, range(2))
    resumed = wav_augment(tmp_path, **csvs)
    positions = DataPositions(resumed)
    Checkpointer(tmp_path / "save", {"augmentation_data": positions}).recover_if_possible()
    assert positions.pending == {"AddReverb1": 1}
    # The noise loader is built at the first step, as without a break.
    assert all(map(torch.equal, steps(resumed, positions, range(2)), uninterrupted))


def test_positions_of_augmentations_the_run_no_longer_has_are_left_out(tmp_path):
    # Saved with noise and RIRs; resumed with RIRs alone, an accepted change of settings.
    csvs = {"noise_csv": data_csv(tmp_path, "noise", 10, 1.2),
            "rir_csv": data_csv(tmp_path, "rir", 3, 0.1)}
    augmenter = wav_augment(tmp_path, **csvs)
    augmented_pair(augmenter, *crops())
    saved = {"augmentation_data": DataPositions(augmenter)}
    Checkpointer(tmp_path / "save", saved).save_checkpoint()
    reverb = wav_augment(tmp_path, rir_csv=csvs["rir_csv"])
    positions = DataPositions(reverb)
    Checkpointer(tmp_path / "save", {"augmentation_data": positions}).recover_if_possible()
    assert set(positions.pending) == {"AddNoise0", "AddReverb1"}
    positions.restore(*crops())
    assert positions.pending == {} and list(positions.iterators()) == ["AddReverb0"]
    augmented_pair(reverb, *crops())  # the run goes on, its loader at its first file
