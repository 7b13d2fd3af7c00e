"""Evaluation embedding: equal-length batches against length-sorted padded batches.

1. Speed. A list the size of the VoxCeleb1 test set (4,874 utterances,
   lengths drawn uniformly from 4 to 20 s, white noise: the compute does not
   depend on the audio) is planned both ways by
   :func:`local.embedding.compute_embeddings` (``equal_length``: batches of one
   here, since the lengths all differ; ``length_sorted``: 16 neighbours in
   length order, padded to the longest). ``--sample`` utterances of it, whole
   length-sorted batches drawn at random, are embedded both ways and timed
   (wall time, one torch thread): utterances per second and real-time factor
   (processing time / audio time), and the largest cosine distance between
   an utterance's two embeddings. The padding of the full plan is given too.
   Models: ``dann_fbank.yaml``, ``dann_wavlm.yaml`` with the tests' tiny
   WavLM, and with ``--base_plus_sample`` a randomly initialised WavLM of
   wavlm-base-plus's size.
2. EER. With ``--run_folder`` (a finished ``train_dann.py`` run of
   ``dann_fbank.yaml`` on the demo corpus, trained with its defaults), its
   checkpoint verifies the demo's trial lists with embeddings of each
   batching; the EERs are printed side by side.

Run from the repository root::

    OMP_NUM_THREADS=1 python train_dann.py hparams/dann_fbank.yaml --output_folder=DEMO_RUN
    OMP_NUM_THREADS=1 python benchmarks/bench_eval_batching.py --run_folder=DEMO_RUN
"""

import argparse
import functools
import os
import tempfile
import time

import numpy as np
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.data_pipeline import provides, takes

from common import DEMO, ROOT, build, machine, tiny_wavlm  # first: puts the checkout on the path

from bench_real_size import save_ssl  # noqa: E402
from local.embedding import compute_embeddings, length_sorted_batches  # noqa: E402
from local.experiment import prepare_experiment  # noqa: E402
from local.evaluation import verification  # noqa: E402
from local.data.schema import SAMPLE_RATE  # noqa: E402

VOXCELEB1_TEST_UTTERANCES = 4874
BATCH = 16


def synthetic_list(count, seed=0):
    """``count`` utterances of white noise, lengths uniform in 4-20 s."""
    lengths = np.random.default_rng(seed).integers(4 * SAMPLE_RATE, 20 * SAMPLE_RATE, count)
    # "wav" only names an utterance in compute_embeddings' messages.
    dataset = DynamicItemDataset({f"u{i:05d}": {"wav": "white noise", "start": 0, "stop": int(n),
                                                "sample_rate": SAMPLE_RATE}
                                  for i, n in enumerate(lengths)})

    @takes("id", "stop")
    @provides("sig")
    def noise(utt, stop):
        return 0.1 * torch.randn(stop, generator=torch.Generator().manual_seed(int(utt[1:])))

    dataset.add_dynamic_item(noise)
    dataset.set_output_keys(["id", "sig"])
    return dataset, lengths


def sampled_utterances(dataset, lengths, sample, seed=0):
    """IDs of whole length-sorted batches of the full list, about ``sample`` utterances."""
    batches = length_sorted_batches(list(lengths), BATCH)
    chosen = np.random.default_rng(seed).choice(len(batches), max(1, sample // BATCH),
                                                replace=False)
    return [dataset.data_ids[i] for b in chosen for i in batches[b]]


def padding_share(lengths):
    """Padded samples / audio samples of the full length-sorted plan."""
    padded = sum(len(batch) * max(lengths[i] for i in batch)
                 for batch in length_sorted_batches(list(lengths), BATCH))
    return padded / sum(lengths) - 1


def compare_speed(name, embed, dataset, lengths, sample):
    ids = sampled_utterances(dataset, lengths, sample)
    audio = sum(int(dataset.data[utt]["stop"]) for utt in ids) / SAMPLE_RATE
    results = {}
    for batching in ("equal_length", "length_sorted"):
        start = time.perf_counter()
        embeddings = compute_embeddings(embed, dataset, BATCH, ids=ids, batching=batching)
        results[batching] = embeddings, time.perf_counter() - start
    (alone, alone_s), (padded, padded_s) = results["equal_length"], results["length_sorted"]
    distance = max(1 - torch.nn.functional.cosine_similarity(alone[u], padded[u], dim=0).item()
                   for u in ids)
    print(f"{name}, {len(ids)} of {len(lengths)} utterances ({audio / 60:.1f} min): "
          f"equal_length {len(ids) / alone_s:.2f} utt/s, RTF {alone_s / audio:.4f}; "
          f"length_sorted {len(ids) / padded_s:.2f} utt/s, RTF {padded_s / audio:.4f}; "
          f"{alone_s / padded_s:.2f}x; largest cosine distance {distance:.1e}")
    return alone_s / padded_s


def compare_eer(run_folder, work):
    """EERs of the run's checkpoint on the demo trial lists, embedded each way."""
    argv = [os.path.join(ROOT, "hparams", "dann_fbank.yaml"), f"--data_folder={DEMO}",
            f"--output_folder={run_folder}"]
    brain, hparams, condition, data = prepare_experiment(argv)
    checkpoint = brain.checkpointer.recover_if_possible()
    brain.modules.eval()
    eers = {}
    for batching in ("equal_length", "length_sorted"):
        verification.compute_embeddings = functools.partial(compute_embeddings,
                                                            batching=batching)
        folder = os.path.join(work, batching)
        os.makedirs(folder)
        results = verification.verify(brain.embed, dict(hparams, output_folder=folder),
                                      condition, data["eval"], data["training_utterances"],
                                      brain.device, os.path.basename(checkpoint.path))
        eers[batching] = {system: metrics["eer"] for system, metrics in results.items()}
    verification.compute_embeddings = compute_embeddings
    for system in eers["equal_length"]:
        alone, padded = eers["equal_length"][system], eers["length_sorted"][system]
        print(f"demo {system} EER: equal_length {100 * alone:.2f} %, length_sorted "
              f"{100 * padded:.2f} %, change {100 * (padded - alone):+.2f} points")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=320, help="utterances timed per model")
    parser.add_argument("--base_plus_sample", type=int, default=0,
                        help="utterances timed with a wavlm-base-plus-size model (0: none)")
    parser.add_argument("--run_folder", help="a demo run of dann_fbank.yaml, for the EERs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(machine())
    dataset, lengths = synthetic_list(VOXCELEB1_TEST_UTTERANCES)
    print(f"length-sorted batches of {BATCH}: padding {100 * padding_share(lengths):.2f} % "
          "of the audio")
    with tempfile.TemporaryDirectory() as work:
        models = {"fbank": ("dann_fbank.yaml", [], args.sample),
                  "tiny WavLM": ("dann_wavlm.yaml", tiny_wavlm(work), args.sample)}
        if args.base_plus_sample:
            models["wavlm-base-plus size"] = (
                "dann_wavlm.yaml", save_ssl(os.path.join(work, "base_plus"), "wavlm-base-plus")
                + [f"--ssl_cache={work}/hub"], args.base_plus_sample)
        ratios = []
        for name, (hparams_file, options, sample) in models.items():
            brain, _, _ = build(hparams_file, work, name.replace(" ", "_"), *options)
            brain.modules.eval()
            ratio = compare_speed(name, brain.embed, dataset, lengths, sample)
            ratios.append(f"{name} {ratio:.2f}x")
        if args.run_folder:
            compare_eer(args.run_folder, work)
    print("length_sorted / equal_length, utterances per second: " + ", ".join(ratios))


if __name__ == "__main__":
    main()
