"""The recorded-voice condition: donors, telephone channel, manifests and trials.

The TTS engines are not installed in CI, so the generator runs here with a
fake synthesiser that writes a tone per request at a voice-like rate.
"""

import os
import re
import subprocess
import warnings

import numpy as np
import pytest
import soundfile
import yaml

from local import settings
from data_prep import recorded_voices
from data_prep.preparation import OptionError
from data_prep.recorded_voices import (
    DONORS,
    SPEEDS,
    SynthesisError,
    main,
    prepare_recorded_voices,
)
from data_prep.telephone import G711_LINE, g711, telephone_channel
from local.data.manifest_io import read_manifest, read_trials
from local.data.validation import validate


def fake_synthesiser(calls):
    """A synthesiser that writes a 0.5 s tone at 22.05 kHz, pitched by ``f0_scale``."""

    def synthesise(donor, requests):
        calls.append((donor, requests))
        rate = 22050
        time = np.arange(rate // 2) / rate
        for request in requests:
            soundfile.write(request["path"],
                            0.3 * np.sin(2 * np.pi * 150 * request["f0_scale"] * time), rate)

    return synthesise


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    calls = []
    folder = tmp_path_factory.mktemp("recorded_voices")
    paths = prepare_recorded_voices(str(folder), seed=3, utts_per_speaker=4,
                                    trials_per_label=20, synthesiser=fake_synthesiser(calls))
    return paths, calls


def test_every_donor_is_in_exactly_one_split_and_domain():
    assert len(DONORS) == len({spec["voice"] for spec in DONORS.values()})
    for domain in ("source", "target"):
        for split in ("train", "eval"):
            donors = {d for d, s in DONORS.items() if (s["domain"], s["split"]) == (domain, split)}
            assert len(donors) >= 3, (domain, split)
    languages = {d: {s["lang"] for s in DONORS.values() if s["domain"] == d}
                 for d in ("source", "target")}
    assert not languages["source"] & languages["target"]


def test_manifests_keep_each_donor_in_one_split(corpus):
    paths, _ = corpus
    donors_of = {}
    for name in ("source_train", "target_train", "source_eval", "target_eval"):
        table = validate(paths[name])
        donors_of[name] = {spk.rsplit("_sp", 1)[0] for spk in table["spk_id"]}
        domain, split = name.split("_")
        assert donors_of[name] == {d for d, s in DONORS.items()
                                   if (s["domain"], s["split"]) == (domain, split)}
        assert len(table) == 4 * len(SPEEDS) * len(donors_of[name])
        assert set(table["lang"]) == {DONORS[d]["lang"] for d in donors_of[name]}
        for row in table.itertuples():
            info = soundfile.info(row.wav)
            assert os.path.isabs(row.wav) and row.stop == info.frames
            assert row.sample_rate == info.samplerate == (16000 if domain == "source" else 8000)
            assert row.gender == DONORS[row.spk_id.rsplit("_sp", 1)[0]]["sex"]
        channels = set(table["channel"])
        assert channels == {"wideband"} if domain == "source" else channels <= {
            "telephone_mulaw", "telephone_alaw"}
    names = list(donors_of)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not donors_of[a] & donors_of[b], (a, b)


def test_speed_perturbation_gives_three_speakers_per_donor(corpus):
    """A 0.5 s engine output lasts 0.5 / speed seconds after perturbation."""
    paths, _ = corpus
    table = read_manifest(paths["source_train"])
    for speed in SPEEDS:
        rows = table[table["spk_id"].str.endswith(f"_sp{int(speed * 100):03d}")]
        assert len(rows) == 4 * 5
        assert np.allclose(rows["duration"], 0.5 / float(speed), atol=1e-3)


def test_trials_are_balanced_labelled_pairs_of_one_list(corpus):
    paths, _ = corpus
    for domain in ("source", "target"):
        validate(paths["eval"], paths[f"trials_{domain}"])
        manifest = read_manifest(paths[f"{domain}_eval"])
        speaker = dict(zip(manifest["ID"], manifest["spk_id"]))
        trials = read_trials(paths[f"trials_{domain}"])
        assert set(trials["enrol"]) | set(trials["test"]) <= set(speaker)
        same = [int(speaker[e] == speaker[t]) for e, t in zip(trials["enrol"], trials["test"])]
        assert trials["label"].tolist() == same
        assert trials["label"].sum() == 20 and len(trials) == 40
        pairs = {frozenset(pair) for pair in zip(trials["enrol"], trials["test"])}
        assert len(pairs) == 40 and all(len(pair) == 2 for pair in pairs)


def test_one_engine_call_per_donor_with_varied_text_and_prosody(corpus):
    _, calls = corpus
    assert sorted(donor for donor, _ in calls) == sorted(DONORS)
    for donor, requests in calls:
        texts = [r["text"] for r in requests]
        assert len(set(texts)) == len(texts)
        assert all(word in recorded_voices.WORDS[DONORS[donor]["lang"]]
                   for text in texts for word in text.split())
        for key, (low, high) in (("stretch", recorded_voices.STRETCH_RANGE),
                                 ("f0_scale", recorded_voices.F0_SCALE_RANGE)):
            values = np.array([r[key] for r in requests])
            assert values.min() >= low and values.max() <= high and values.std() > 0


def test_same_seed_same_corpus(tmp_path):
    def audio(seed, name):
        paths = prepare_recorded_voices(str(tmp_path / name), seed=seed, utts_per_speaker=2,
                                        trials_per_label=5, synthesiser=fake_synthesiser([]))
        table = read_manifest(paths["eval"])
        return [soundfile.read(w)[0] for w in table["wav"]], open(paths["trials_target"]).read()

    first, second, other = audio(1, "a"), audio(1, "b"), audio(2, "c")
    assert first[1] == second[1]
    assert all(np.array_equal(x, y) for x, y in zip(first[0], second[0]))
    assert not all(x.shape == y.shape and np.array_equal(x, y)
                   for x, y in zip(first[0], other[0]))


def test_missing_engine_fails_early_with_the_apt_line(tmp_path, monkeypatch):
    monkeypatch.setattr(recorded_voices.shutil, "which", lambda name: None)
    with pytest.raises(SynthesisError, match=r"flite program is not installed[\s\S]*"
                                             r"Fix: apt-get install flite festival festvox-"):
        prepare_recorded_voices(str(tmp_path / "corpus"))
    assert os.listdir(tmp_path) == []  # not even the save folder, made for the lock


def test_command_line_reports_a_missing_engine(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(recorded_voices.shutil, "which", lambda name: None)
    assert main(["--save_folder", str(tmp_path)]) == 1
    assert "Fix: apt-get install flite festival" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, message", [
    ("utts_per_speaker", 1, r"utts_per_speaker is 1: not an integer in \[2, inf\), the utt"),
    ("trials_per_label", 0, r"trials_per_label is 0: not an integer in \[1, inf\)"),
    ("workers", 0, r"workers is 0: not an integer in \[1, inf\)"),
])
def test_out_of_range_options(tmp_path, option, value, message):
    with pytest.raises(OptionError, match=message):
        prepare_recorded_voices(str(tmp_path / "corpus"), synthesiser=fake_synthesiser([]),
                                **{option: value})
    assert not os.path.exists(tmp_path / "corpus")


@pytest.mark.parametrize("law", ["mu", "a"])
def test_g711_matches_the_reference_coder(law):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop", reason="audioop left Python in 3.13")
    pcm = np.arange(-32768, 32768, dtype=np.int64)
    raw = pcm.astype("<i2").tobytes()
    encode, decode = {"mu": (audioop.lin2ulaw, audioop.ulaw2lin),
                      "a": (audioop.lin2alaw, audioop.alaw2lin)}[law]
    reference = np.frombuffer(decode(encode(raw, 2), 2), dtype="<i2")
    assert np.array_equal(np.round(g711(pcm / 32768.0, law) * 32768), reference)


def test_g711_has_256_code_words_and_bounded_relative_error():
    wave = np.linspace(-1, 1, 100001)
    # mu-law's two zero code words (+0, -0) decode to the same value.
    for law, levels in (("mu", 255), ("a", 256)):
        decoded = g711(wave, law)
        assert len(np.unique(decoded)) == levels
        loud = np.abs(wave) > 0.01
        assert np.max(np.abs(decoded[loud] - wave[loud]) / np.abs(wave[loud])) < 0.07
    with pytest.raises(ValueError, match="'mu' or 'a'"):
        g711(wave, "linear")


def test_telephone_channel_band_rate_and_codec():
    rng = np.random.default_rng(0)
    laws = set()
    for _ in range(6):
        narrow, law = telephone_channel(rng, rng.standard_normal(32000), G711_LINE)
        laws.add(law)
        assert narrow.shape == (16000,)  # 2 s at 8 kHz
        assert len(np.unique(narrow)) <= 256  # one of G.711's 256 code words per sample
        spectrum = np.abs(np.fft.rfft(narrow)) ** 2
        freqs = np.fft.rfftfreq(narrow.size, 1 / 8000)
        in_band = spectrum[(freqs > 500) & (freqs < 3000)].mean()
        assert spectrum[freqs < 150].mean() < 0.05 * in_band
        assert spectrum[freqs > 3800].mean() < 0.05 * in_band
    assert laws == {"mu", "a"}


def test_condition_file_runs_this_generator(tmp_path):
    overrides = yaml.safe_dump({"condition": "recipes/recorded_voices/condition.yaml",
                                "data_folder": str(tmp_path)})
    _, condition, model_overrides, _ = settings.load_condition(overrides, "hparams/dann_fbank.yaml")
    assert model_overrides == {} and condition["condition"] == "recorded_voices"
    assert condition["prepare"][0].func is prepare_recorded_voices
    assert condition["source_train"] == f"{tmp_path}/source_train.csv"
    assert os.path.isfile("recipes/recorded_voices/README.md")


class FakeEngines:
    """``shutil.which`` and ``subprocess.run`` of installed engines, each listing its ``voices``.

    Each engine run is recorded (with the Festival script's text, read while it exists);
    it writes a tone to each requested path unless ``fails``.
    """

    def __init__(self, voices, fails=False, writes=True):
        self.voices, self.fails, self.writes, self.runs = voices, fails, writes, []

    def which(self, name):
        return f"/usr/bin/{name}"

    def run(self, command, input=None, capture_output=True, text=True):
        script = open(command[2], encoding="utf-8").read() if command[:2] == [
            "festival", "-b"] else None
        self.runs.append((command, input, script))
        stdout = ""
        if command == ["flite", "-lv"]:
            stdout = "Voices available: " + " ".join(self._of("flite")) + " \n"
        elif command == ["festival", "--pipe"]:
            stdout = "(" + " ".join(self._of("festival")) + ")\n"
        elif self.writes and not self.fails:
            paths = ([command[command.index("-o") + 1]] if command[0] == "flite"
                     else re.findall(r'"(/[^"]+\.wav)"\)', script))
            for path in paths:
                soundfile.write(path, np.zeros(100), 16000)
        return subprocess.CompletedProcess(command, 1 if self.fails else 0, stdout,
                                           "engine broke" if self.fails else "")

    def _of(self, engine):
        """The listed voices of ``engine``: each engine lists only its own."""
        return [voice for voice in self.voices
                if any(spec["voice"] == voice and spec["engine"] == engine
                       for spec in DONORS.values())]

    def install(self, monkeypatch):
        monkeypatch.setattr(recorded_voices.shutil, "which", self.which)
        monkeypatch.setattr(recorded_voices.subprocess, "run", self.run)
        return self


ALL_VOICES = [spec["voice"] for spec in DONORS.values()]


def test_installed_voices_pass_and_festival_is_asked_once(monkeypatch):
    # Festival prints its list as a Scheme list: the first voice comes after "(".
    festival_first = sorted(ALL_VOICES, key=lambda voice: voice != "czech_dita")
    engines = FakeEngines(festival_first).install(monkeypatch)
    recorded_voices.check_voices(list(DONORS))
    asked = [command for command, _, _ in engines.runs]
    assert asked.count(["festival", "--pipe"]) == 1
    assert all(command in (["festival", "--pipe"], ["flite", "-lv"]) for command in asked)


@pytest.mark.parametrize("donor", ["rms", "dita", "nsk"])
def test_a_voice_its_engine_does_not_list_is_named_with_its_package(monkeypatch, donor):
    FakeEngines([v for v in ALL_VOICES if v != DONORS[donor]["voice"]]).install(monkeypatch)
    with pytest.raises(SynthesisError, match=(
            rf"{DONORS[donor]['engine']} voice {DONORS[donor]['voice']} \(donor {donor}\): "
            rf"{DONORS[donor]['engine']} does not list this voice[\s\S]*this voice: "
            rf"apt-get install {DONORS[donor]['package']}\)")):
        recorded_voices.check_voices(list(DONORS))


def _requests(folder, texts):
    return [dict(text=text, stretch=1.1 + i / 100, f0_scale=0.9 + i / 100,
                 path=str(folder / f"utt{i}.wav")) for i, text in enumerate(texts)]


def test_flite_speaks_each_request_at_its_rate_and_pitch(tmp_path, monkeypatch):
    engines = FakeEngines(ALL_VOICES).install(monkeypatch)
    requests = _requests(tmp_path, ["the house", "seven people"])
    recorded_voices.synthesise("slt", requests)
    commands = [command for command, _, _ in engines.runs]
    assert len(commands) == 2
    for command, request in zip(commands, requests):
        settings = dict(value.split("=") for flag, value in zip(command, command[1:])
                        if flag == "--setf")
        assert command[command.index("-voice") + 1] == "slt"
        assert command[command.index("-t") + 1] == request["text"]
        assert command[command.index("-o") + 1] == request["path"]
        assert float(settings["duration_stretch"]) == pytest.approx(request["stretch"], abs=1e-3)
        # slt is a woman's voice: her F0 target is 180 Hz, scaled by the request's factor.
        assert float(settings["int_f0_target_mean"]) == pytest.approx(
            180 * request["f0_scale"], abs=0.05)


@pytest.mark.parametrize("donor, hts", [("pc", False), ("ona", True)])
def test_festival_speaks_every_request_from_one_script_it_leaves_behind(tmp_path, monkeypatch,
                                                                      donor, hts):
    engines = FakeEngines(ALL_VOICES).install(monkeypatch)
    requests = _requests(tmp_path, ['la "casa" verde', "sette persone"])
    recorded_voices.synthesise(donor, requests)
    (command, _, script), = engines.runs
    assert command[:2] == ["festival", "-b"] and not os.path.exists(command[2])
    assert f"(voice_{DONORS[donor]['voice']})\n" in script
    assert ("(set! h6_hts_params hts_engine_params)" in script) == hts
    said = re.findall(r'^\(h6_say "([^"]*)" (\S+) (\S+) "([^"]+)"\)$', script, re.MULTILINE)
    assert said == [("la casa verde", "1.100", "0.900", requests[0]["path"]),
                    ("sette persone", "1.110", "0.910", requests[1]["path"])]


def test_an_engine_that_fails_or_writes_nothing_is_named(tmp_path, monkeypatch):
    FakeEngines(ALL_VOICES, fails=True).install(monkeypatch)
    with pytest.raises(SynthesisError, match=r"flite voice kal16 \(donor kal\): flite -voice "
                                             r"kal16 ... failed: engine broke"):
        recorded_voices.synthesise("kal", _requests(tmp_path, ["seven"]))
    FakeEngines(ALL_VOICES, writes=False).install(monkeypatch)
    with pytest.raises(SynthesisError, match=r"festival voice czech_ph \(donor ph\): the engine "
                                             r"wrote no audio for .*utt0.wav"):
        recorded_voices.synthesise("ph", _requests(tmp_path, ["voda"]))


def test_a_sentence_has_five_to_nine_words_of_its_language():
    rng = np.random.default_rng(0)
    for lang, words in recorded_voices.WORDS.items():
        sentences = [recorded_voices.random_sentence(rng, lang).split() for _ in range(200)]
        assert {len(sentence) for sentence in sentences} == set(range(5, 10))
        assert all(word in words for sentence in sentences for word in sentence)


def test_balanced_trials_are_as_few_as_the_rarer_label_allows():
    # Four utterances of s0 and one of s1: six target pairs, four non-target pairs.
    rows = [dict(ID=f"u{i}", spk_id="s0" if i < 4 else "s1") for i in range(5)]
    trials = recorded_voices.balanced_trials(np.random.default_rng(0), rows, 10)
    assert [label for label, _, _ in trials] == [1, 0] * 4
    assert len({frozenset(pair) for _, *pair in trials}) == 8
    assert all((label == 1) == ("u4" not in pair) for label, *pair in trials)


def test_levels_and_channels_are_drawn_per_utterance_and_the_engine_output_is_removed(corpus):
    paths, _ = corpus
    assert not os.path.exists(os.path.join(os.path.dirname(paths["eval"]), "engine"))
    peaks = [np.abs(soundfile.read(wav)[0]).max()
             for wav in read_manifest(paths["source_train"])["wav"]]
    # Each recording is brought to a peak drawn in [0.3, 0.9] (within a 16-bit step).
    assert 0.3 - 1e-4 < min(peaks) < 0.35 and 0.85 < max(peaks) < 0.9 + 1e-4
    target = read_manifest(paths["target_train"])
    assert set(target["channel"]) == {"telephone_mulaw", "telephone_alaw"}


def test_a_corpus_made_with_another_trial_count_is_generated_again(tmp_path):
    def trials(count):
        paths = prepare_recorded_voices(str(tmp_path), seed=1, utts_per_speaker=2,
                                        trials_per_label=count, synthesiser=fake_synthesiser([]))
        return read_trials(paths["trials_source"])

    assert len(trials(5)) == 10 and len(trials(3)) == 6
