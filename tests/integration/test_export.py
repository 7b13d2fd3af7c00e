"""A trained run's model folder loads with SpeechBrain's SpeakerRecognition and
gives the embeddings and scores of the recipe's own evaluation."""

import glob
import os
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from speechbrain.inference.speaker import SpeakerRecognition

from local.errors import ManifestError
from local.export import export_model, main, trained_frontend
from local.model.ssl_frontend import SSLFrontend
from local.run_folder import LOCK_FILE
from tests.integration.test_train_dann import SHORT, TINY, train, train_ge2e, train_ssl
from tests.unit.test_run_folder import holding_process

# Trials of each list checked through the inference class (every 590th of 1,770).
TRIAL_STEP = 590
# The ResNet's channels in a tiny run (tests/recipes/Demo.csv's rows).
RESNET_TINY = [t for t in TINY if not t.startswith("--channels")] + ["--channels=[8, 8, 16, 16]"]
# How far an embedding of one waveform may be from the recipe's, which embeds a
# batch of equal lengths: its sums run in another order, and the short run's
# x-vector batch norms scale the difference up (its scores stay within 1e-5).
EMBEDDING_ATOL = {"wavlm_xvector": 5e-5}


@pytest.fixture(scope="module")
def runs(demo_corpus, tiny_ssl, tmp_path_factory):
    """Short runs of each model file's system, checkpoints kept: filterbanks with ECAPA-TDNN
    and with a ResNet (gan_resnet.yaml's encoder too), a frozen WavLM with ECAPA-TDNN and
    with an x-vector, a fine-tuned wav2vec2, and GE2E."""
    folders = {name: tmp_path_factory.mktemp(name) for name in (
        "fbank", "resnet", "wavlm", "wavlm_xvector", "wav2vec2_tuned", "ge2e")}
    keep = [*SHORT, "--debug_persistently"]
    train(demo_corpus, folders["fbank"], *keep)
    train(demo_corpus, folders["resnet"], *keep, hparams="hparams/dann_resnet.yaml",
          tiny=RESNET_TINY)
    train_ssl(demo_corpus, folders["wavlm"], "dann_wavlm", tiny_ssl["wavlm"], *keep)
    train_ssl(demo_corpus, folders["wavlm_xvector"], "dann_wavlm_xvector", tiny_ssl["wavlm"],
              *keep)
    train_ssl(demo_corpus, folders["wav2vec2_tuned"], "dann_wav2vec2", tiny_ssl["wav2vec2"],
              "--freeze_ssl=False", *keep)
    train_ge2e(demo_corpus, folders["ge2e"], *keep)
    return folders


def recipe_evaluation(folder, trial_list):
    """The run's cached embeddings and a sample of its scored trials of ``trial_list``."""
    cache, = glob.glob(os.path.join(folder, f"embeddings_{trial_list}_CKPT*.pt"))
    scores = pd.read_csv(os.path.join(folder, "verification", trial_list, "scores.txt"),
                         sep=" ", names=["enrol", "test", "score", "label"])
    return torch.load(cache), scores.iloc[::TRIAL_STEP]


@pytest.mark.parametrize("system", ["fbank", "resnet", "wavlm", "wavlm_xvector",
                                    "wav2vec2_tuned", "ge2e"])
def test_speechbrain_inference_reproduces_the_recipe_evaluation(runs, demo_corpus, system,
                                                                tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # another working directory than the run's
    model = SpeakerRecognition.from_hparams(source=str(runs[system] / "model"),
                                            savedir=str(tmp_path / "loaded"))
    for trial_list in ("source", "target"):  # 16 kHz and 8 kHz audio
        wavs = pd.read_csv(demo_corpus[f"{trial_list}_eval"]).set_index("ID")["wav"]
        embeddings, trials = recipe_evaluation(runs[system], trial_list)
        for enrol, test, score in trials[["enrol", "test", "score"]].itertuples(index=False):
            for utterance in (enrol, test):
                vector = model.encode_batch(model.load_audio(wavs[utterance]))
                torch.testing.assert_close(vector.flatten(), embeddings[utterance],
                                           atol=EMBEDDING_ATOL.get(system, 1e-5), rtol=1e-4)
            similarity, decision = model.verify_files(wavs[enrol], wavs[test])
            assert float(similarity) == pytest.approx(score, abs=1e-5)
            assert bool(decision) == (float(similarity) > 0.25)  # SpeechBrain's threshold
        # verify_batch: the same scores and decisions at any threshold, batched.
        first = trials.iloc[0]
        batch = [model.load_audio(wavs[first[side]]).unsqueeze(0) for side in ("enrol", "test")]
        similarity, decision = model.verify_batch(*batch, threshold=first["score"] - 1e-3)
        assert float(similarity) == pytest.approx(first["score"], abs=1e-5) and bool(decision)


def test_model_folder_holds_what_the_inference_class_loads(runs, tiny_ssl, tmp_path):
    fbank = sorted(os.listdir(runs["fbank"] / "model"))
    assert fbank == ["classifier.ckpt", "embedding_model.ckpt", "frontend.ckpt",
                     "hyperparams.yaml", "label_encoder.ckpt", "thresholds.csv"]
    # Without a classifier (GE2E), no classifier and no label encoder: the encoder verifies.
    ge2e = sorted(os.listdir(runs["ge2e"] / "model"))
    assert ge2e == ["embedding_model.ckpt", "frontend.ckpt", "hyperparams.yaml",
                    "thresholds.csv"]
    model = SpeakerRecognition.from_hparams(source=str(runs["ge2e"] / "model"),
                                            savedir=str(tmp_path / "ge2e"))
    assert "classifier" not in model.mods and not hasattr(model.hparams, "label_encoder")
    # A frozen SSL model is referred to by its source, not saved again: only the
    # learned layer weights are, and they are those of the run's checkpoint.
    wavlm = runs["wavlm"] / "model"
    assert "frontend.ckpt" not in os.listdir(wavlm)
    # A long value goes on the line after its key.
    assert re.search(r"\n +source:\s+(\S+)\n", (wavlm / "hyperparams.yaml").read_text())[1] \
        == str(tiny_ssl["wavlm"])
    trained = pd.read_csv(runs["wavlm"] / "layer_weights.csv")["weight"]
    saved = torch.softmax(torch.load(wavlm / "layer_sum.ckpt")["weights"], dim=0)
    assert saved.tolist() == pytest.approx(trained.tolist(), abs=1e-6)
    model = SpeakerRecognition.from_hparams(source=str(wavlm), savedir=str(tmp_path))
    assert len(model.hparams.label_encoder) == 24  # the demo's source speakers
    # A fine-tuned one is saved whole, its layer weights with it.
    tuned = runs["wav2vec2_tuned"] / "model"
    assert "layer_sum.ckpt" not in os.listdir(tuned)
    checkpoint, = glob.glob(str(runs["wav2vec2_tuned"] / "save" / "CKPT*" / "frontend.ckpt"))
    saved, exported = torch.load(checkpoint), torch.load(tuned / "frontend.ckpt")
    assert saved.keys() == exported.keys() and any(key.startswith("ssl.") for key in saved)
    assert all(torch.equal(value, exported[key]) for key, value in saved.items())


def test_the_classifier_is_exported_with_the_source_speakers_rows_alone(demo_corpus, tmp_path):
    # Pseudo-labels from epoch 1 grow the run's classifier by a row per target pseudo-speaker.
    train(demo_corpus, tmp_path / "run", "--pseudo_label_epochs=[1]", "--pseudo_whiten=False",
          "--pseudo_min_silhouette=0.0", *SHORT, "--debug_persistently")
    checkpoint, = glob.glob(str(tmp_path / "run" / "save" / "CKPT*" / "classifier.ckpt"))
    grown = torch.load(checkpoint)["weight"]
    assert len(grown) > 24
    model = SpeakerRecognition.from_hparams(source=str(tmp_path / "run" / "model"),
                                            savedir=str(tmp_path / "loaded"))
    assert torch.equal(model.mods.classifier.weight.detach(), grown[:24])
    # The file holds those rows alone, not the grown weight's storage they are a view of.
    exported = torch.load(tmp_path / "run" / "model" / "classifier.ckpt")["weight"]
    assert exported.untyped_storage().nbytes() == 24 * grown.shape[1] * grown.element_size()
    # An embedding in the direction of a pseudo-speaker's row is classified as a
    # source speaker, the label encoder's, as any other.
    scores = model.mods.classifier(grown[30].reshape(1, 1, -1)).squeeze(1)
    assert scores.shape == (1, 24)
    assert model.hparams.label_encoder.decode_torch(scores.argmax(dim=-1))[0].startswith("sout")


def test_fine_tuned_ssl_front_end_is_saved_whole(tiny_ssl, tmp_path):
    frozen = SSLFrontend(tiny_ssl["wavlm"], str(tmp_path))
    tuned = SSLFrontend(tiny_ssl["wavlm"], str(tmp_path), freeze=False)
    assert trained_frontend(frozen) == ("layer_sum", frozen.layer_sum)
    assert trained_frontend(tuned) == ("frontend", tuned)


def test_export_command_writes_where_asked(runs, tmp_path, capsys):
    main([str(runs["fbank"]), "--model_folder", str(tmp_path / "exported")])
    assert capsys.readouterr().out.strip() == str(tmp_path / "exported")
    for name in ("embedding_model.ckpt", "classifier.ckpt"):
        exported = torch.load(tmp_path / "exported" / name)
        assert all(torch.equal(v, torch.load(runs["fbank"] / "model" / name)[k])
                   for k, v in exported.items())


def test_export_command_refuses_a_run_folder_another_process_writes_into(runs, tmp_path):
    holder = holding_process(runs["fbank"])
    try:
        with pytest.raises(ManifestError, match=rf"{runs['fbank']}: another run writes into this "
                                                rf"folder: the run of PID {holder.pid} on "):
            main([str(runs["fbank"]), "--model_folder", str(tmp_path / "exported")])
    finally:
        holder.stdin.close()
        holder.wait()
    assert not (tmp_path / "exported").exists()
    main([str(runs["fbank"]), "--model_folder", str(tmp_path / "exported")])  # once it has ended
    assert not (runs["fbank"] / LOCK_FILE).exists()


def test_export_under_torchrun_is_refused_in_every_process(tmp_path):
    # Each process exported the run: the first took the run folder's lock, and the other
    # was refused as another run writing into it, the PID it named that of its sibling.
    command = [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node=2",
               "--standalone", "-m", "local.export", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                              os.path.abspath(__file__)))))
    assert done.returncode != 0
    assert done.stderr.count(f"{tmp_path}: exported by 2 processes at once (torchrun "
                             "--nproc_per_node)") == 2, done.stderr[-3000:]
    assert os.listdir(tmp_path) == []


def test_export_of_a_folder_that_is_not_a_run_says_what_to_pass(tmp_path):
    with pytest.raises(ManifestError, match="hyperparams.yaml: missing.*\nFix: pass the output_folder"):
        export_model(str(tmp_path))


def test_export_of_a_run_trained_with_another_save_folder_names_it(tmp_path):
    saved = tmp_path / "elsewhere"
    (tmp_path / "hyperparams.yaml").write_text(f"save_folder: {saved}\n")
    (tmp_path / "condition.yaml").write_text("condition: demo\n")
    with pytest.raises(ManifestError, match=rf"label_encoder.txt: missing.*\nFix: pass the run's "
                                            rf"--save_folder {re.escape(str(saved))}, as"):
        export_model(str(tmp_path))


def test_export_without_a_checkpoint_says_to_train(runs, tmp_path):
    with pytest.raises(ManifestError, match="no checkpoint to export\nFix: train the system first"):
        export_model(str(runs["fbank"]), str(tmp_path / "model"), checkpoints_dir=str(tmp_path))


def test_export_refuses_thresholds_of_another_checkpoint(runs, tmp_path, caplog):
    """A resume that saved a newer checkpoint and stopped before its report."""
    run = tmp_path / "run"
    shutil.copytree(runs["fbank"], run)
    scored = run / "verification" / "checkpoint.txt"
    latest = scored.read_text().strip()
    name, saved = latest.split("@")
    assert name.startswith("CKPT+") and (run / "save" / name).is_dir() and float(saved) > 0
    scored.write_text("CKPT+2000-01-01+00-00-00+00\n")
    with pytest.raises(ManifestError, match=r"checkpoint.txt: the report scored checkpoint "
                       rf"CKPT\+2000-01-01\+00-00-00\+00, but the latest is {re.escape(latest)}"
                       r": .*\nFix: evaluate the run again"):
        export_model(str(run), str(tmp_path / "model"))
    scored.write_text(f"{name}\n")  # a report from before the save time: with a warning
    with caplog.at_level("WARNING"):
        export_model(str(run), str(tmp_path / "model"))
    assert "names the checkpoint it scored without its save time" in caplog.text
    scored.unlink()  # a report from before the file: exported, with a warning
    with caplog.at_level("WARNING"):
        export_model(str(run), str(tmp_path / "model"))
    assert "does not name the checkpoint it scored" in caplog.text


def test_a_failed_export_leaves_the_export_before_it_whole(runs, tmp_path, monkeypatch):
    """A kill or a full disk in the middle of an export that replaces an earlier one."""
    run = tmp_path / "run"
    shutil.copytree(runs["fbank"], run)
    model = run / "model"
    export_model(str(run), trial_lists=["target"])
    # The earlier export is of an earlier checkpoint: other encoder weights.
    weights = torch.load(model / "embedding_model.ckpt")
    torch.save({name: value + 1 if value.is_floating_point() else value
                for name, value in weights.items()}, model / "embedding_model.ckpt")
    before = {name: (model / name).read_bytes() for name in os.listdir(model)}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:  # every module file written, the thresholds not
        patch.setattr(pd.DataFrame, "to_csv", full_disk)
        with pytest.raises(ManifestError, match=rf"{model}: the disk is full: the exported model "
                                                r"could not be written \(\[Errno 28\] No space "
                                                rf"left on device\)\nFix: free space on the disk "
                                                rf"of {model}, and export the run again"):
            export_model(str(run))
    assert {name: (model / name).read_bytes() for name in os.listdir(model)} == before
    # Its staged files are removed, rather than holding the disk until the next export.
    assert sorted(name for name in os.listdir(run) if name.startswith("model")) == ["model"]
    export_model(str(run))
    assert sorted(name for name in os.listdir(run) if name.startswith("model")) == ["model"]
    assert list(pd.read_csv(model / "thresholds.csv")["trial_list"]) == ["source", "target"]
    exported = torch.load(runs["fbank"] / "model" / "embedding_model.ckpt")
    assert all(torch.equal(value, exported[name])
               for name, value in torch.load(model / "embedding_model.ckpt").items())
    # A folder that holds more than an export is not replaced.
    with pytest.raises(ManifestError, match=r"holds \['condition.yaml', .*which no export writes"):
        export_model(str(run), str(run))
    assert (run / "save").is_dir()


def test_a_second_export_into_a_model_folder_being_written_is_refused(runs, tmp_path,
                                                                      monkeypatch):
    """Two runs exported into one --model_folder at once: the folder holds one run's files."""
    model = tmp_path / "model"
    refusals, to_csv = [], pd.DataFrame.to_csv

    def second_export(table, *args, **kwargs):  # while the first's files are staged
        monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
        try:
            main([str(runs["ge2e"]), "--model_folder", str(model)])
        except ManifestError as error:
            refusals.append(str(error))
        return to_csv(table, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", second_export)
    main([str(runs["fbank"]), "--model_folder", str(model)])
    assert refusals == [f"{model}: another process writes this folder: PID {os.getpid()} on "
                        f"{socket.gethostname()} holds {model}.lock\n"
                        "Fix: wait until it ends, or write into another folder"]
    assert sorted(os.listdir(tmp_path)) == ["model"]
    assert sorted(os.listdir(model)) == sorted(os.listdir(runs["fbank"] / "model"))
    for name in os.listdir(model):
        assert (model / name).read_bytes() == (runs["fbank"] / "model" / name).read_bytes()


def brute_force_eer_threshold(scores, labels):
    """Try every cut between two distinct scores: the closest miss and false-alarm rates win.

    Ties go to the lowest cut, the cut is the midpoint of the scores either side.
    """
    scores, labels = np.asarray(scores), np.asarray(labels, dtype=bool)
    distinct = np.unique(scores)
    cuts = (distinct[:-1] + distinct[1:]) / 2
    gaps = [abs(np.mean(scores[labels] <= cut) - np.mean(scores[~labels] > cut)) for cut in cuts]
    return cuts[int(np.argmin(gaps))]


@pytest.mark.parametrize("system", ["fbank", "ge2e"])
def test_model_records_and_applies_the_eer_threshold_of_each_trial_list(runs, system, tmp_path,
                                                                        demo_corpus):
    points = pd.read_csv(runs[system] / "model" / "thresholds.csv")
    assert list(points["trial_list"]) == ["source", "target"]
    summary = pd.read_csv(runs[system] / "verification" / "summary.csv").set_index("system")
    for point in points.itertuples():
        scores = pd.read_csv(runs[system] / "verification" / point.trial_list / "scores.txt",
                             sep=" ", names=["enrol", "test", "score", "label"])
        assert point.threshold == pytest.approx(
            brute_force_eer_threshold(scores["score"], scores["label"]), abs=1e-12)
        # Deciding at it gives the list's reported EER.
        accepted = scores["score"] > point.threshold
        p_miss = (~accepted[scores["label"] == 1]).mean()
        p_fa = accepted[scores["label"] == 0].mean()
        assert 100 * (p_miss + p_fa) / 2 == pytest.approx(
            summary.loc[point.trial_list, "eer_percent"], abs=0.005)
        assert point.eer_percent == pytest.approx(
            summary.loc[point.trial_list, "eer_percent"], abs=0.005)
    model = SpeakerRecognition.from_hparams(source=str(runs[system] / "model"),
                                            savedir=str(tmp_path))
    assert model.hparams.threshold == points["threshold"][0]  # the source list's
    # Applied by verify_batch: a source-list trial on each side of it.
    wavs = pd.read_csv(demo_corpus["source_eval"]).set_index("ID")["wav"]
    scores = pd.read_csv(runs[system] / "verification" / "source" / "scores.txt", sep=" ",
                         names=["enrol", "test", "score", "label"])
    margin = (scores["score"] - model.hparams.threshold).abs() > 1e-3
    above = scores[margin & (scores["score"] > model.hparams.threshold)].iloc[0]
    below = scores[margin & (scores["score"] < model.hparams.threshold)].iloc[0]
    for trial, expected in ((above, True), (below, False)):
        batch = [model.load_audio(wavs[trial[side]]).unsqueeze(0) for side in ("enrol", "test")]
        _, decision = model.verify_batch(*batch, threshold=model.hparams.threshold)
        assert bool(decision) is expected


def test_export_names_a_trial_list_that_was_not_scored(runs, tmp_path):
    with pytest.raises(ManifestError, match=r"verification/dev/scores.txt: missing: the "
                                            r"operating point of trial list 'dev'"):
        export_model(str(runs["fbank"]), str(tmp_path / "model"), trial_lists=["dev"])


def test_inference_refuses_audio_too_short_or_too_long_to_embed(runs, tmp_path):
    model = SpeakerRecognition.from_hparams(source=str(runs["fbank"] / "model"),
                                            savedir=str(tmp_path / "model"))
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0), 16000)
    with pytest.raises(ValueError, match=r"the waveform to embed: 1 inputs are shorter than "
                                         r"min_embed_seconds \(0.25 s\)"):
        model.verify_files(str(empty), str(empty))
    # Each waveform of a padded batch by its own length.
    with pytest.raises(ValueError, match=r"1 inputs are shorter than min_embed_seconds "
                                         r"\(0.25 s\), .*\n  waveform 1 of the batch: 0.10 s"):
        model.encode_batch(0.1 * torch.randn(2, 32000), torch.tensor([1.0, 0.05]))
    # Refused before the model runs: an hour would take gigabytes.
    with pytest.raises(ValueError, match=r"1 inputs are longer than max_embed_seconds "
                                         r"\(600 s\), .*\n  the waveform: 3600.00 s"):
        model.encode_batch(torch.zeros(1, 16000 * 3600))
    # A device that holds less: the limit lowered on loading, as docs/evaluation.md says.
    lowered = SpeakerRecognition.from_hparams(source=str(runs["fbank"] / "model"),
                                              savedir=str(tmp_path / "lowered"),
                                              overrides={"mean_var_norm": {"longest": 2}})
    with pytest.raises(ValueError, match=r"1 inputs are longer than max_embed_seconds \(2 s\)"):
        lowered.encode_batch(torch.zeros(1, 16000 * 3))


def evaluated_run(run, ssl, cache):
    """A run folder of a frozen SSL front end and an x-vector, evaluated, as train_dann.py
    leaves it: its modules on the SSL model in folder ``ssl`` (hub cache ``cache``)."""
    from hyperpyyaml import load_hyperpyyaml

    from local.model.checkpoints import CompleteCheckpointer, checkpoint_identity

    (run / "save").mkdir(parents=True)
    (run / "hyperparams.yaml").write_text(f"""\
model_name: pooling
condition: demo
min_embed_seconds: 0.25
max_embed_seconds: 600
frontend: !new:local.model.ssl_frontend.SSLFrontend
    source: {ssl}
    save_path: {cache}
embedding_model: !new:speechbrain.lobes.models.Xvector.Xvector
    in_channels: 32
    tdnn_channels: [16, 16, 16, 16, 48]
    tdnn_kernel_sizes: [1, 1, 1, 1, 1]
    tdnn_dilations: [1, 1, 1, 1, 1]
    lin_neurons: 8
""")
    modules = load_hyperpyyaml((run / "hyperparams.yaml").read_text())
    with torch.no_grad():  # batch norms that scale the pooled statistics up, not down
        for norm in modules["embedding_model"].modules():
            if isinstance(norm, torch.nn.BatchNorm1d):
                norm.running_var.fill_(0.01)
    checkpoint = CompleteCheckpointer(run / "save", {name: modules[name] for name in (
        "frontend", "embedding_model")}).save_checkpoint()
    (run / "save" / "label_encoder.txt").write_text("")
    (run / "condition.yaml").write_text("evaluation:\n    target: trials.txt\n")
    (run / "verification" / "target").mkdir(parents=True)
    (run / "verification" / "target" / "scores.txt").write_text("a b 0.6 1\na c 0.2 0\n")
    (run / "verification" / "checkpoint.txt").write_text(checkpoint_identity(checkpoint))
    return modules


def test_exported_model_embeds_a_short_waveform_of_a_padded_batch_as_alone(tmp_path):
    """The model folder keeps its files and their keys, and embeds a short waveform of a
    padded batch as alone (each encoder and front end: tests/unit/test_embed.py)."""
    from tests.unit.test_ssl_frontend import save_ssl

    ssl = save_ssl(tmp_path / "ssl", "wavlm", "layer", False, True)
    run = tmp_path / "run"
    modules = evaluated_run(run, ssl, tmp_path / "cache")
    model = SpeakerRecognition.from_hparams(source=export_model(str(run)),
                                            savedir=str(tmp_path / "loaded"))
    assert sorted(os.listdir(run / "model")) == ["embedding_model.ckpt", "hyperparams.yaml",
                                                 "layer_sum.ckpt", "thresholds.csv"]
    assert (torch.load(run / "model" / "embedding_model.ckpt").keys()
            == modules["embedding_model"].state_dict().keys())
    generator = torch.Generator().manual_seed(1)
    long, short = torch.randn(48000, generator=generator), torch.randn(16000, generator=generator)
    batch = torch.zeros(2, 48000)
    batch[0], batch[1, :16000] = long, short
    padded = model.encode_batch(batch, torch.tensor([1.0, 1 / 3]))[1]
    alone = model.encode_batch(short.unsqueeze(0))[0]
    torch.testing.assert_close(padded, alone, atol=1e-4, rtol=1e-4)


def test_an_exported_frozen_ssl_front_end_refuses_other_ssl_model_files(tmp_path):
    """Its layer weights and encoder were trained on the hidden states of the run's SSL
    model files (their fingerprint, in the run's settings record): another model of the
    same size would load and embed, wrongly."""
    from local.run_folder import SSL_MODEL_KEY, record_settings
    from tests.conftest import save_tiny_ssl
    from tests.unit.test_ssl_frontend import save_ssl

    ssl = save_ssl(tmp_path / "ssl", "wavlm", "layer", False, True)
    run = tmp_path / "run"
    modules = evaluated_run(run, ssl, tmp_path / "cache")
    record_settings(run / "save", {SSL_MODEL_KEY: modules["frontend"].fingerprint})
    model_folder = export_model(str(run))
    shutil.copytree(ssl, tmp_path / "copy")  # the same files elsewhere load
    copy = SpeakerRecognition.from_hparams(source=model_folder, savedir=str(tmp_path / "copy_l"),
                                           overrides={"frontend": {"source": str(tmp_path / "copy")}})
    assert copy.encode_batch(torch.randn(1, 16000)).shape == (1, 1, 8)
    other = save_tiny_ssl(tmp_path / "other", "wavlm")
    refusal = (rf"^{re.escape(other)}: holds other SSL model files than those the model was "
               rf"trained with \(fingerprint \w+, not {modules['frontend'].fingerprint}\)\n"
               r"Fix: (.|\n)*overrides=\{'frontend': \{'source': DIR\}\}")
    with pytest.raises(ManifestError, match=refusal):
        SpeakerRecognition.from_hparams(source=model_folder, savedir=str(tmp_path / "other_l"),
                                        overrides={"frontend": {"source": other}})
    # Nor does a run whose SSL model was replaced in its folder export.
    save_tiny_ssl(ssl, "wavlm")
    with pytest.raises(ManifestError, match=rf"^{re.escape(ssl)}: holds other SSL model files"):
        export_model(str(run))


def test_a_model_trained_on_a_relative_ssl_folder_loads_from_any_directory(tmp_path,
                                                                           monkeypatch):
    """--ssl_source=DIR relative to the run's working directory: the model folder names the
    SSL model (and the hub cache) by absolute paths."""
    from tests.unit.test_ssl_frontend import save_ssl

    monkeypatch.chdir(tmp_path)
    save_ssl(tmp_path / "wavlm-base-plus", "wavlm", "layer", False, True)
    evaluated_run(tmp_path / "run", "wavlm-base-plus", "pretrained_models")
    model_folder = export_model("run")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    model = SpeakerRecognition.from_hparams(source=str(tmp_path / model_folder),
                                            savedir=str(tmp_path / "loaded"))
    assert model.encode_batch(torch.randn(1, 16000)).shape == (1, 1, 8)
    text = (tmp_path / model_folder / "hyperparams.yaml").read_text()
    # A long value goes on the line after its key.
    assert re.search(r"\n +save_path:\s+(\S+)\n", text)[1] == str(tmp_path / "pretrained_models")


def test_an_ssl_model_folder_loads_on_another_machine_with_its_ssl_model_named(runs, tiny_ssl,
                                                                             tmp_path):
    """The model folder names the SSL model and hub cache by the training machine's paths;
    elsewhere they are passed as overrides, as docs/evaluation.md says."""
    shutil.copytree(runs["wav2vec2_tuned"] / "model", tmp_path / "model")
    shutil.copytree(tiny_ssl["wav2vec2"], tmp_path / "wav2vec2")
    here = SpeakerRecognition.from_hparams(source=str(runs["wav2vec2_tuned"] / "model"),
                                           savedir=str(tmp_path / "here"))
    there = SpeakerRecognition.from_hparams(
        source=str(tmp_path / "model"), savedir=str(tmp_path / "there"),
        overrides={"frontend": {"source": str(tmp_path / "wav2vec2"),
                                "save_path": str(tmp_path / "cache")}})
    assert there.mods.embedding_model.frontend.source == str(tmp_path / "wav2vec2")
    wav = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(there.encode_batch(wav), here.encode_batch(wav))
    # Without it, the refusal names the override.
    with pytest.raises(ManifestError, match=r"overrides=\{'frontend': \{'source': DIR\}\}"):
        SpeakerRecognition.from_hparams(
            source=str(tmp_path / "model"), savedir=str(tmp_path / "missing"),
            overrides={"frontend": {"source": str(tmp_path / "moved"),
                                    "save_path": str(tmp_path / "cache")}})


def test_a_run_scored_in_bf16_is_exported_to_embed_in_bf16(demo_corpus, tmp_path):
    """Its thresholds were set on bf16 embeddings' scores (--eval_precision=bf16): the
    exported model gives those embeddings, not float32 ones a rounding step away."""
    train(demo_corpus, tmp_path / "run", "--eval_precision=bf16", *SHORT, "--debug_persistently")
    model = SpeakerRecognition.from_hparams(source=str(tmp_path / "run" / "model"),
                                            savedir=str(tmp_path / "loaded"))
    wavs = pd.read_csv(demo_corpus["source_eval"]).set_index("ID")["wav"]
    embeddings, trials = recipe_evaluation(tmp_path / "run", "source")  # 16 kHz: no resampling
    for enrol, test, score in trials[["enrol", "test", "score"]].itertuples(index=False):
        for utterance in (enrol, test):
            vector = model.encode_batch(model.load_audio(wavs[utterance]))
            assert vector.dtype == torch.float32
            torch.testing.assert_close(vector.flatten(), embeddings[utterance], atol=1e-5,
                                       rtol=1e-4)
        assert float(model.verify_files(wavs[enrol], wavs[test])[0]) == pytest.approx(score,
                                                                                     abs=1e-5)
