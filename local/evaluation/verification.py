"""Verification of a trained system on a condition's trial lists, and its report.

Each evaluation manifest's utterances are embedded once (cached next to the
checkpoint they came from, under a name that holds the checkpoint and a key of
the rows and audio files embedded), each trial list is scored by cosine similarity
and, with ``score_norm``, also S-norm or AS-norm normalised against a cohort of
impostor embeddings drawn from the source or the unlabelled target training
data. With ``backend_adaptation``, every list is scored again on embeddings
centred on (``mean``) or also whitened by (``whiten``) that cohort's
statistics, raw and normalised against the adapted cohort. With ``backend``,
every list is also scored by PLDA back-ends (:mod:`local.evaluation.plda`) trained on the
labelled source training embeddings: as trained (``plda``), adapted to the
unlabelled target training embeddings (``plda_adapted``), and trained on
source embeddings re-coloured to the target covariance (``coral_plda``); or
on the target's pseudo-speakers, found by clustering the unlabelled target
training embeddings as training does (``plda_target``), alone or pooled with
the source speakers (``plda_pooled``); each also normalised against the
cohort with ``score_norm``. No target speaker label is read. Every scored
list gets a score file and a per-condition table; one DET figure overlays
all of them. Used at the end of ``train_dann.py`` and by
``evaluate.py``.
"""

import os

import numpy as np
import pandas as pd
import torch
from speechbrain.utils.logger import get_logger

from local.data.manifest_io import read_enrolment, read_manifest, read_trials
from local.evaluation.backend import BACKEND_ADAPTATIONS, DomainAdaptation, coral
from local.evaluation.embed import compute_embeddings, content_key, embeddable_ids
from local.evaluation.metrics import VOXCELEB_DCF
from local.evaluation.plda import PLDABackend
from local.evaluation.report import plot_det, write_report
from local.evaluation.scoring import score_trials

logger = get_logger(__name__)

SCORE_NORMS = (None, "snorm", "asnorm")
COHORT_DOMAINS = ("source", "target")
BACKENDS = ("plda", "plda_adapted", "coral_plda", "plda_target", "plda_pooled")


def _check_number(hparams, key, kind=(int, float), minimum=0):
    value = hparams[key]
    if isinstance(value, bool) or not isinstance(value, kind) or not value >= minimum:
        noun = "an integer" if kind is int else "a number"
        raise ValueError(f"{key} must be {noun} >= {minimum}; got {value!r}")


def check_score_norm(hparams):
    """Fail early on a score-normalisation or back-end setting the evaluation could not use.

    Arguments
    ---------
    hparams : dict
        ``score_norm``, ``cohort_domain``, ``cohort_size``, ``cohort_top_k``,
        ``backend_adaptation``, ``whiten_ridge``, ``backend``, ``lda_dim``,
        ``plda_within_scale``, ``plda_between_scale``, ``backend_max_utterances``.
    """
    if hparams["score_norm"] not in SCORE_NORMS:
        raise ValueError(
            f"score_norm must be null, snorm or asnorm; got {hparams['score_norm']!r}")
    if hparams["cohort_domain"] not in COHORT_DOMAINS:
        raise ValueError(
            f"cohort_domain must be source or target; got {hparams['cohort_domain']!r}")
    top_k, size = hparams["cohort_top_k"], hparams["cohort_size"]
    if hparams["score_norm"] == "asnorm" and not 2 <= top_k <= size:
        raise ValueError(
            f"cohort_top_k ({top_k}) must be between 2 and cohort_size ({size})")
    if hparams["backend_adaptation"] not in BACKEND_ADAPTATIONS:
        raise ValueError("backend_adaptation must be null, mean or whiten; "
                         f"got {hparams['backend_adaptation']!r}")
    _check_number(hparams, "whiten_ridge")
    backends = hparams["backend"]
    if not isinstance(backends, list) or not set(backends) <= set(BACKENDS):
        raise ValueError(f"backend must be a list of {', '.join(BACKENDS)} (or []); "
                         f"got {backends!r}")
    for key in ("plda_within_scale", "plda_between_scale"):
        _check_number(hparams, key)
    for key in ("lda_dim", "backend_max_utterances"):
        _check_number(hparams, key, int, minimum=1)


def cohort_subset(ids, size, seed):
    """``size`` of ``ids`` drawn with ``seed`` (all if fewer).

    Arguments
    ---------
    ids : list of str
        The utterances of the cohort's training manifest that can be embedded.
    size : int
        Cohort size.
    seed : int
        Draw seed.

    Returns
    -------
    list of str
        Sorted IDs.

    Example
    -------
    >>> ids = [f"u{i}" for i in range(10)]
    >>> len(cohort_subset(ids, 4, seed=0)), cohort_subset(ids, 20, seed=0)[:2]
    (4, ['u0', 'u1'])
    """
    ids = sorted(ids)
    if size >= len(ids):
        return ids
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(ids, size=size, replace=False).tolist())


def backend_forms(hparams, source, labels, target):
    """The score forms of the PLDA back-ends that ``hparams["backend"]`` lists.

    Arguments
    ---------
    hparams : dict
        ``backend``, ``lda_dim``, ``plda_within_scale``, ``plda_between_scale``,
        ``whiten_ridge``.
    source : torch.Tensor
        ``[n, dim]`` source training embeddings.
    labels : list of str
        Their speakers.
    target : torch.Tensor
        ``[m, dim]`` unlabelled target training embeddings.

    Returns
    -------
    dict
        ``{"_<backend>": score form}`` in the order of ``BACKENDS``.
    """
    wanted = hparams["backend"]
    forms = {}
    if "plda" in wanted or "plda_adapted" in wanted:
        plda = PLDABackend(source, labels, hparams["lda_dim"])
        print(f"PLDA back-end: {len(labels)} source utterances, LDA to {len(plda.lda)} "
              "dimensions")
        if "plda" in wanted:
            forms["_plda"] = plda.score_form
        if "plda_adapted" in wanted:
            forms["_plda_adapted"] = plda.adapted(
                target, hparams["plda_within_scale"], hparams["plda_between_scale"]).score_form
    if "coral_plda" in wanted:
        recoloured = coral(source, target, hparams["whiten_ridge"])
        forms["_coral_plda"] = PLDABackend(recoloured, labels, hparams["lda_dim"]).score_form
    on_pseudo_speakers = [name for name in ("plda_target", "plda_pooled") if name in wanted]
    if on_pseudo_speakers:
        forms.update(pseudo_speaker_forms(hparams, on_pseudo_speakers, source, labels, target))
    return forms


def pseudo_speaker_forms(hparams, wanted, source, labels, target):
    """The score forms of the PLDA back-ends on the target's pseudo-speakers.

    How many utterances a clustering keeps is known only once it has run: a
    target set too small to cluster, or for a PLDA of its own, is said in a
    warning and its systems left out, not a failed run.

    Arguments
    ---------
    hparams : dict
        ``lda_dim``, ``seed`` and ``pseudo_labels``.
    wanted : list of str
        ``plda_target`` and/or ``plda_pooled``.
    source, labels, target : torch.Tensor, list, torch.Tensor
        As for :func:`backend_forms`.

    Returns
    -------
    dict
        ``{"_<backend>": score form}``.
    """
    neighbours = hparams["pseudo_labels"].settings["neighbours"]
    if len(target) <= neighbours:
        logger.warning("%s not scored: the target's %d training utterances are too few to "
                       "cluster with pseudo_neighbours %d", " and ".join(wanted), len(target),
                       neighbours)
        return {}
    kept, speakers = target_pseudo_speakers(hparams, target)
    forms = {}
    spare = len(kept) - len(set(speakers))
    if "plda_target" in wanted and spare <= target.shape[1]:
        logger.warning(
            "plda_target not scored: %d target utterances of %d pseudo-speakers leave %d "
            "within-speaker degrees of freedom, too few for the %d dimensions of the "
            "embeddings; plda_pooled adds the source speakers' utterances",
            len(kept), len(set(speakers)), spare, target.shape[1])
    elif "plda_target" in wanted:
        forms["_plda_target"] = PLDABackend(target[kept], speakers, hparams["lda_dim"]).score_form
    if "plda_pooled" in wanted:
        forms["_plda_pooled"] = PLDABackend(torch.cat([source, target[kept]]),
                                            list(labels) + speakers,
                                            hparams["lda_dim"]).score_form
    return forms


def target_pseudo_speakers(hparams, target):
    """The unlabelled target embeddings' pseudo-speakers, found as training finds them.

    Arguments
    ---------
    hparams : dict
        ``pseudo_labels`` (:class:`local.model.pseudo_labels.PseudoLabels`,
        whose clustering settings are used) and ``seed``.
    target : torch.Tensor
        ``[m, dim]`` target training embeddings.

    Returns
    -------
    tuple
        ``(kept, speakers)``: the indices of the embeddings that keep a
        pseudo-speaker, and its name (``pseudo<k>``, no source speaker's) for each.
    """
    labels, _, summary, _ = hparams["pseudo_labels"].cluster(
        {str(i): vector for i, vector in enumerate(target)}, seed=hparams["seed"])
    kept = [int(i) for i in labels]
    print(f"Target pseudo-speakers for the back-end: {summary['clusters']} clusters, "
          f"{len(kept)} of {len(target)} utterances kept")
    return kept, [f"pseudo{labels[str(i)]}" for i in kept]


def verify(embed, hparams, condition, eval_datasets, training, device, checkpoint):
    """Embed, score and report every trial list of a condition.

    Arguments
    ---------
    embed : callable
        ``embed(wavs, wav_lens) -> [batch, 1, dim]``, in evaluation mode.
    hparams : dict
        Model hparams: ``output_folder``, ``eval_batch_size``,
        ``min_embed_seconds``, ``max_embed_seconds``, ``score_norm``,
        ``cohort_domain``, ``cohort_size``, ``cohort_top_k``,
        ``backend_adaptation``, ``whiten_ridge``, ``backend``, ``lda_dim``,
        ``plda_within_scale``, ``plda_between_scale``,
        ``backend_max_utterances``, ``seed``, and ``pseudo_labels`` for the
        back-ends on target pseudo-speakers.
    condition : dict
        Condition hparams: ``evaluation`` (``{name: {manifest, trials[,
        enrolment, min_dcf]}}``), where ``min_dcf`` lists the ``[p_target,
        c_miss, c_fa]`` settings of that trial list (default VoxCeleb's two
        operating points; SdSV's is ``[[0.01, 10, 1]]``).
    eval_datasets : dict
        Whole-utterance datasets keyed by manifest path.
    training : dict
        ``{"source": ..., "target": ...}``, whole-utterance datasets of the
        training manifests: the cohort is drawn from ``cohort_domain``'s
        (with ``score_norm`` or ``backend_adaptation``), the PLDA back-ends
        are trained on up to ``backend_max_utterances`` of each (the source's
        with their ``spk_id``; the target's unlabelled).
    device : str
        Where to embed.
    checkpoint : str
        Name of the checkpoint the model came from; the embedding caches
        carry it and the :func:`~local.evaluation.embed.content_key` of what
        they embed, so that neither a retrained model nor changed rows or
        audio reuse them (the caches of before are kept).

    Returns
    -------
    dict
        ``{system: {"eer": ..., "min_dcf_...": ...}}``, a system per trial list
        (``<name>``), with ``score_norm`` per normalised list
        (``<name>_<score_norm>``), and with ``backend_adaptation`` per
        adapted list (``<name>_<backend_adaptation>`` and
        ``<name>_<backend_adaptation>_<score_norm>``), and per back-end
        (``<name>_<backend>`` and ``<name>_<backend>_<score_norm>``).
    """
    folder = hparams["output_folder"]
    report_folder = os.path.join(folder, "verification")

    limits = (hparams["min_embed_seconds"], hparams["max_embed_seconds"])

    def embedded(name, dataset, ids=None):
        key = content_key(dataset, ids)
        cache = os.path.join(folder, f"embeddings_{name}_{checkpoint}_{key}.pt")
        return compute_embeddings(embed, dataset, hparams["eval_batch_size"], device,
                                  cache_path=cache, ids=ids, limits=limits)

    # A manifest's cache is named after the first trial list that uses it:
    # manifests of different corpora may share a file name (eval.csv).
    cache_names = {}
    for name, spec in condition["evaluation"].items():
        cache_names.setdefault(spec["manifest"], name)
    embeddings = {manifest: embedded(cache_names[manifest], dataset)
                  for manifest, dataset in eval_datasets.items()}
    score_norm, adaptation = hparams["score_norm"], hparams["backend_adaptation"]
    cohort = None
    if score_norm or adaptation:
        domain = hparams["cohort_domain"]
        _, cohort = embedded_subset(embedded, f"cohort_{domain}", training[domain],
                                    hparams["cohort_size"], hparams["seed"], limits)
    forms = {}
    if hparams["backend"]:
        size = hparams["backend_max_utterances"]
        source_ids, source = embedded_subset(embedded, "backend_source", training["source"],
                                             size, hparams["seed"], limits)
        _, target = embedded_subset(embedded, "backend_target", training["target"], size,
                                    hparams["seed"], limits)
        labels = [training["source"].data[utt]["spk_id"] for utt in source_ids]
        forms = backend_forms(hparams, source, labels, target)
    top_k = hparams["cohort_top_k"] if score_norm == "asnorm" else None
    # Each variant of the embeddings: (suffix of its systems, embeddings by
    # manifest, cohort in the same space).
    variants = [("", embeddings, cohort)]
    if adaptation:
        adapt = DomainAdaptation(cohort, adaptation == "whiten", hparams["whiten_ridge"])
        variants.append((f"_{adaptation}",
                         {manifest: adapt.adapt_embeddings(vectors)
                          for manifest, vectors in embeddings.items()},
                         adapt(cohort)))

    results, curves = {}, {}
    for name, spec in condition["evaluation"].items():
        trials = read_trials(spec["trials"])
        manifest = read_manifest(spec["manifest"])
        models, table = read_enrolment(spec["enrolment"]) if spec.get("enrolment") else ({}, None)
        dcf = [tuple(setting) for setting in spec.get("min_dcf", VOXCELEB_DCF)]
        systems = {}
        for suffix, variant, variant_cohort in variants:
            vectors = variant[spec["manifest"]]
            systems[name + suffix] = score_trials(vectors, trials, models)
            if score_norm:
                systems[f"{name}{suffix}_{score_norm}"] = score_trials(
                    vectors, trials, models, variant_cohort, top_k)
        for suffix, form in forms.items():
            vectors = embeddings[spec["manifest"]]
            systems[name + suffix] = score_trials(vectors, trials, models, form=form)
            if score_norm:
                systems[f"{name}{suffix}_{score_norm}"] = score_trials(
                    vectors, trials, models, cohort, top_k, form)
        for system, scores in systems.items():
            results[system] = write_report(system, trials, scores, manifest, report_folder,
                                           dcf, table)
            curves[system] = (scores, trials["label"].to_numpy())
    plot_det(curves, os.path.join(report_folder, "det.png"))
    summary = summary_table(results)
    summary.to_csv(os.path.join(report_folder, "summary.csv"), index=False)
    print(f"Verification ({condition['condition']}):\n{summary.to_string(index=False)}")
    return results


def embedded_subset(embedded, name, dataset, size, seed, limits):
    """Embeddings ``[n, dim]`` of :func:`cohort_subset`'s draw, cached as ``<name><n>``.

    The draw is among the utterances within ``limits``: a training manifest
    may hold utterances too short to embed whole, which its crops repeat.

    Arguments
    ---------
    embedded : callable
        ``embedded(cache name, dataset, ids) -> {utterance ID: tensor}``.
    name : str
        Cache name prefix.
    dataset : DynamicItemDataset
        Whole utterances.
    size : int
        The most utterances drawn.
    seed : int
        Draw seed.
    limits : tuple
        ``(min_embed_seconds, max_embed_seconds)``.

    Returns
    -------
    tuple
        ``(ids, embeddings)``: the drawn IDs and their embeddings' tensor.
    """
    ids = cohort_subset(embeddable_ids(dataset, *limits), size, seed)
    vectors = embedded(f"{name}{len(ids)}", dataset, ids)
    return ids, torch.stack([vectors[i] for i in ids])


def summary_table(results):
    """One row per system: trials, EER (%) and each minDCF it was scored at.

    Arguments
    ---------
    results : dict
        As :func:`verify` returns.

    Returns
    -------
    pandas.DataFrame
        Columns ``system, trials, eer_percent`` and one per minDCF setting
        (empty where a system was not scored at it).
    """
    rows = []
    for system, metrics in results.items():
        row = {"system": system, "trials": metrics["trials"],
               "eer_percent": round(100 * metrics["eer"], 2)}
        row.update({k: round(v, 4) for k, v in metrics.items() if k.startswith("min_dcf_")})
        rows.append(row)
    return pd.DataFrame(rows)
