"""Score files, DET plots and the per-condition table on a hand-made trial list."""

import math

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from local.data.manifest_io import (
    read_enrolment,
    read_manifest,
    read_trials,
    write_enrolment,
    write_manifest,
    write_trials,
)
from local.errors import ManifestError
from local.evaluation.metrics import (
    SDSV_DCF,
    VOXCELEB_DCF,
    compute_metrics,
    eer,
    error_rates,
    min_dcf,
)
from local.evaluation.report import (
    DET_MIN_TICK_GAP,
    DET_TICKS,
    DET_TOP,
    condition_table,
    det_ticks,
    plot_det,
    read_scores,
    score_file,
    write_report,
    write_scores,
    write_summary_report,
)

# ID: (spk_id, channel, lang, phrase); "" is unknown.
UTTERANCES = {
    "a1": ("A", "mic", "fa", "01"),
    "a2": ("A", "tel", "fa", "02"),
    "a3": ("A", "mic", "fa", ""),
    "b1": ("B", "mic", "fa", "01"),
    "b2": ("B", "tel", "en", "01"),
    "b3": ("B", "", "fa", "01"),
    "c1": ("C", "tel", "fa", "02"),
}
# mA: channel and lang from its utterances (they agree), phrase from the table.
# mB: its utterances disagree on channel and lang, so these are mixed.
MODELS = [
    {"model_id": "mA", "utt_ids": "a1 a3", "phrase": "02"},
    {"model_id": "mB", "utt_ids": "b1 b2", "phrase": "01"},
]
# label, enrol, test, type; the comments are the (enrol / test) conditions.
TRIALS = [
    (1, "mA", "a2", "TC"),  # 0  channel mic/tel,   lang fa,       phrase 02
    (0, "mA", "c1", "IC"),  # 1  channel mic/tel,   lang fa,       phrase 02
    (1, "mB", "b3", "TC"),  # 2  channel mixed/?,   lang mixed/fa, phrase 01
    (0, "mB", "a1", "IC"),  # 3  channel mixed/mic, lang mixed/fa, phrase 01
    (0, "mA", "b1", "IW"),  # 4  channel mic,       lang fa,       phrase 02/01
    (0, "mA", "a1", "TW"),  # 5  channel mic,       lang fa,       phrase 02/01
    (0, "mB", "c1", "IW"),  # 6  channel mixed/tel, lang mixed/fa, phrase 01/02
    (0, "a1", "b2", "IC"),  # 7  channel mic/tel,   lang fa/en,    phrase 01
    (1, "a3", "a2", "TC"),  # 8  channel mic/tel,   lang fa,       phrase ?/02
]
SCORES = np.array([0.9, 0.2, 0.6, 0.7, 0.1, 0.4, 0.3, 0.5, 0.8])


@pytest.fixture
def evaluation(tmp_path):
    """The manifest, enrolment table and trials above, through their writers and readers."""
    rows = [
        {"ID": utt, "duration": 1.0, "wav": f"{utt}.wav", "start": 0, "stop": 16000,
         "spk_id": spk, "domain": "demo", "lang": lang, "channel": channel, "phrase": phrase}
        for utt, (spk, channel, lang, phrase) in UTTERANCES.items()
    ]
    write_manifest(rows, tmp_path / "eval.csv")
    write_enrolment(MODELS, tmp_path / "models.csv")
    write_trials(TRIALS, tmp_path / "trials.txt")
    _, enrolment = read_enrolment(tmp_path / "models.csv")
    return read_trials(tmp_path / "trials.txt"), read_manifest(tmp_path / "eval.csv"), enrolment


def expected_row(condition, value, trials):
    """The table row of the hand-picked trial indices."""
    labels = np.array([TRIALS[i][0] for i in trials])
    row = {"condition": condition, "value": value, "trials": len(trials),
           "targets": int(labels.sum()), "nontargets": int((labels == 0).sum())}
    if 0 < labels.sum() < len(labels):
        row["eer"] = eer(SCORES[trials], labels)
        row["min_dcf_0.01"] = min_dcf(SCORES[trials], labels, 0.01)
    return row


EXPECTED = [
    expected_row("all", "all", [0, 1, 2, 3, 4, 5, 6, 7, 8]),
    expected_row("lang", "fa", [0, 1, 4, 5, 8]),
    expected_row("lang", "fa / en", [7]),
    expected_row("lang", "mixed / fa", [2, 3, 6]),
    expected_row("channel", "mic", [4, 5]),
    expected_row("channel", "mic / tel", [0, 1, 7, 8]),
    expected_row("channel", "mixed / mic", [3]),
    expected_row("channel", "mixed / tel", [6]),
    expected_row("channel (enrolment)", "mixed", [2]),
    expected_row("phrase", "01", [2, 3, 7]),
    expected_row("phrase", "02", [0, 1]),
    expected_row("phrase", "01 / 02", [6]),
    expected_row("phrase", "02 / 01", [4, 5]),
    expected_row("phrase (test)", "02", [8]),
    expected_row("domain", "demo", [0, 1, 2, 3, 4, 5, 6, 7, 8]),
    expected_row("trial_type", "TC vs IC", [0, 1, 2, 3, 7, 8]),
    expected_row("trial_type", "TC vs IW", [0, 2, 4, 6, 8]),
    expected_row("trial_type", "TC vs TW", [0, 2, 5, 8]),
]


def test_condition_table_matches_hand_counts(evaluation):
    trials, manifest, enrolment = evaluation
    table = condition_table(trials, SCORES, manifest, enrolment)
    assert list(table.columns) == [
        "condition", "value", "trials", "targets", "nontargets", "eer", "min_dcf_0.01",
        "min_dcf_0.001", "note"]
    # Columns in CONDITION_COLUMNS order, shared values before cross pairs.
    assert table[["condition", "value"]].values.tolist() == [
        [row["condition"], row["value"]] for row in EXPECTED]
    for row, want in zip(table.to_dict("records"), EXPECTED):
        counts = ("trials", "targets", "nontargets")
        assert [row[c] for c in counts] == [want[c] for c in counts], want
        if "eer" in want:
            assert row["note"] == ""
            assert row["eer"] == pytest.approx(want["eer"])
            assert row["min_dcf_0.01"] == pytest.approx(want["min_dcf_0.01"])
        else:
            assert row["note"] == "n/a: one-sided"
            assert math.isnan(row["eer"]) and math.isnan(row["min_dcf_0.001"])


def test_trials_are_grouped_by_the_enrolment_side_where_the_test_side_has_no_value():
    """SdSV task 1: models carry a phrase, evaluation files do not."""
    manifest = pd.DataFrame({"ID": ["e1", "e2", "t1", "t2", "t3"],
                             "phrase": ["07", "02", "", "", ""]})
    enrolment = pd.DataFrame({"model_id": ["m7", "m2"], "utt_ids": ["e1", "e2"],
                              "phrase": ["07", "02"]})
    trials = pd.DataFrame({"label": [1, 0, 0, 1, 0], "enrol": ["m7", "m7", "m7", "m2", "m2"],
                           "test": ["t1", "t2", "t3", "t1", "t2"],
                           "trial_type": ["TC", "IC", "TW", "TC", "IC"]})
    scores = np.array([0.9, 0.1, 0.95, 0.8, 0.3])
    table = condition_table(trials, scores, manifest, enrolment).set_index(["condition", "value"])
    assert table.loc[("phrase (enrolment)", "07"), "trials"] == 3
    assert table.loc[("phrase (enrolment)", "07"), "eer"] == pytest.approx(
        eer(scores[:3], trials["label"][:3]))
    assert table.loc[("phrase (enrolment)", "02"), "eer"] == 0.0
    assert ("phrase", "07") not in table.index


def test_a_model_left_blank_in_the_enrolment_table_takes_its_utterances_value():
    """An enrolment table with a phrase column that some models (text-independent ones)
    leave blank: m1 takes its utterances' 07, m3's utterance has none either."""
    manifest = pd.DataFrame({"ID": ["e1", "e2", "e3", "t1", "t2"],
                             "phrase": ["07", "07", "", "", ""]})
    enrolment = pd.DataFrame({"model_id": ["m1", "m2", "m3"], "utt_ids": ["e1 e2", "e3", "e3"],
                              "phrase": ["", "02", ""]})
    trials = pd.DataFrame({"label": [1, 0, 0, 1, 0], "enrol": ["m1", "m1", "m2", "m2", "m3"],
                           "test": ["t1", "t2", "t1", "t2", "t1"]})
    table = condition_table(trials, [0.9, 0.1, 0.3, 0.8, 0.2], manifest, enrolment)
    assert table[["condition", "value", "trials", "targets"]].values.tolist() == [
        ["all", "all", 5, 2], ["phrase (enrolment)", "02", 2, 1],
        ["phrase (enrolment)", "07", 2, 1], ["phrase (neither side)", "unknown", 1, 0]]


def test_a_model_named_like_its_utterance_is_the_model_on_the_enrolment_side_only():
    """Model e1 of utterance e1 takes its phrase from the enrolment table; e1 as a test
    utterance has none."""
    manifest = pd.DataFrame({"ID": ["e1", "e2", "t1"], "phrase": ["", "02", ""]})
    enrolment = pd.DataFrame({"model_id": ["e1", "m2"], "utt_ids": ["e1", "e2"],
                              "phrase": ["07", "02"]})
    trials = pd.DataFrame({"label": [1, 0, 0, 1], "enrol": ["e1", "e1", "m2", "m2"],
                           "test": ["t1", "e2", "e1", "t1"]})
    table = condition_table(trials, [0.9, 0.1, 0.3, 0.8], manifest, enrolment)
    assert table[["condition", "value", "trials", "targets"]].values.tolist() == [
        ["all", "all", 4, 2], ["phrase", "07 / 02", 1, 0],
        ["phrase (enrolment)", "02", 2, 1], ["phrase (enrolment)", "07", 1, 1]]


def test_the_rows_of_each_column_hold_every_trial_once():
    """Models enrolled over both channels, utterances of no channel or phrase: once the
    wireless+telephone models' trials were in no channel row, and those of a phrase on the
    test side alone in no phrase row, while the ``all`` row counted them."""
    # Utterance s<speaker><channel><n>: channel w wireless, t telephone, u unknown; phrase 01
    # for speakers 0 and 3, 02 for speaker 1, unknown for speaker 2.
    channels, phrases = {"w": "wireless", "t": "telephone", "u": ""}, ["01", "02", "", "01"]
    utts = [f"s{spk}{ch}{n}" for spk in range(4) for ch in channels for n in range(2)]
    manifest = pd.DataFrame({"ID": utts, "channel": [channels[u[2]] for u in utts],
                             "phrase": [phrases[int(u[1])] for u in utts], "gender": ""})
    models = {f"m{spk}{kind}": " ".join(f"s{spk}{utt}" for utt in members)
              for spk in range(4)
              for kind, members in (("mix", ["w0", "t0"]), ("tel", ["t1"]), ("unk", ["u0", "u1"]))}
    enrolment = pd.DataFrame({"model_id": list(models), "utt_ids": list(models.values())})
    tests = [u for u in utts if u.endswith("1") or u[2] == "u"]
    trials = pd.DataFrame([(int(model[1] == test[1]), model, test)
                           for model in models for test in tests],
                          columns=["label", "enrol", "test"])
    scores = np.random.default_rng(0).normal(size=len(trials)) + trials["label"]
    table = condition_table(trials, scores, manifest, enrolment)
    column = table["condition"].str.split(" ").str[0]
    # No trial has a gender: no rows, rather than one of all trials "unknown".
    assert table.groupby(column)["trials"].sum().to_dict() == {
        "all": len(trials), "channel": len(trials), "phrase": len(trials)}
    rows = table.set_index(["condition", "value"])["trials"]
    enrol, test = trials["enrol"].str[2:], trials["test"].str[2]
    assert rows[("channel", "mixed / telephone")] == ((enrol == "mix") & (test == "t")).sum()
    assert rows[("channel (enrolment)", "mixed")] == ((enrol == "mix") & (test == "u")).sum()
    assert rows[("channel (test)", "telephone")] == ((enrol == "unk") & (test == "t")).sum()
    neither = np.flatnonzero((enrol == "unk") & (test == "u"))
    assert rows[("channel (neither side)", "unknown")] == len(neither)
    assert table.set_index(["condition", "value"]).loc[
        ("channel (neither side)", "unknown"), "eer"] == pytest.approx(
        eer(scores[neither], trials["label"][neither]))
    # Speaker 2's models have no phrase; its trials of test phrase 01 are the speakers 0 and 3's.
    assert rows[("phrase (test)", "01")] == (
        (trials["enrol"].str[1] == "2") & trials["test"].str[1].isin(["0", "3"])).sum()


def test_hand_computed_values(evaluation):
    trials, manifest, enrolment = evaluation
    table = condition_table(trials, SCORES, manifest, enrolment).set_index(["condition", "value"])
    # Targets 0.9, 0.8 above non-targets 0.2, 0.5: separated.
    assert table.loc[("channel", "mic / tel"), "eer"] == 0.0
    # Non-targets 0.2, 0.5, 0.7 and targets 0.6, 0.8, 0.9: rejecting up to 0.6
    # misses 1 of 3 targets and accepts 1 of 3 non-targets.
    assert table.loc[("trial_type", "TC vs IC"), "eer"] == pytest.approx(1 / 3)
    # Non-targets 0.5, 0.7 and target 0.6: accepting above 0.5 (miss 0, false
    # alarms 1/2) and above 0.6 (miss 1, false alarms 0) are equally close;
    # the lower threshold is taken, as SpeechBrain does.
    assert table.loc[("phrase", "01"), "eer"] == pytest.approx(0.25)


def test_without_enrolment_table_or_types_or_condition_columns():
    manifest = pd.DataFrame({"ID": ["x", "y", "z"], "gender": ["f", "f", "m"]})
    trials = pd.DataFrame({"label": [1, 0, 0], "enrol": ["x", "x", "y"], "test": ["y", "z", "z"]})
    table = condition_table(trials, [0.5, 0.1, 0.2], manifest)
    assert table[["condition", "value", "trials", "targets"]].values.tolist() == [
        ["all", "all", 3, 1], ["gender", "f", 1, 1], ["gender", "f / m", 2, 0]]
    bare = condition_table(trials, [0.5, 0.1, 0.2], manifest[["ID"]])
    assert bare["condition"].tolist() == ["all"]
    for scores, count in (([0.5, 0.1], 2), ([0.5, 0.1, 0.2, 0.9], 4)):
        with pytest.raises(ValueError, match=f"{count} scores for 3 trials"):
            condition_table(trials, scores, manifest)


def test_write_report_writes_scores_and_tables(evaluation, tmp_path):
    trials, manifest, enrolment = evaluation
    dcf = VOXCELEB_DCF + SDSV_DCF
    metrics = write_report("target", trials, SCORES, manifest, tmp_path / "out", dcf, enrolment)
    assert metrics == {"trials": 9, "targets": 3, **compute_metrics(SCORES, trials["label"], dcf)}
    folder = tmp_path / "out" / "target"
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["target"]
    assert score_file(tmp_path / "out", "target") == str(folder / "scores.txt")
    assert read_scores(folder / "scores.txt")["score"].tolist() == SCORES.tolist()
    table = pd.read_csv(folder / "conditions.csv", keep_default_na=False)
    assert len(table) == len(EXPECTED) and "min_dcf_0.01_10_1" in table.columns
    # The EER in percent, as in the run's summary.csv.
    assert float(table["eer_percent"][0]) == pytest.approx(100 * metrics["eer"])
    markdown = (folder / "conditions.md").read_text().splitlines()
    assert markdown[0] == ("| condition | value | trials | targets | non-targets | EER (%) "
                           "| minDCF 0.01 | minDCF 0.001 | minDCF 0.01, 10, 1 |")
    assert len(markdown) == 2 + len(EXPECTED)
    assert f"| all | all | 9 | 3 | 6 | {100 * metrics['eer']:.2f} |" in markdown[2]
    assert "| lang | fa / en | 1 | 0 | 1 | n/a: one-sided |  |  |  |" in markdown


def test_score_file_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    trials = pd.DataFrame({"label": rng.integers(0, 2, 500), "enrol": [f"e{i}" for i in range(500)],
                           "test": [f"t{i % 7}" for i in range(500)]})
    scores = rng.normal(size=500) * 10.0 ** rng.integers(-8, 8, 500)
    write_scores(tmp_path / "s.txt", trials, scores)
    first_line = (tmp_path / "s.txt").read_text().splitlines()[0]
    assert first_line == f"e0 t0 {float(scores[0])!r} {trials['label'][0]}"
    back = read_scores(tmp_path / "s.txt")
    assert back["score"].dtype == np.float64 and back["label"].dtype.kind == "i"
    assert back["score"].tolist() == scores.tolist()
    pd.testing.assert_frame_equal(back[["label", "enrol", "test"]], trials)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "s.txt: score file is empty\nFix: score the trial list first$"),
        ("a b 0.5 1\nc d 0.1 0 extra\n", "label 0 or 1\n  line 2: c d 0.1 0 extra\nFix"),
        ("\n\n", "s.txt: score file is empty\nFix: score the trial list first$"),
        ("a b 0.5 1\nc d x 0\ne f 0.2 2\ng h 0.3\n",
         "finite score and label 0 or 1\n"
         "  line 2: c d x 0\n  line 3: e f 0.2 2\n  line 4: g h 0.3\nFix"),
        ("a b nan 1\n", "line 1: a b nan 1"),
        ("a b 0.5 1\na b 0.4 1\n", "trials listed more than once\n  line 2: a b"),
    ],
)
def test_bad_score_files_are_named(tmp_path, text, message):
    path = tmp_path / "s.txt"
    path.write_text(text)
    with pytest.raises(ManifestError, match=message):
        read_scores(path)
    with pytest.raises(ManifestError, match="none.txt: score file does not exist\nFix: score "
                                            "the trial list first$"):
        read_scores(tmp_path / "none.txt")


def test_a_score_file_with_blank_lines_and_windows_line_ends_is_read(tmp_path):
    # As another tool or an editor leaves it: CRLF, a blank line, spaces at the
    # ends of lines, a byte order mark and no newline after the last line.
    path = tmp_path / "s.txt"
    path.write_bytes("\ufeffa b 0.5 1 \r\n\r\na c -1e-3 0\r\n\r\nb c 2 1".encode())
    assert list(read_scores(path).itertuples(index=False, name=None)) == [
        ("a", "b", 0.5, 1), ("a", "c", -0.001, 0), ("b", "c", 2.0, 1)]
    path.write_text("a b 0.5 1\nb c 0.1 0\nb c 0.2 0\n\n")
    with pytest.raises(ManifestError, match="trials listed more than once\n  line 3: b c$"):
        read_scores(path)


def test_a_score_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "s.txt"
    path.write_bytes("a b 0.5 1\nb\u00e9 c 0.1 0\n".encode("latin-1"))
    with pytest.raises(ManifestError, match="s.txt: is not UTF-8 text\n  line 2: "):
        read_scores(path)


def test_det_plot_has_one_curve_per_system(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 2000)
    systems = {
        name: (rng.normal(size=2000) + shift * labels, labels)
        for name, shift in (("good", 3.0), ("fair", 1.5), ("poor", 0.5))
    }
    axes, = plot_det({"target": systems}, tmp_path / "det" / "det.png").axes
    data = (tmp_path / "det" / "det.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    height, width, _ = matplotlib.image.imread(tmp_path / "det" / "det.png").shape
    assert height > 300 and width > 300
    assert len(axes.get_lines()) == 3 and axes.get_title() == "target"
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend == [f"{name} (EER {100 * eer(*systems[name]):.2f}%)" for name in systems]
    # Probit axes: the 1 % and 10 % ticks are where the normal quantiles are.
    ticks = dict(zip([t.get_text() for t in axes.get_xticklabels()], axes.get_xticks()))
    assert ticks["1"] == pytest.approx(-2.3263, abs=1e-4)
    assert ticks["10"] == pytest.approx(-1.2816, abs=1e-4)
    # Each curve is the system's error rates on that scale.
    x, y = axes.get_lines()[1].get_data()
    assert np.all(np.diff(x) <= 0) and np.all(np.diff(y) >= 0)


@pytest.mark.parametrize("name, magic", [("det.pdf", b"%PDF"), ("det.SVG", b"<?xml"),
                                         ("det", b"\x89PNG")])
def test_det_figure_is_written_in_the_format_its_name_says(tmp_path, name, magic):
    labels = np.arange(40) % 2
    plot_det({"target": {"system": (labels + np.linspace(0, 1, 40), labels)}}, tmp_path / name)
    assert (tmp_path / name).read_bytes().startswith(magic)


def test_det_figure_has_a_panel_per_list_each_with_its_legend_outside(tmp_path):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    panels = {trial_list: {f"{trial_list}{suffix}": (rng.normal(size=500) + shift * labels, labels)
                           for suffix, shift in (("", 1.0), ("_plda", 2.0), ("_plda_asnorm", 2.5))}
              for trial_list in ("source", "target")}
    styles = {"source_plda": {"color": "C3", "linestyle": "-"},
              "source_plda_asnorm": {"color": "C3", "linestyle": "--"}}
    figure = plot_det(panels, tmp_path / "det.png", styles)
    assert [axes.get_title() for axes in figure.axes] == ["source", "target"]
    renderer = figure.canvas.get_renderer()
    for axes, systems in zip(figure.axes, panels.values()):
        assert [t.get_text().split(" (")[0] for t in axes.get_legend().get_texts()] == list(systems)
        legend = axes.get_legend().get_window_extent(renderer)
        assert not legend.overlaps(axes.get_window_extent(renderer))
    # The styles asked for; the curves without one keep matplotlib's cycle.
    plda, normalised = figure.axes[0].get_lines()[1:]
    assert (plda.get_color(), plda.get_linestyle()) == ("C3", "-")
    assert (normalised.get_color(), normalised.get_linestyle()) == ("C3", "--")


def test_summary_report_shows_the_table_the_best_systems_and_the_figure(tmp_path):
    summary = pd.DataFrame({"system": ["source", "source_plda", "target", "target_plda"],
                            "trials": [10, 10, 12, 12], "eer_percent": [20.0, 12.5, 30.0, 35.25],
                            "min_dcf_0.01": [0.9, 0.8, 1.0, float("nan")],
                            "min_dcf_0.001": [0.95, 0.85, 1.0, 0.99]})
    path = tmp_path / "report.md"
    write_summary_report(path, "demo", summary, {"source": "source_plda", "target": "target"},
                         "every system", "CKPT+1")
    text = path.read_text()
    assert text.startswith("# Verification: demo\n\nThe model of checkpoint `CKPT+1`.\n")
    assert "| system | trials | EER (%) | minDCF 0.01 | minDCF 0.001 |" in text
    assert "| **source_plda** | 10 | 12.50 | 0.8000 | 0.8500 |" in text
    assert "| target_plda | 12 | 35.25 |  | 0.9900 |" in text
    assert "source: `source_plda` (12.50 %); target: `target` (30.00 %)" in text
    assert "![DET curves of every system](det.png)" in text
    assert "`<system>/scores.txt`" in text and "`summary.csv`" in text
    assert "Not scored" not in text


def test_summary_report_says_how_its_figures_are_defined(tmp_path):
    """A minDCF normalised (VoxSRC's, SdSV's) is a hundred times SpeechBrain's raw one at
    p_target 0.01: the report says which it gives, and which EER."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 400)
    scores = rng.normal(size=400) + labels
    metrics = compute_metrics(scores, labels, dcf=SDSV_DCF)
    summary = pd.DataFrame({"system": ["target"], "trials": [400],
                            "eer_percent": [100 * metrics["eer"]],
                            "min_dcf_0.01_10_1": [metrics["min_dcf_0.01_10_1"]]})
    path = tmp_path / "report.md"
    write_summary_report(path, "demo", summary, {"target": "target"}, "every system", "CKPT+1")
    text = path.read_text()
    assert "| **target** | 400 |" in text and "| minDCF 0.01, 10, 1 |" in text
    assert ("minDCF `p_target[, C_miss, C_fa]` (costs 1 where not named): the lowest detection "
            "cost, normalised by that of the better trivial system, "
            "`min(C_miss p_target, C_fa (1 - p_target))`") in text
    assert "EER: `(p_miss + p_fa) / 2` at the threshold where the two are closest" in text
    # The definition the note gives is the figure's.
    _, p_miss, p_fa = error_rates(scores, labels)
    raw = (10 * 0.01 * p_miss + 0.99 * p_fa).min()
    assert metrics["min_dcf_0.01_10_1"] == pytest.approx(raw / min(10 * 0.01, 0.99))


def test_summary_report_names_the_backends_the_data_could_not_train(tmp_path):
    summary = pd.DataFrame({"system": ["target"], "trials": [12], "eer_percent": [30.0]})
    path = tmp_path / "report.md"
    write_summary_report(path, "demo", summary, {"target": "target"}, "every system", "CKPT+1",
                         {"plda": "its training embeddings have 2 speakers"})
    assert ("Not scored (the run's training data cannot train them):\n\n"
            "- `plda`: its training embeddings have 2 speakers.\n") in path.read_text()


@pytest.mark.parametrize("bottom", DET_TICKS[:-1])
def test_det_ticks_are_spread_over_the_axis_without_crowding(bottom):
    ticks = det_ticks(bottom, DET_TOP)
    probits = norm.ppf(ticks)
    span = norm.ppf(DET_TOP) - norm.ppf(bottom)
    assert all(bottom <= tick <= DET_TOP for tick in ticks)
    assert np.diff(probits).min() >= DET_MIN_TICK_GAP * span - 1e-12
    # Every decade on the axis keeps its tick; the axis has two at least.
    decades = [t for t in DET_TICKS if bottom <= t and f"{t:e}".startswith("1")]
    assert set(decades) <= set(ticks) and len(ticks) >= 2


def test_det_plot_of_a_wide_range_has_no_crowded_labels(tmp_path):
    """Trials of 10^-4 error rates: once labelled 0.01, 0.02, 0.05 and 0.1 side by side."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 40_000)
    axes, = plot_det({"target": {"good": (rng.normal(size=40_000) + 4.5 * labels, labels)}},
                     tmp_path / "det.png").axes
    span = np.diff(axes.get_xlim())[0]
    assert axes.get_xlim()[0] == pytest.approx(norm.ppf(0.0001))
    labels = [t.get_text() for t in axes.get_xticklabels()]
    assert labels[:2] == ["0.01", "0.1"] and "0.02" not in labels and "0.05" not in labels
    assert np.diff(axes.get_xticks()).min() >= DET_MIN_TICK_GAP * span - 1e-12
