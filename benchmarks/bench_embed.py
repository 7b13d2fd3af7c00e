"""Embedding extraction for evaluation: batched against one utterance at a time.

For each model (``dann_fbank.yaml``, and ``dann_wavlm.yaml`` with a tiny
randomly initialised WavLM), built as ``train_dann.py`` builds it and in
evaluation mode, the demo corpus's 120 evaluation utterances are embedded

* by :func:`local.embedding.compute_embeddings` (what evaluation runs: each
  distinct utterance once, batches of equal length only, ``no_grad``);
* by a naive loop, one utterance at a time, ``no_grad``;
* by batches of 16 neighbours in length order, padded to the longest
  (not what the recipe does: measured to show what padding costs in
  exactness).

The demo's utterances all differ in length, so equal-length batches hold one
utterance each there. The same comparison therefore also runs on the demo's
evaluation rows cut to their first 0.7 s, where all lengths are equal (as in
corpora cut into fixed segments). Every method reads the audio the same way;
times are wall times with one torch thread, and utterances per second are
compared. Embeddings are compared with those of the loop (cosine distance).

Run from the repository root (about 1 minute on 2 busy CPU cores)::

    .venv/bin/python benchmarks/bench_embed.py

The last line prints the speed ratios against the loop.
"""

import argparse
import tempfile
import time

import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataset import DynamicItemDataset

from common import build, machine, tiny_wavlm
from local.data.dataio import add_whole_pipeline
from local.embedding import compute_embeddings

MODELS = {"fbank": ("dann_fbank.yaml", []), "tiny WavLM": ("dann_wavlm.yaml", None)}
BATCH = 16
CUT_SAMPLES = 11200  # 0.7 s at 16 kHz; the demo's shortest row is 0.74 s


@torch.no_grad()
def one_at_a_time(embed, dataset):
    """The naive loop: each utterance alone."""
    embeddings = {}
    for item in dataset:
        embeddings[item["id"]] = embed(item["sig"].unsqueeze(0), torch.ones(1))[0, 0]
    return embeddings


@torch.no_grad()
def padded(embed, dataset):
    """Batches of ``BATCH`` length-sorted neighbours, padded to their longest."""
    items = sorted(dataset, key=lambda item: len(item["sig"]))
    embeddings = {}
    for start in range(0, len(items), BATCH):
        batch = PaddedBatch(items[start:start + BATCH])
        vectors = embed(batch.sig.data, batch.sig.lengths)[:, 0]
        embeddings.update(zip(batch.id, vectors))
    return embeddings


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def largest_cosine_distance(embeddings, reference):
    return max(1 - torch.nn.functional.cosine_similarity(embeddings[utt], vector, dim=0).item()
               for utt, vector in reference.items())


def evaluation_sets(data):
    """The demo's evaluation utterances, whole and cut to their first 0.7 s."""
    rows = {}
    for dataset in data["eval"].values():
        rows.update(dataset.data)
    whole = DynamicItemDataset(rows)
    add_whole_pipeline(whole)
    cut = DynamicItemDataset({utt: dict(row, stop=int(row["start"]) + CUT_SAMPLES
                                        * int(row["sample_rate"]) // 16000)
                              for utt, row in rows.items()})
    add_whole_pipeline(cut)
    for dataset in (whole, cut):
        dataset.set_output_keys(["id", "sig"])
    return {"whole utterances": whole, "first 0.7 s": cut}


def main(argv=None):
    """Run the measurements; the script takes no options."""
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)  # --help
    torch.set_num_threads(1)
    print(machine())
    ratios = []
    with tempfile.TemporaryDirectory() as work:
        for model, (hparams_file, options) in MODELS.items():
            options = tiny_wavlm(work) if options is None else options
            brain, _, data = build(hparams_file, work, model.replace(" ", "_"), *options)
            brain.modules.eval()
            for name, dataset in evaluation_sets(data).items():
                reference, loop_time = timed(one_at_a_time, brain.embed, dataset)
                ours, ours_time = timed(compute_embeddings, brain.embed, dataset, BATCH)
                padded_embeddings, padded_time = timed(padded, brain.embed, dataset)
                count = len(dataset)
                print(f"{model}, {count} utterances, {name}: one at a time {count / loop_time:.1f}"
                      f" utt/s; compute_embeddings (equal lengths) {count / ours_time:.1f} utt/s, "
                      f"{loop_time / ours_time:.2f}x, cosine distance to the loop's "
                      f"{largest_cosine_distance(ours, reference):.1e}; padded batches of {BATCH} "
                      f"{count / padded_time:.1f} utt/s, {loop_time / padded_time:.2f}x, "
                      f"cosine distance up to "
                      f"{largest_cosine_distance(padded_embeddings, reference):.1e}")
                ratios.append(f"{model} / {name} {loop_time / ours_time:.2f}x "
                              f"(padded {loop_time / padded_time:.2f}x)")
    print("compute_embeddings / one at a time, utterances per second: " + ", ".join(ratios))


if __name__ == "__main__":
    main()
