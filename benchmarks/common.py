"""Set-up shared by the training benchmarks: Brains built as train_dann.py builds them.

Every Brain is built by :func:`local.experiment.prepare_experiment` from a file of
``hparams/``, exactly as a training run builds it; the SSL ones load a tiny
randomly initialised WavLM saved with ``save_pretrained`` (the one the tests
use), passed as ``--ssl_source``.
"""

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# `python benchmarks/<script>.py` puts benchmarks/ first on the path; the
# recipe's modules and tests/conftest.py are imported from the checkout.
sys.path.insert(0, ROOT)

import speechbrain as sb  # noqa: E402
import torch  # noqa: E402

from local.data.dataio import collate_pairs  # noqa: E402
from local.experiment import prepare_experiment  # noqa: E402
from tests.conftest import TINY_SSL_DIM, save_tiny_ssl  # noqa: E402

DEMO = os.path.join(ROOT, "data", "demo")
# The tests' encoder sizes: with them a step's cost is mostly the front end's.
TINY_ENCODER = ["--channels=[32, 32, 32, 32, 96]", "--emb_dim=32", "--discriminator_neurons=[32]"]


def machine():
    """One line describing the software and the load of the machine."""
    return (f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f} at the start")


def tiny_wavlm(work):
    """Options that make hparams/dann_wavlm.yaml load a tiny WavLM saved under ``work``."""
    folder = os.path.join(work, "tiny_wavlm")
    if not os.path.isdir(folder):
        os.makedirs(folder)
        save_tiny_ssl(folder, "wavlm")
    return [f"--ssl_source={folder}", f"--ssl_dim={TINY_SSL_DIM}",
            f"--ssl_cache={work}/hub"]


def build(hparams, work, name, *overrides, data_folder=DEMO):
    """The Brain, hparams and data of a training run of ``hparams/<hparams>`` on the demo corpus.

    ``name`` is its output folder under ``work``; ``overrides`` are command-line options;
    ``data_folder`` is where the demo corpus is (generated there if missing).
    """
    argv = [os.path.join(ROOT, "hparams", hparams), f"--data_folder={data_folder}",
            f"--output_folder={os.path.join(work, name)}", "--check_audio=False", *overrides]
    brain, hparams, _, data = prepare_experiment(argv)
    # What Brain.fit does before its first batch.
    brain.train_pairs = data["train_pairs"]
    brain.steps_per_epoch = data["train_pairs"].steps_per_epoch(hparams["batch_size"])
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN, epoch=1)
    return brain, hparams, data


def loader(brain, hparams, data, num_workers=None, batch_size=None):
    """The training DataLoader of a run, as ``Brain.fit`` makes it."""
    options = dict(hparams["train_dataloader_options"], collate_fn=collate_pairs)
    if num_workers is not None:
        options["num_workers"] = num_workers
    if batch_size is not None:
        options["batch_size"] = batch_size
    return brain.make_dataloader(data["train_pairs"], sb.Stage.TRAIN, **options)


def step(brain, batch):
    """One optimiser step of ``brain`` on ``batch``.

    Returns
    -------
    tuple
        ``(wall seconds, CPU seconds of this process)``. On a machine shared
        with other jobs the CPU time is the steadier of the two: it does not
        count the time the process waits for a core.
    """
    brain.step += 1
    start, cpu = time.perf_counter(), time.process_time()
    brain.fit_batch(batch)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu


def epoch(brain, batches):
    """One pass of ``brain`` over an iterable of batches.

    Returns
    -------
    tuple
        ``(wall seconds of the whole pass, [seconds waited for each batch])``.
    """
    waits = []
    start = time.perf_counter()
    iterator = iter(batches)
    while True:
        before = time.perf_counter()
        batch = next(iterator, None)
        if batch is None:
            return time.perf_counter() - start, waits
        waits.append(time.perf_counter() - before)
        step(brain, batch)
