"""The Brain internals DANNBrain relies on, as the pinned SpeechBrain has them.

A failure here after a SpeechBrain upgrade names what to re-check in
``local/model/dann_brain.py`` (its ``SPEECHBRAIN_VERSION`` comment), or in
``local/settings.py``, which reads the parser of ``sb.parse_arguments``.
"""

import math
import pathlib
import re

import pytest
import speechbrain as sb
import torch
import yaml

from local.model.dann_brain import SPEECHBRAIN_VERSION, DANNBrain
from local.settings import run_option_words

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Recorder(sb.Brain):
    """A one-weight Brain that records what fit_batch and on_stage_end see."""

    def compute_forward(self, batch, stage):
        return self.modules.linear(batch)

    def compute_objectives(self, predictions, batch, stage):
        return predictions.mean()

    def fit_batch(self, batch):
        self.seen_steps.append(self.step)
        return super().fit_batch(batch)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        self.at_stage_end = (self.step, self.avg_train_loss, stage_loss)


@pytest.fixture
def brain():
    torch.manual_seed(0)
    recorder = Recorder(modules={"linear": torch.nn.Linear(2, 1)},
                        opt_class=lambda params: torch.optim.SGD(params, lr=0.1),
                        run_opts={"device": "cpu"})
    recorder.seen_steps = []
    return recorder


def test_the_pinned_version_is_the_installed_one():
    assert sb.__version__ == SPEECHBRAIN_VERSION
    for name in ("constraints.txt", "setup.cfg"):
        pins = re.findall(r"speechbrain==([\w.]+)", (ROOT / name).read_text())
        assert pins == [SPEECHBRAIN_VERSION], name


def test_step_counts_before_fit_batch_and_is_reset_only_after_on_stage_end(brain):
    batches = torch.utils.data.DataLoader([torch.ones(1, 2)] * 3, batch_size=None)
    brain.fit(range(1), batches, progressbar=False)
    assert brain.seen_steps == [1, 2, 3]
    step, average, stage_loss = brain.at_stage_end
    # on_stage_end still sees the epoch's counters: DANNBrain clears them
    # itself before it checkpoints there.
    assert step == 3 and average == stage_loss != 0.0
    assert (brain.step, brain.avg_train_loss) == (0, 0.0)


def test_a_checkpoint_holds_step_and_average_loss(brain, tmp_path):
    brain.step, brain.avg_train_loss = 2, 1.5
    brain._save(tmp_path / "brain.ckpt")
    saved = yaml.safe_load((tmp_path / "brain.ckpt").read_text())
    assert (saved["step"], saved["avg_train_loss"]) == (2, 1.5)
    brain.step, brain.avg_train_loss = 0, 0.0
    brain._recover(tmp_path / "brain.ckpt", end_of_epoch=True)
    assert (brain.step, brain.avg_train_loss) == (2, 1.5)


def test_a_non_finite_loss_is_only_counted_until_the_patience_runs_out(brain):
    brain.nonfinite_count, brain.nonfinite_patience = 0, 2
    for count in (1, 2):
        brain.check_loss_isfinite(torch.tensor(float("nan")))
        assert brain.nonfinite_count == count
    with pytest.raises(ValueError, match="patience is exhausted"):
        brain.check_loss_isfinite(torch.tensor(float("inf")))


def test_on_fit_start_wraps_the_modules_through_the_private_hook(brain, monkeypatch):
    calls = []
    monkeypatch.setattr(Recorder, "_wrap_distributed", lambda self: calls.append(self))
    brain.on_fit_start()
    assert calls == [brain]


def test_each_step_asks_the_private_hook_whether_to_save_inside_the_epoch(brain, monkeypatch):
    asked = []
    monkeypatch.setattr(Recorder, "_should_save_intra_epoch_ckpt",
                        lambda self, last_time, steps: asked.append((self.step, steps)))
    batches = torch.utils.data.DataLoader([torch.ones(1, 2)] * 3, batch_size=None)
    brain.fit(range(1), batches, progressbar=False)
    assert asked == [(1, 1), (2, 2), (3, 3)]


def test_the_run_options_parser_gives_the_words_each_option_takes():
    """run_option_words reads RunOptions' private parser, the one sb.parse_arguments parses with."""
    words = run_option_words()
    assert words["--debug"] == words["--noprogressbar"] == 0
    assert words["--device"] == words["--precision"] == 1
    assert words["--jit_module_keys"] == math.inf
    _, run_opts, overrides = sb.parse_arguments(["h.yaml", "--seed=2", "--debug", "x"])
    assert run_opts["debug"] and overrides == "seed: 2 x"  # what parse_arguments refuses


def test_a_ddp_training_loader_takes_a_given_batch_sampler_as_this_process_share(monkeypatch):
    """SpeechBrain deals a batch sampler's batches out to the DDP processes in the private
    hook; given one batch per process, it handed out that batch's indices as batches (a
    TypeError at the first step). DANNBrain's batch sampler is this process's share already
    (PairedDataset.process_batches), and its loader takes it as it is."""
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    share = [range(4, 8)]  # the second process's batch of two
    dealt = []
    for brain_class in (Recorder, DANNBrain):
        brain = brain_class.__new__(brain_class)
        brain.distributed_launch, brain.rank, brain.hparams = True, 1, None
        options = brain._train_loader_specifics(range(8), {"batch_sampler": share})
        dealt.append(list(options["batch_sampler"]))
    assert dealt == [[4, 5, 6, 7], [range(4, 8)]]
