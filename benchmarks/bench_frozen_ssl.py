"""Frozen against fine-tuned SSL front end, and the cache of frozen SSL hidden states.

1. **Frozen vs fine-tuned.** ``dann_wavlm.yaml`` with a tiny randomly
   initialised WavLM and the tests' small encoder (so that the front end's
   share of a step is visible), built twice by ``train_dann.py``'s own code:
   ``freeze_ssl`` True and False. It reports the median step time of each
   (CPU time, one torch thread, timed alternately on the same in-memory
   batches) and the activations each front end keeps for backward: the bytes
   of the tensors autograd saves during its forward, parameters excluded
   (``torch.autograd.graph.saved_tensors_hooks``; on CUDA also
   ``torch.cuda.max_memory_allocated`` of a step).
2. **Feature cache, tiny WavLM.** The same frozen model, one run with
   ``cache_ssl_features`` and one without: the time to fill the cache (the SSL
   forward of every whole training utterance, once), then training epochs
   (2 data-loading workers, as in the hparams) alternately with and without
   the cache (wall time, and CPU time of the training process and its
   loading workers, steadier on a shared machine), and the size of the cache
   per hour of audio.
3. **wavlm-base-plus, estimated.** A randomly initialised WavLM of
   wavlm-base-plus's shape (12 layers, 768 dims; weights do not change the
   time) with the hparams file's ECAPA-TDNN: a step on waveforms against a
   step on the float16 hidden states of the same batch, as the cache gives
   them; the hidden states' size per hour of audio, from the measured shape.

Run from the repository root (about 9 minutes on 2 busy CPU cores)::

    .venv/bin/python benchmarks/bench_frozen_ssl.py

The last line prints the epoch-time ratio without / with the cache.
"""

import argparse
import os
import resource
import statistics
import tempfile
import time

import pandas as pd
import torch
from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

from common import DEMO, TINY_ENCODER, build, epoch, loader, machine, step, tiny_wavlm

ROUNDS = 8
EPOCHS = 2
BASE_ROUNDS = 2


def saved_activation_bytes(module, function):
    """Bytes of the tensors autograd keeps for backward while ``function`` runs, parameters excluded."""
    parameters = {p.untyped_storage().data_ptr() for p in module.parameters()}
    kept = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        function()
    return sum(kept.values())


def frozen_vs_fine_tuned(work):
    options = [*tiny_wavlm(work), *TINY_ENCODER]
    runs = {mode: build("dann_wavlm.yaml", work, f"ssl_{mode}", *options, f"--freeze_ssl={frozen}")
            for mode, frozen in (("frozen", True), ("fine-tuned", False))}
    brain, hparams, data = runs["frozen"]
    batches = list(loader(brain, hparams, data, num_workers=0))
    times = {mode: [] for mode in runs}
    for index in range(ROUNDS + 1):
        for mode in (list(runs) if index % 2 else list(runs)[::-1]):
            elapsed = step(runs[mode][0], batches[index % len(batches)])[1]
            if index:  # the first round is a warm-up
                times[mode].append(elapsed)
    source, target = batches[0]
    wavs = torch.cat([source.sig.data, target.sig.data])
    lines = []
    for mode, (brain, _, _) in runs.items():
        frontend = brain.modules.frontend
        kept = saved_activation_bytes(frontend, lambda: frontend(wavs))
        memory = ""
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            step(brain, batches[0])
            memory = f", CUDA peak {torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB"
        lines.append((mode, statistics.median(times[mode]), kept))
        print(f"tiny WavLM {mode}: step {statistics.median(times[mode]):.3f} s CPU (median of "
              f"{ROUNDS}), front end keeps {kept / 2**20:.2f} MiB of activations for backward "
              f"on {len(wavs)} crops of {hparams['crop_seconds']} s{memory}")
    (_, frozen_time, _), (_, tuned_time, _) = lines
    print(f"fine-tuned / frozen step time: {tuned_time / frozen_time:.2f}x")


def cache_epochs(work):
    options = [*tiny_wavlm(work), *TINY_ENCODER]
    features = os.path.join(work, "features")
    start = time.perf_counter()
    plain = build("dann_wavlm.yaml", work, "plain", *options)
    plain_build = time.perf_counter() - start
    start = time.perf_counter()
    cached = build("dann_wavlm.yaml", work, "cached", *options, "--cache_ssl_features=True",
                   f"--ssl_features_folder={features}")
    fill = time.perf_counter() - start - plain_build
    audio_hours = sum(pd.read_csv(os.path.join(DEMO, f"{split}_train.csv"))["duration"].sum()
                      for split in ("source", "target")) / 3600
    disk = sum(os.path.getsize(os.path.join(features, name)) for name in os.listdir(features))
    print(f"cache of the tiny WavLM (3 hidden states x 32 dims): filled in {fill:.1f} s for "
          f"{audio_hours * 60:.1f} min of audio ({plain_build:.1f} s to build the run without "
          f"it); {disk / 2**20:.1f} MiB, {disk / audio_hours / 2**30:.3f} GiB per hour of audio")
    times = {"without cache": [], "with cache": []}
    cpu_times = {"without cache": [], "with cache": []}
    for index in range(EPOCHS):
        for name, (brain, hparams, data) in (("without cache", plain), ("with cache", cached)):
            cpu = cpu_seconds()
            total, waited = epoch(brain, loader(brain, hparams, data))
            times[name].append(total)
            cpu_times[name].append(cpu_seconds() - cpu)
            print(f"epoch {index + 1} {name}: {total:.2f} s ({cpu_times[name][-1]:.2f} s CPU), "
                  f"{len(waited)} steps, {100 * sum(waited) / total:.0f}% of it waiting for batches")
    ratio = min(times["without cache"]) / min(times["with cache"])
    cpu_ratio = min(cpu_times["without cache"]) / min(cpu_times["with cache"])
    print(f"epoch time without / with cache (best of {EPOCHS}): {ratio:.1f}x wall, "
          f"{cpu_ratio:.1f}x CPU")
    return ratio, cpu_ratio


def cpu_seconds():
    """CPU time of this process and of its finished children (the epoch's loading workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def base_plus_estimate(work):
    folder = os.path.join(work, "wavlm_base_shape")
    WavLMModel(WavLMConfig()).save_pretrained(folder)  # 12 layers, 768 dims, CNN stride 320
    Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(folder)
    brain, hparams, data = build("dann_wavlm.yaml", work, "base", f"--ssl_source={folder}",
                                 "--batch_size=8")
    batches = list(loader(brain, hparams, data, num_workers=0))
    uncached, cached = [], []
    for index in range(BASE_ROUNDS + 1):
        source, target = batches[index]
        elapsed = step(brain, (source, target))[1]
        frontend = brain.modules.frontend
        for half in (source, target):
            # What the cache gives: [batch, frames, layers, dim] in float16.
            states = frontend.hidden_states(half.sig.data).permute(1, 2, 0, 3).half()
            half.sig = half.sig._replace(data=states)
        if index:  # the first round is a warm-up
            uncached.append(elapsed)
            cached.append(step(brain, (source, target))[1])
    frames, layers, dim = source.sig.data.shape[1:]
    seconds = hparams["crop_seconds"]
    per_hour = layers * dim * 2 * frames / seconds * 3600
    ratio = statistics.median(uncached) / statistics.median(cached)
    print(f"wavlm-base-plus shape ({layers} hidden states x {dim} dims, {frames / seconds:.0f} "
          f"frames/s), file's ECAPA-TDNN, 8 + 8 crops of {seconds} s: step on waveforms "
          f"{statistics.median(uncached):.2f} s CPU, on cached float16 hidden states "
          f"{statistics.median(cached):.2f} s CPU (medians of {BASE_ROUNDS}): {ratio:.1f}x; cache "
          f"{per_hour / 2**30:.2f} GiB ({per_hour / 1e9:.2f} GB) per hour of audio")
    return ratio


def main(argv=None):
    """Run the measurements; the script takes no options."""
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)  # --help
    # One thread: step times are CPU times of the compute alone (with more,
    # idle threads spin); epochs, which include waiting for data, are wall times.
    torch.set_num_threads(1)
    print(machine())
    with tempfile.TemporaryDirectory() as work:
        frozen_vs_fine_tuned(work)
        tiny_ratio, tiny_cpu_ratio = cache_epochs(work)
        base_ratio = base_plus_estimate(work)
    print(f"epoch time without / with the SSL feature cache: tiny WavLM {tiny_ratio:.1f}x "
          f"wall, {tiny_cpu_ratio:.1f}x CPU (measured); wavlm-base-plus shape {base_ratio:.1f}x (step ratio)")


if __name__ == "__main__":
    main()
