"""Target pseudo-labelling at the size of real target sets, on simulated embeddings.

One clustering of the target training set (``PseudoLabels.cluster`` with the
settings of ``hparams/common.yaml``) at 10^3, 10^4 and 10^5 utterances, with
100 utterances per speaker on average (10, 100 and 1,000 speakers;
``--utterances_per_speaker`` sets another mean), beside the
clustering of git revision ``--before`` (default 4a17c11: Ward linkage on
dense distances, the eigengap of a dense Laplacian, between
``pseudo_min_speakers`` 12 and ``pseudo_max_speakers`` 48), run on the same
embeddings with its own defaults and with its upper bound at twice the true
count; it is skipped where its dense matrices would not fit in memory.
``--searches ivf`` adds the inverted-file neighbour search
(``pseudo_neighbour_search: ivf``), with the share of the exact neighbours it
finds; above 2 x 10^5 utterances (``--sizes 1000000``) only that search
runs, the exact one taking over half an hour. ``--infomap_trials`` measures
other ``pseudo_infomap_trials``; each combination of the values given runs.

The embeddings are not well-separated Gaussians but have what makes real target
sets hard:

- utterances per speaker drawn from a log-normal (sigma 1): from a handful
  to several hundred, as in VoxCeleb and CN-Celeb;
- one offset shared by every embedding (the domain);
- sessions: each speaker's utterances come from ``1 + Poisson(count / 15)``
  sessions, each displaced in a 16-dimensional nuisance subspace, so that a
  speaker's utterances form sub-clusters;
- near-duplicate speakers: 10 % of the speakers are mixtures of another
  speaker's centre (weight 0.8) and their own (0.6).

The difficulty printed is the cosine EER of random same- and
different-speaker pairs of the centred embeddings, and of the same pairs in
the space the clustering searches (whitened by common.yaml's settings).
Each measurement runs in a fresh subprocess, which reports its wall time,
CPU time and peak resident memory (``VmHWM``, :mod:`resident`: the
process's own, with the peak before the clustering, that of the
interpreter, torch and the simulated embeddings).

Run from the repository root (about 15 minutes on 2 CPU cores)::

    .venv/bin/python benchmarks/bench_pseudo_labels.py [--sizes 1000 10000 100000] [--before 4a17c11] \
        [--neighbours 10 20] [--searches exact ivf] [--infomap_trials 1 10] [--simulations 0 1 2] \
        [--utterances_per_speaker 100]
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

# The subprocess imports this module beside the package it measures, so it
# imports nothing of the repository at its top.
ROOT = os.path.dirname(os.path.abspath(os.path.dirname(__file__)))

DIM = 192
UTTERANCES_PER_SPEAKER = 100
SESSION_RANK, SESSION_VARIANCE, NOISE_VARIANCE = 16, 1.0, 2.0
NEAR_DUPLICATES = 0.1
# The former clustering holds several float64 n x n matrices: skipped above this.
BEFORE_LIMIT = 20_000
# The exact neighbour search takes over half an hour above this: only "ivf" runs there.
EXACT_LIMIT = 200_000
BEFORE = "4a17c11"

# Run in the subprocess: simulate, cluster with the code under ``root``, report.
CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(1, sys.argv[2])
import numpy as np, torch
from bench_pseudo_labels import simulate, scores
from resident import peak_resident_mib
from sklearn.metrics import normalized_mutual_info_score
size, method, seed = int(sys.argv[3]), json.loads(sys.argv[4]), int(sys.argv[5])
vectors, speakers = simulate(size, seed, int(sys.argv[6]))
embeddings = {str(i): torch.from_numpy(v) for i, v in enumerate(vectors)}
before = peak_resident_mib() / 1024
start, cpu = time.perf_counter(), time.process_time()
if method["name"] == "now":
    from local.model.pseudo_labels import PseudoLabels
    labels, _, summary = PseudoLabels(offset=0, **method["settings"]).cluster(embeddings)
else:
    from local.model.pseudo_labels import cluster_pseudo_speakers
    labels, _, summary = cluster_pseudo_speakers(embeddings, **method["settings"])
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu, "clusters": summary["clusters"],
                  "peak_gib": peak_resident_mib() / 1024,
                  "before_gib": before,
                  **scores(labels, speakers)}))
"""


def speaker_count(size, per_speaker=UTTERANCES_PER_SPEAKER):
    """Speakers of a simulated set of ``size`` utterances, ``per_speaker`` each on average."""
    return max(2, size // per_speaker)


def simulate(size, seed=0, per_speaker=UTTERANCES_PER_SPEAKER):
    """``size`` embeddings of ``size / per_speaker`` simulated speakers (module docstring).

    Arguments
    ---------
    size : int
        Utterances (about; each speaker has at least 2).
    seed : int
        Draw seed.
    per_speaker : int
        Utterances per speaker on average.

    Returns
    -------
    tuple
        ``(embeddings [n, DIM] float32, speaker of each [n])``.
    """
    rng = np.random.default_rng(seed)
    n_speakers = speaker_count(size, per_speaker)
    weights = rng.lognormal(0, 1.0, n_speakers)
    counts = np.maximum(2, np.round(weights / weights.sum() * size)).astype(int)
    centres = rng.normal(size=(n_speakers, DIM)) / np.sqrt(DIM)
    duplicates = int(NEAR_DUPLICATES * n_speakers)
    if duplicates:
        parents = rng.choice(n_speakers - duplicates, duplicates)
        centres[-duplicates:] = 0.8 * centres[parents] + 0.6 * centres[-duplicates:]
    nuisance = np.linalg.qr(rng.normal(size=(DIM, SESSION_RANK)))[0]
    offset = rng.normal(size=DIM)
    offset *= 2.0 / np.linalg.norm(offset)
    vectors, speakers = [], []
    for speaker, count in enumerate(counts):
        sessions = 1 + rng.poisson(count / 15)
        session = rng.normal(size=(sessions, SESSION_RANK)) @ nuisance.T
        session *= np.sqrt(SESSION_VARIANCE / SESSION_RANK)
        noise = rng.normal(size=(count, DIM)) * np.sqrt(NOISE_VARIANCE / DIM)
        vectors.append(centres[speaker] + session[rng.integers(0, sessions, count)] + noise)
        speakers += [speaker] * count
    return (np.concatenate(vectors) + offset).astype(np.float32), np.array(speakers)


def scores(labels, speakers):
    """How a clustering's kept utterances agree with the true speakers.

    Arguments
    ---------
    labels : dict
        ``{str(index): pseudo-speaker}`` of the kept utterances.
    speakers : numpy.ndarray
        True speaker of every utterance.

    Returns
    -------
    dict
        ``kept`` fraction; ``trained``: the pseudo-speakers among them;
        ``nmi`` over the kept utterances; ``purity``: the share of kept
        utterances in their cluster's most frequent speaker.
    """
    from sklearn.metrics import normalized_mutual_info_score

    kept = np.array([int(utt) for utt in labels], dtype=int)
    if len(kept) < 2:
        return {"kept": len(kept) / len(speakers), "trained": len(set(labels.values())),
                "nmi": float("nan"), "purity": float("nan")}
    clusters = np.array(list(labels.values()))
    truth = speakers[kept]
    pairs = np.unique(np.stack([clusters, truth], axis=1), axis=0, return_counts=True)
    majority = {}
    for (cluster, _), count in zip(*pairs):
        majority[cluster] = max(majority.get(cluster, 0), count)
    return {"kept": len(kept) / len(speakers), "trained": len(set(labels.values())),
            "nmi": float(normalized_mutual_info_score(truth, clusters)),
            "purity": sum(majority.values()) / len(kept)}


def clustering_view(vectors, whiten_ridge=None):
    """Simulated embeddings in :func:`local.model.pseudo_labels.clustering_space` (float64).

    Centred by default; with ``whiten_ridge``, whitened: the space the
    clustering's neighbours are searched in with common.yaml's settings.
    """
    import torch

    from local.model.pseudo_labels import clustering_space

    return clustering_space(torch.nn.functional.normalize(torch.from_numpy(vectors).double(),
                                                          dim=-1), whiten_ridge)


def random_pairs(speakers, pairs, rng):
    """``pairs`` random utterances, each with a random one of its speaker and a random other.

    Arguments
    ---------
    speakers : numpy.ndarray
        The speaker of each utterance.
    pairs : int
        How many.
    rng : numpy.random.Generator
        The draws.

    Returns
    -------
    tuple of numpy.ndarray
        ``(first, same, other)`` utterance indices; ``same`` may be ``first``
        itself and ``other`` of the same speaker: the caller drops those.
    """
    first = rng.integers(0, len(speakers), pairs)
    order = np.argsort(speakers, kind="stable")
    low = np.searchsorted(speakers[order], speakers[first], "left")
    high = np.searchsorted(speakers[order], speakers[first], "right")
    same = order[low + (rng.random(pairs) * (high - low)).astype(int)]
    return first, same, rng.integers(0, len(speakers), pairs)


def difficulty(units, speakers, pairs=200_000, seed=0):
    """Cosine EER (%) of random same- and different-speaker pairs of unit vectors."""
    from local.evaluation.metrics import eer

    first, same, other = random_pairs(speakers, pairs, np.random.default_rng(seed))
    targets = (units[first] * units[same]).sum(1)[first != same]
    nontargets = (units[first] * units[other]).sum(1)[speakers[first] != speakers[other]]
    return 100 * eer(np.concatenate([targets, nontargets]),
                     np.r_[np.ones(len(targets)), np.zeros(len(nontargets))])


def ivf_recall(space, neighbours):
    """Share of the exact neighbours (itself included) that the ``ivf`` search finds.

    In ``space``, the simulation's clustering space (:func:`clustering_view`),
    for ``neighbours`` (``pseudo_neighbours``).
    """
    from local.model.pseudo_labels import nearest_neighbours

    space = np.ascontiguousarray(space, dtype=np.float32)
    count = neighbours + 1
    _, exact = nearest_neighbours(space, count, "exact")
    _, approximate = nearest_neighbours(space, count, "ivf")
    return np.mean([len(np.intersect1d(a, b)) for a, b in zip(exact, approximate)]) / count


def former_code(folder, revision):
    """The package as of ``revision`` (its ``local/``), written under ``folder``."""
    files = subprocess.run(["git", "-C", ROOT, "ls-tree", "-r", "--name-only", revision, "local"],
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fout:
            fout.write(subprocess.run(["git", "-C", ROOT, "show", f"{revision}:{name}"],
                                      capture_output=True, check=True).stdout)
    return folder


def recipe_settings(common):
    """The ``PseudoLabels`` settings of ``common``, the values of hparams/common.yaml."""
    return {"neighbours": common["pseudo_neighbours"], "search": common["pseudo_neighbour_search"],
            "trials": common["pseudo_infomap_trials"],
            "min_silhouette": common["pseudo_min_silhouette"],
            "whiten": common["pseudo_whiten"], "whiten_ridge": common["whiten_ridge"]}


def measure(root, size, method, seed=0, per_speaker=UTTERANCES_PER_SPEAKER):
    """One clustering of simulation ``seed`` in a fresh subprocess; its report."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, root, os.path.join(ROOT, "benchmarks"), str(size),
         json.dumps(method), str(seed), str(per_speaker)], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    """Print one line per size and method, then the count ratio and the 10^6 estimate."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10**3, 10**4, 10**5])
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--neighbours", type=int, nargs="+",
                        help="pseudo_neighbours values to measure (default: common.yaml's)")
    parser.add_argument("--searches", nargs="+",
                        help="pseudo_neighbour_search values to measure (default: common.yaml's)")
    parser.add_argument("--infomap_trials", type=int, nargs="+",
                        help="pseudo_infomap_trials values to measure (default: common.yaml's)")
    parser.add_argument("--simulations", type=int, nargs="+", default=[0],
                        help="seeds of the simulated target sets, each measured at every size")
    parser.add_argument("--utterances_per_speaker", type=int, default=UTTERANCES_PER_SPEAKER,
                        help="their mean utterances per speaker (30 is the recorded voices' "
                             "target, 10 the demo's)")
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from benchmarks.common import machine
    from local.settings import plain_values

    common = plain_values(os.path.join(ROOT, "hparams", "common.yaml"))
    defaults = recipe_settings(common)
    # common.yaml's settings and every combination with the values asked, named
    # by what differs from common.yaml.
    names = {"neighbours": "neighbours {}", "search": "{} search", "trials": "{} trials"}
    asked = (args.neighbours, args.searches, args.infomap_trials)
    variants = []
    for values in itertools.product(*(dict.fromkeys([defaults[key]] + (given or []))
                                      for key, given in zip(names, asked))):
        settings = {**defaults, **dict(zip(names, values))}
        changed = [form.format(settings[key]) for key, form in names.items()
                   if settings[key] != defaults[key]]
        variants.append((", ".join(["now"] + changed), {"name": "now", "settings": settings}))
    print(machine())
    print(f"settings: {defaults}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        before_root = former_code(folder, args.before)
        for size in args.sizes:
            n_speakers = speaker_count(size, args.utterances_per_speaker)
            methods = [(name, ROOT, method) for name, method in variants
                       if size <= EXACT_LIMIT or method["settings"]["search"] != "exact"]
            if size <= BEFORE_LIMIT:
                former = {"min_silhouette": 0.1, "whiten_ridge": common["whiten_ridge"],
                          "count": "eigengap"}
                methods += [
                    (f"{args.before}, 12-48", before_root, {"name": "before", "settings": {
                        **former, "min_speakers": 12, "max_speakers": 48}}),
                    (f"{args.before}, 2-{2 * n_speakers}", before_root, {"name": "before", "settings": {
                        **former, "min_speakers": 2, "max_speakers": 2 * n_speakers}})]
            for simulation in args.simulations:
                vectors, speakers = simulate(size, simulation, args.utterances_per_speaker)
                searched = clustering_view(
                    vectors, defaults["whiten_ridge"] if defaults["whiten"] else None)
                print(f"\n{size} utterances, {n_speakers} speakers, simulation {simulation}, "
                      f"cosine EER {difficulty(clustering_view(vectors), speakers):.2f} % "
                      f"({difficulty(searched, speakers):.2f} % in the clustering's space)")
                if "ivf" in (args.searches or []) and size <= EXACT_LIMIT:
                    recall = ivf_recall(searched, defaults["neighbours"])
                    print(f"  ivf search: {100 * recall:.1f} % of the exact neighbours")
                del vectors, speakers, searched
                for name, root, method in methods:
                    result = measure(root, size, method, simulation, args.utterances_per_speaker)
                    rows.append((size, simulation, name, result))
                    print(f"  {name:30s} {result['seconds']:7.1f} s wall {result['cpu']:7.1f} s CPU "
                          f"{result['peak_gib']:5.2f} GiB peak ({result['before_gib']:.2f} before)  "
                          f"clusters {result['clusters']:5d} (true {n_speakers}, "
                          f"{result['trained']} train)  NMI {result['nmi']:.3f}  purity "
                          f"{result['purity']:.3f}  kept {result['kept']:.3f}")
    now_rows = sorted((size, r) for size, simulation, name, r in rows
                      if name == "now" and simulation == args.simulations[0])
    if not now_rows:
        return
    (small, first), (large, last) = now_rows[0], now_rows[-1]
    print(f"\nat {large}: clusters / true speakers "
          f"{last['clusters'] / speaker_count(large, args.utterances_per_speaker):.2f}")
    if large > small:
        # Memory is linear in the utterances; the exact neighbour search's time is quadratic.
        per_utterance = (last["peak_gib"] - first["peak_gib"]) / (large - small)
        print(f"10^6 utterances, extrapolated from {small} and {large}: "
              f"{first['peak_gib'] + per_utterance * (10**6 - small):.1f} GiB peak; "
              f"neighbour search about {(10**6 / large) ** 2:.0f} x its time at {large}")

if __name__ == "__main__":
    main()
