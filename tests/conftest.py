"""Fixtures shared by the test modules, after a check that the libraries load together."""

import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from local.environment import installation_problem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
    """Stop the run with one message when torch, torchaudio, speechbrain or transformers do not load.

    Otherwise every test module fails on import with the same long traceback.
    """
    problem = installation_problem()
    if problem is not None:
        pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)


# Small enough to run in milliseconds, shaped like the real models: a 7-layer
# CNN with a total stride of 320 samples (20 ms frames) and a transformer.
TINY_SSL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, conv_dim=(32,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2),
                conv_kernel=(10, 3, 3, 3, 3, 2, 2), num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=2)
TINY_SSL_DIM = TINY_SSL["hidden_size"]


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory):
    """The default demo corpus (seed 1234), generated once per test session."""
    from data_prep.demo import prepare_demo

    folder = tmp_path_factory.mktemp("demo")
    return prepare_demo(str(folder))


def save_tiny_ssl(folder, family):
    """Save a randomly initialised tiny WavLM or wav2vec2 as save_pretrained writes them.

    The folder is what a user gets from the hub (model and feature
    extractor), so loading it by path is the real checkpoint loading path.
    wav2vec2-base normalises its input waveform and WavLM-base-plus does not;
    the tiny ones do the same.
    """
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
        WavLMConfig,
        WavLMModel,
    )

    if family == "wavlm":
        model = WavLMModel(WavLMConfig(num_buckets=32, max_bucket_distance=64, **TINY_SSL))
    else:
        model = Wav2Vec2Model(Wav2Vec2Config(**TINY_SSL))
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=family == "wav2vec2").save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_ssl(tmp_path_factory):
    """Tiny WavLM and wav2vec2 checkpoint folders (:func:`save_tiny_ssl`)."""
    return {family: save_tiny_ssl(tmp_path_factory.mktemp(f"tiny_{family}"), family)
            for family in ("wavlm", "wav2vec2")}


def _in_group(rank, port, function, args):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    function(rank, *args)
    if torch.distributed.is_initialized():  # unless the function left the group itself
        torch.distributed.destroy_process_group()


def in_two_processes(function, *args, timeout=300):
    """Run ``function(rank, *args)`` in two processes of one DDP group (gloo, on the CPU).

    Processes still running after ``timeout`` seconds (waiting for each other
    at different collectives) are killed and the test fails, rather than
    waiting with them for the process group's own timeout.
    """
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    processes = torch.multiprocessing.spawn(_in_group, args=(port, function, args), nprocs=2,
                                            join=False)
    deadline = time.monotonic() + timeout
    while not processes.join(timeout=max(deadline - time.monotonic(), 0)):
        if time.monotonic() >= deadline:
            for process in processes.processes:
                process.kill()
                process.join()
            pytest.fail(f"{function.__name__} still ran in two processes after {timeout} s")


def waiting_process(code, argument):
    """A Python process running ``code`` on ``argument`` from the repository's root.

    ``code`` prints one line once it holds what it holds, then reads its input
    until it closes; the line is awaited here. Close the process's input to end it.
    """
    process = subprocess.Popen([sys.executable, "-c", code, str(argument)], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip()
    return process
