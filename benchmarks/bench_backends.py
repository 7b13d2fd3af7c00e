"""The back-ends at the size of real training sets, on simulated embeddings.

Every PLDA back-end trains on up to ``backend_max_utterances`` source and as
many target training embeddings (``hparams/common.yaml``: 20,000), drawn at
random when a run has more. A real source or target set has 10^5 to 10^6
utterances, so this measures what the cap costs and what raising it would
cost. For each cap given (``--caps``, default the 20,000 of common.yaml and
10^5), in a fresh subprocess:

- the back-ends' shared training, as a run does it: the source PLDA (LDA to
  ``lda_dim``, then PLDA) and the target's pseudo-speakers (one clustering
  with the pseudo-label settings of common.yaml);
- then each back-end of ``local.evaluation.backends.BACKENDS`` in turn, built
  by ``verification.build_backends``, with what it adds to those;
- for each, scoring 10^6 trials of held-out target speakers, raw and with
  AS-norm against common.yaml's cohort, and the EER of both.

A step or back-end that the simulated sets cannot train (at small caps:
fewer than 3 source speakers, too few target utterances to cluster, too few
pseudo-speakers; :class:`local.evaluation.plda.Unscorable`) is printed with
the reason instead of its figures, as a run's report names it.

Wall time, CPU time and the growth of the peak resident memory
(:mod:`resident`) are given for each step. The embeddings are those of
``bench_pseudo_labels.simulate`` (192 dimensions, 100 utterances per speaker
on average, heavy-tailed, sessions, near-duplicate speakers, a domain offset),
the source and the target drawn with different seeds, so with different
offsets and session subspaces: two domains. The trial list's utterances are
20,000 of other target speakers than those the back-ends train on; half of
its trials are same-speaker pairs.

Run from the repository root (about 10 minutes on 2 CPU cores)::

    .venv/bin/python benchmarks/bench_backends.py [--caps 20000 100000] [--seed 0] [--set_size N]

Without ``--set_size`` each cap is a simulated set of its own size; with it,
source and target sets of N utterances are simulated and each cap is a random
draw from them, as a run draws: from 10^6 utterances of 10^4 speakers, 20,000
hold about 2 per speaker.

A cap of 10^6 needs ``pseudo_neighbour_search: ivf`` (``--search ivf``):
the exact neighbour search takes over half an hour there
(``bench_pseudo_labels.py``).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from bench_pseudo_labels import random_pairs, simulate
from resident import peak_resident_mib, reset_peak_resident

ROOT = os.path.dirname(os.path.abspath(os.path.dirname(__file__)))
EVALUATION_UTTERANCES = 20_000
TRIALS = 10**6


def split_speakers(speakers, held_out, rng):
    """Indices of the utterances of whole speakers, about ``held_out`` of them, and of the rest."""
    order = rng.permutation(np.unique(speakers))
    counts = np.bincount(speakers)[order]
    chosen = order[:np.searchsorted(np.cumsum(counts), held_out) + 1]
    mask = np.isin(speakers, chosen)
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def trial_list(speakers, rng, count=TRIALS):
    """About ``count`` trials between utterances, half of them same-speaker pairs, none of one
    utterance with itself."""
    import pandas as pd

    first, same, other = random_pairs(speakers, count // 2, rng)
    enrol, test = np.concatenate([first, first]), np.concatenate([same, other])
    keep = np.concatenate([first != same, speakers[first] != speakers[other]])
    return pd.DataFrame({"enrol": enrol[keep].astype(str), "test": test[keep].astype(str),
                         "label": (speakers[enrol] == speakers[test])[keep].astype(int)})


class Step:
    """Wall time, CPU time and peak resident growth of the code in a ``with`` block."""

    def __enter__(self):
        reset_peak_resident()
        self.base = peak_resident_mib()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.grown_gib = (peak_resident_mib() - self.base) / 1024

    def row(self, **values):
        """The step's figures, with ``values``."""
        return {"seconds": self.wall, "cpu": self.cpu, "grown_gib": self.grown_gib, **values}


def measure(cap, seed, search, set_size=None, evaluation=EVALUATION_UTTERANCES, trials=TRIALS):
    """Train and score every back-end with ``backend_max_utterances`` at ``cap``; rows of figures.

    ``set_size`` simulates training sets of that many utterances, of which
    the back-ends train on a random draw of ``cap``, as a run's are; without
    it, sets of ``cap`` utterances, all of them trained on. ``evaluation``
    held-out target utterances make a list of about ``trials`` trials. A row
    that the sets cannot train holds only ``unscored``, the reason.
    """
    import torch

    from local.evaluation.backends import BACKENDS, TrainingEmbeddings
    from local.evaluation.metrics import eer
    from local.evaluation.plda import Unscorable
    from local.evaluation.scoring import score_trials
    from local.evaluation.verification import build_backends
    from local.model.pseudo_labels import PseudoLabels
    from local.settings import plain_values

    common = plain_values(os.path.join(ROOT, "hparams", "common.yaml"))
    rng = np.random.default_rng(seed)
    size = set_size or cap
    source, source_speakers = simulate(size, 2 * seed)
    target, target_speakers = simulate(size + evaluation, 2 * seed + 1)
    held_out, training = split_speakers(target_speakers, evaluation, rng)
    if len(training) < common["cohort_top_k"]:
        sys.exit(f"cap {cap}: the simulated target set keeps {len(training)} training "
                 f"utterances beside the {len(held_out)} held out, fewer than the "
                 f"cohort_top_k ({common['cohort_top_k']}) of AS-norm's cohort; measure "
                 "caps of 1000 or more")
    cohort = training[rng.permutation(len(training))[:common["cohort_size"]]]
    if set_size:
        drawn = rng.permutation(len(source))[:cap]
        source, source_speakers = source[drawn], source_speakers[drawn]
        training = training[rng.permutation(len(training))[:cap]]
    tensors = {"cohort": (torch.from_numpy(target[cohort]), None),
               "source": (torch.from_numpy(source), source_speakers.astype(str).tolist()),
               "target": (torch.from_numpy(target[training]), None)}
    pseudo_labels = PseudoLabels(
        offset=0, neighbours=common["pseudo_neighbours"], search=search,
        trials=common["pseudo_infomap_trials"], min_silhouette=common["pseudo_min_silhouette"],
        whiten=common["pseudo_whiten"], whiten_ridge=common["whiten_ridge"])
    hparams = {key: common[key] for key in
               ("lda_dim", "whiten_ridge", "plda_within_scale", "plda_between_scale")}
    data = TrainingEmbeddings({**hparams, "seed": seed, "pseudo_labels": pseudo_labels},
                              tensors.get)
    embeddings = {str(i): torch.from_numpy(target[utt]) for i, utt in enumerate(held_out)}
    trials = trial_list(target_speakers[held_out], rng, trials)
    del source, target

    rows = {}
    try:
        with Step() as step:
            plda = data.source_plda
        rows["source PLDA (shared)"] = step.row(utterances=len(source_speakers),
                                                speakers=len(np.unique(source_speakers)),
                                                lda=len(plda.lda))
    except Unscorable as reason:
        rows["source PLDA (shared)"] = {"unscored": str(reason)}
    try:
        with Step() as step:
            kept, pseudo = data.pseudo_speakers
        true_count = len(np.unique(target_speakers[training]))
        rows["pseudo-speakers (shared)"] = step.row(utterances=len(training), speakers=true_count,
                                                    found=len(set(pseudo)), kept=len(kept))
    except Unscorable as reason:
        rows["pseudo-speakers (shared)"] = {"unscored": str(reason)}
    for name in BACKENDS:
        with Step() as step:
            built, unscored = build_backends([name], data)
        if name in unscored:
            rows[name] = {"unscored": unscored[name]}
            continue
        backend, figures = built[name], step.row()
        space = backend.adapt(embeddings)
        for norm, cohort_vectors in (("raw", None), ("asnorm", backend.cohort)):
            with Step() as scoring:
                scores = score_trials(space, trials, cohort=cohort_vectors,
                                      top_k=common["cohort_top_k"], form=backend.form)
            figures[f"{norm}_seconds"] = scoring.wall
            figures[f"{norm}_eer"] = 100 * eer(scores, trials["label"].to_numpy())
        rows[name] = figures
    return {"trials": len(trials), "evaluation": evaluation, "rows": rows}


def run_child(cap, seed, search, set_size=None):
    """:func:`measure` in a fresh subprocess, so that its memory is its own."""
    size = ["--set_size", str(set_size)] if set_size else []
    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(cap),
                             "--seed", str(seed), "--search", search, *size],
                            capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    """Print each cap's steps and back-ends, then the ratios between the first and last cap."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--caps", type=int, nargs="+", default=[20_000, 100_000],
                        help="backend_max_utterances values to measure")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated sets")
    parser.add_argument("--search", default="exact", help="pseudo_neighbour_search")
    parser.add_argument("--set_size", type=int,
                        help="simulate source and target training sets of this many "
                             "utterances and draw each cap from them at random, as a run "
                             "does (default: sets of the cap's size)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    if args.child:
        print(json.dumps(measure(args.child, args.seed, args.search, args.set_size)))
        return
    from benchmarks.common import machine

    print(machine())
    results = {}
    for cap in args.caps:
        results[cap] = result = run_child(cap, args.seed, args.search, args.set_size)
        drawn = f", drawn from {args.set_size} a side" if args.set_size else ""
        print(f"\nbackend_max_utterances {cap}{drawn}: {result['trials']} trials of "
              f"{result['evaluation']} held-out target utterances")
        for name, row in result["rows"].items():
            if "unscored" in row:
                print(f"  {name:26s} not trained: {row['unscored']}")
                continue
            line = (f"  {name:26s} {row['seconds']:7.1f} s wall {row['cpu']:7.1f} s CPU "
                    f"+{row['grown_gib']:5.2f} GiB")
            if "raw_eer" in row:
                line += (f"  scoring {row['raw_seconds']:5.1f} s, AS-norm {row['asnorm_seconds']:5.1f} s"
                         f"  EER {row['raw_eer']:5.2f} %, AS-norm {row['asnorm_eer']:5.2f} %")
            else:
                line += "  " + ", ".join(f"{key} {row[key]}" for key in
                                         ("utterances", "speakers", "lda", "found", "kept") if key in row)
            print(line)
    if len(args.caps) > 1:
        low, high = (results[cap]["rows"] for cap in (args.caps[0], args.caps[-1]))
        # Only the rows trained at both caps.
        ratios = [f"{name} EER {high[name]['raw_eer'] / low[name]['raw_eer']:.2f} x"
                  for name in low if "raw_eer" in low[name] and "raw_eer" in high[name]]
        low, high = low["pseudo-speakers (shared)"], high["pseudo-speakers (shared)"]
        if "seconds" in low and "seconds" in high:
            ratios.append(f"clustering time {high['seconds'] / low['seconds']:.1f} x")
        print(f"\ncap {args.caps[-1]} against {args.caps[0]}: " + "; ".join(ratios))


if __name__ == "__main__":
    main()
