"""Verification of a trained system on a condition's trial lists, and its report.

Each evaluation manifest's utterances are embedded once (cached in the run's
output folder, named after the checkpoint they came from,
:class:`EmbeddingCache`). The back-ends the
settings choose (:mod:`local.evaluation.backends`: raw cosine always, the
``backend_adaptation`` and every ``backend``) are trained, each list of
systems is made (every trial list by every back-end, and with ``score_norm``
also S-norm, AS-norm, Z-norm or T-norm normalised against a cohort of impostor embeddings
drawn from the source or the unlabelled target training data), and each
system is scored in turn. Every system gets a folder of its own in
``<output_folder>/verification`` (score file, per-condition table);
``summary.csv`` has a row per system, ``det.png`` a panel of DET curves per
trial list (of the systems ``det_systems`` names), and ``report.md`` shows
both, the best system of each list named; ``evaluate.py``'s report also
holds the settings it was made with. The report is written whole beside
that folder and then takes its place (:func:`local.whole_files.staged_folder`):
it holds the systems of one verification only, and one that fails or is
killed leaves the report before it as it was. Used at the end of ``train_dann.py`` and by
``evaluate.py``.
"""

import os
from typing import NamedTuple, Optional

import numpy as np
import pandas as pd
import torch
from speechbrain.utils.logger import get_logger

from local.data.dataio import SPEAKER_LABELS, speaker_class, speaker_label
from local.data.manifest_io import read_enrolment, read_manifest, read_trials
from local.evaluation.backends import (
    BACKENDS,
    TrainingEmbeddings,
    Unscorable,
    backends_of,
    chosen_backends,
    system_name,
)
from local.domain_statistics import check_domain_size
from local.embedding import compute_embeddings, content_key, embeddable_ids, none_embeddable
from local.errors import fail, failing_on_full_disk
from local.evaluation.metrics import VOXCELEB_DCF, dcf_name, repeated_dcf
from local.evaluation.report import (
    plot_det,
    write_report,
    write_scored_checkpoint,
    write_summary_report,
)
from local.evaluation.scoring import BOTH_SIDES, check_cohort_size, score_trials
from local.provenance import code_digest
from local.run_folder import embedding_key
from local.whole_files import staged_folder

logger = get_logger(__name__)

# The code this process runs, digested as it is imported: an edit of the
# sources during a long run does not name the embeddings it computes.
CODE = code_digest()

# Each score normalisation, with the trial sides whose cohort statistics
# standardise a score (local.evaluation.scoring.score_trials).
NORM_SIDES = {None: (), "snorm": BOTH_SIDES, "asnorm": BOTH_SIDES, "znorm": ("enrol",),
              "tnorm": ("test",)}
SCORE_NORMS = tuple(NORM_SIDES)
LINE_STYLES = dict(zip(SCORE_NORMS, ("-", ":", "--", "-.", (0, (5, 1, 1, 1, 1, 1)))))
COHORT_DOMAINS = ("source", "target")
# The settings of det_systems, and what the figure draws with each.
DET_SYSTEMS = {"default": "raw cosine, the default back-end and the best system of each list",
               "all": "every system"}


def _check_number(hparams, key, kind=(int, float), minimum=0):
    value = hparams[key]
    if isinstance(value, bool) or not isinstance(value, kind) or not value >= minimum:
        noun = "an integer" if kind is int else "a number"
        fail(f"--{key}={value}", f"{key} must be {noun} >= {minimum}; got {value!r}",
             fix=f"pass {noun} of at least {minimum}")


def _refuse(hparams, key, allowed):
    """:func:`fail` on the setting ``key`` of ``hparams``, which must be ``allowed``."""
    value = hparams[key]
    fail(f"--{key}={value}", f"{key} must be {allowed}; got {value!r}",
         fix=f"pass {allowed}")


def check_score_norm(hparams):
    """Fail early on a score-normalisation or back-end setting the evaluation could not use.

    Arguments
    ---------
    hparams : dict
        ``score_norm``, ``cohort_domain``, ``cohort_size``, ``cohort_top_k``,
        ``backend_adaptation``, ``whiten_ridge``, ``backend``, ``lda_dim``,
        ``plda_within_scale``, ``plda_between_scale``, ``backend_max_utterances``,
        ``det_systems``.
    """
    if hparams["score_norm"] not in SCORE_NORMS:
        _refuse(hparams, "score_norm", "null, snorm, asnorm, znorm or tnorm")
    if hparams["cohort_domain"] not in COHORT_DOMAINS:
        _refuse(hparams, "cohort_domain", "source or target")
    # A score normalisation takes a standard deviation over the cohort, whitening its covariance.
    spread = hparams["score_norm"] or hparams["backend_adaptation"] == "whiten"
    _check_number(hparams, "cohort_size", int, minimum=2 if spread else 1)
    top_k, size = hparams["cohort_top_k"], hparams["cohort_size"]
    if hparams["score_norm"] == "asnorm" and not 2 <= top_k <= size:
        fail(f"--cohort_top_k={top_k}",
             f"cohort_top_k ({top_k}) must be between 2 and cohort_size ({size})",
             fix=f"pass --cohort_top_k={min(200, size)}, or a larger --cohort_size")
    adaptations = backends_of("backend_adaptation")
    if hparams["backend_adaptation"] not in [None, *adaptations]:
        _refuse(hparams, "backend_adaptation", f"null, {' or '.join(adaptations)}")
    _check_number(hparams, "whiten_ridge")
    backends, trained = hparams["backend"], backends_of("backend")
    if not isinstance(backends, list) or not set(backends) <= set(trained):
        _refuse(hparams, "backend", f"a list of {', '.join(trained)} (or [])")
    for key in ("plda_within_scale", "plda_between_scale"):
        _check_number(hparams, key)
    for key in ("lda_dim", "backend_max_utterances"):
        _check_number(hparams, key, int, minimum=1)
    if hparams["det_systems"] not in DET_SYSTEMS:
        _refuse(hparams, "det_systems", " or ".join(DET_SYSTEMS))


def check_dcf_settings(path, evaluation):
    """Refuse a trial list whose ``min_dcf`` gives a setting twice, before any work.

    Two settings of one column name (:func:`~local.evaluation.metrics.repeated_dcf`)
    would be one column of ``summary.csv``, the second scored over the first.

    Arguments
    ---------
    path : str
        The condition file, named in the message.
    evaluation : dict
        The condition's ``evaluation``: ``{list name: {..., min_dcf}}``, the
        settings well formed (:func:`local.settings.load_condition`).

    Raises
    ------
    ManifestError
        Naming the trial list and the repeated settings.

    Example
    -------
    >>> check_dcf_settings("condition.yaml", {"target": {"min_dcf": [[0.01, 10, 1]]}})
    >>> check_dcf_settings("condition.yaml", {"target": {"min_dcf": [[0.01, 1, 1], [0.01, 1, 1]]}})
    Traceback (most recent call last):
      ...
    local.errors.ManifestError: condition.yaml: trial list target of evaluation has min_dcf settings given twice
      [0.01, 1, 1] repeats [0.01, 1, 1] (min_dcf_0.01)
    Fix: give each setting once: a setting's minDCF is one column of summary.csv, named by it
    """
    for name, spec in evaluation.items():
        repeats = repeated_dcf(spec.get("min_dcf") or [])
        if repeats:
            fail(path, f"trial list {name} of evaluation has min_dcf settings given twice",
                 rows=[f"{setting} repeats {earlier} ({dcf_name(*setting)})"
                       for setting, earlier in repeats],
                 fix="give each setting once: a setting's minDCF is one column of "
                     "summary.csv, named by it")


def check_cohort(hparams, training, where="cohort"):
    """Fail, before anything is embedded, when the cohort would be too small for its uses.

    The cohort is drawn from the utterances of ``cohort_domain``'s training
    manifest within the embedding limits (:meth:`EmbeddingCache.subset`):
    their number is known from the manifest, so a cohort smaller than
    ``cohort_top_k`` (S-norm: 2) or than the back-end adaptation needs
    (:func:`~local.domain_statistics.check_domain_size`: ``whiten`` 2, or
    ``emb_dim`` + 1 with ``whiten_ridge`` 0; ``mean`` 1) is refused before
    the evaluation utterances are embedded, not when the first trial is
    scored or the back-end trained.

    Arguments
    ---------
    hparams : dict
        ``score_norm``, ``backend_adaptation``, ``cohort_domain``,
        ``cohort_size``, ``cohort_top_k``, ``min_embed_seconds``,
        ``max_embed_seconds``; with ``whiten``, ``whiten_ridge`` and ``emb_dim``.
    training : dict
        ``{"source": ..., "target": ...}`` whole-utterance datasets of the
        training manifests.
    where : str
        What the cohort is drawn from, named in the message.
    """
    norm, adaptation = hparams["score_norm"], hparams["backend_adaptation"]
    if not (norm or adaptation):
        return
    limits = hparams["min_embed_seconds"], hparams["max_embed_seconds"]
    drawn = min(len(embeddable_ids(training[hparams["cohort_domain"]], *limits)),
                hparams["cohort_size"])
    if norm:
        check_cohort_size(drawn, hparams["cohort_top_k"] if norm == "asnorm" else None, where)
    if adaptation:
        whiten = adaptation == "whiten"
        # Without a ridge, fewer embeddings than emb_dim + 1 cannot span their dimensions.
        dim = hparams["emb_dim"] if whiten and hparams["whiten_ridge"] == 0 else None
        check_domain_size(drawn, whiten, where, dim=dim)


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


class EmbeddingCache:
    """Embeddings of a run's model, cached in the run's ``output_folder``.

    A cache is named ``embeddings_<name>_<checkpoint>_<key>.pt``, ``key``
    the :func:`~local.embedding.content_key` of what it embeds, so that
    neither a retrained model nor changed rows or audio reuse it (the caches
    of before are kept). With the run's settings, the checkpoint's name is
    followed by their :func:`~local.run_folder.embedding_key`: a model
    defined otherwise, as ``--allow_changed`` accepts, embeds again. The
    checkpoint is named with its save time
    (:func:`~local.model.checkpoints.checkpoint_identity`): another
    checkpoint that takes a removed one's name embeds again. With an
    SSL front end, the name has the
    :func:`~local.model.ssl_frontend.ssl_fingerprint` of the SSL model's files
    after the checkpoint's: a frozen SSL model is not in the checkpoint, and
    one replaced under the same ``ssl_source`` embeds again. Then comes the
    :func:`~local.provenance.code_digest` of the recipe's code and libraries:
    embeddings computed before either changed are not reused. Embeddings in
    another precision than fp32 (``--eval_precision=bf16``) end with it.

    Arguments
    ---------
    embed : callable
        ``embed(wavs, wav_lens) -> [batch, 1, dim]``, in evaluation mode.
    hparams : dict
        ``output_folder``, ``eval_batch_size``, ``min_embed_seconds``,
        ``max_embed_seconds``, ``seed`` (of the drawn subsets) and the
        ``frontend`` that ``embed`` runs, if any.
    device : str
        Where to embed.
    checkpoint : str
        The checkpoint the model came from, as
        :func:`~local.model.checkpoints.checkpoint_identity` names it.
    settings : dict, optional
        The run's settings (:func:`local.run_folder.accept_settings`).
    precision : str
        What ``embed`` computes in; other than ``fp32`` it ends the name.
    """

    def __init__(self, embed, hparams, device, checkpoint, settings=None, precision="fp32"):
        self.embed = embed
        self.hparams = hparams
        self.device = device
        fingerprint = getattr(hparams.get("frontend"), "fingerprint", None)
        parts = (checkpoint, settings and embedding_key(settings), fingerprint, CODE,
                 precision != "fp32" and precision)
        self.model = "_".join(part for part in parts if part)
        self.limits = (hparams["min_embed_seconds"], hparams["max_embed_seconds"])

    def __call__(self, name, dataset, ids=None):
        """``{utterance ID: tensor [dim]}`` of ``ids`` (default all) of ``dataset``.

        Arguments
        ---------
        name : str
            The cache's name.
        dataset : DynamicItemDataset
            Whole utterances.
        ids : list of str, optional
            The utterances to embed.

        Returns
        -------
        dict
        """
        key = content_key(dataset, ids)
        cache = os.path.join(self.hparams["output_folder"],
                             f"embeddings_{name}_{self.model}_{key}.pt")
        return compute_embeddings(self.embed, dataset, self.hparams["eval_batch_size"],
                                  self.device, cache_path=cache, ids=ids, limits=self.limits)

    def subset(self, name, dataset, size, manifest="the training manifest"):
        """Embeddings of :func:`cohort_subset`'s draw, cached as ``<name><n>``.

        The draw is among the utterances within the embedding limits: a
        training manifest may hold utterances too short to embed whole,
        which its crops repeat, or too long.

        Arguments
        ---------
        name : str
            Cache name prefix.
        dataset : DynamicItemDataset
            Whole utterances.
        size : int
            The most utterances drawn.
        manifest : str
            What ``dataset`` is, in the message of an empty draw.

        Returns
        -------
        tuple
            ``(ids, embeddings)``: the drawn IDs and their ``[n, dim]`` tensor.

        Raises
        ------
        Unscorable
            When no utterance of ``dataset`` is within the limits: what
            trains on the draw cannot be trained.
        """
        ids = cohort_subset(embeddable_ids(dataset, *self.limits), size, self.hparams["seed"])
        if not ids:
            reason, fix = none_embeddable(f"{len(dataset)} utterances of {manifest}", "them",
                                          *self.limits)
            raise Unscorable(f"{reason}; {fix}")
        vectors = self(f"{name}{len(ids)}", dataset, ids)
        return ids, torch.stack([vectors[i] for i in ids])


def evaluation_embeddings(cache, evaluation, datasets):
    """The embeddings of each evaluation manifest.

    A manifest's cache is named after the first trial list that uses it:
    manifests of different corpora may share a file name (``eval.csv``).

    Arguments
    ---------
    cache : EmbeddingCache
        Embeds and caches.
    evaluation : dict
        The condition's ``{trial list: {manifest, trials...}}``.
    datasets : dict
        Whole-utterance datasets keyed by manifest path.

    Returns
    -------
    dict
        ``{manifest path: {utterance ID: tensor [dim]}}``.
    """
    names = {}
    for name, spec in evaluation.items():
        names.setdefault(spec["manifest"], name)
    return {manifest: cache(names[manifest], dataset) for manifest, dataset in datasets.items()}


def training_embeddings(cache, hparams, training):
    """The back-ends' training embeddings, drawn from the training manifests when first needed.

    Arguments
    ---------
    cache : EmbeddingCache
        Embeds and caches.
    hparams : dict
        ``cohort_domain``, ``cohort_size``, ``backend_max_utterances`` and
        what :class:`~local.evaluation.backends.TrainingEmbeddings` reads.
    training : dict
        ``{"source": ..., "target": ...}`` whole-utterance datasets.

    Returns
    -------
    TrainingEmbeddings
        The cohort drawn from ``cohort_domain``'s manifest; the source
        (with the classes of the speaker head, ``speaker_label``) and the
        target (unlabelled, with its utterance IDs) from theirs.
    """
    domain = hparams["cohort_domain"]
    draws = {"cohort": (f"cohort_{domain}", domain, hparams["cohort_size"]),
             "source": ("backend_source", "source", hparams["backend_max_utterances"]),
             "target": ("backend_target", "target", hparams["backend_max_utterances"])}
    # With speaker_label: spk_phrase a PLDA class is a speaker saying a phrase, as
    # the speaker head's: one of speakers alone would learn the phrase as
    # within-speaker variation and score a wrong phrase (SdSV's TW) as a target.
    columns = SPEAKER_LABELS[speaker_label(hparams)]

    def draw(role):
        name, domain, size = draws[role]
        ids, vectors = cache.subset(name, training[domain], size,
                                    f"the {domain} training manifest")
        rows = training[domain].data
        if role == "source":
            return vectors, [str(speaker_class(*(rows[utt][c] for c in columns))) for utt in ids]
        if role == "target":  # its IDs name utterances in the clustering's warnings
            # The target's speakers are read only for the oracle's ceiling.
            oracle = hparams["pseudo_labels"].oracle
            return vectors, [rows[utt]["spk_id"] for utt in ids] if oracle else None, ids
        return vectors, None

    return TrainingEmbeddings(hparams, draw)


def build_backends(names, data):
    """The back-ends called ``names``, trained; those the data cannot train are left out.

    Arguments
    ---------
    names : list of str
        Keys of :data:`~local.evaluation.backends.BACKENDS`.
    data : TrainingEmbeddings
        What they train on.

    Returns
    -------
    tuple of dict
        ``({name: back-end}, {name: why it was not scored})``, each in the
        order of ``names``.
    """
    backends, unscored = {}, {}
    for name in names:
        try:
            backends[name] = BACKENDS[name](data)
        except Unscorable as reason:
            logger.warning("%s not scored: %s", name, reason)
            unscored[name] = str(reason)
    return backends, unscored


class System(NamedTuple):
    """A trial list scored by a back-end, with or without a score normalisation."""

    trial_list: str
    backend: str
    norm: Optional[str]

    @property
    def name(self):
        """Its name in the summary (:func:`~local.evaluation.backends.system_name`)."""
        return system_name(*self)


def list_systems(trial_lists, backends, score_norm):
    """Every system of a run: each trial list by each back-end, raw and normalised.

    Arguments
    ---------
    trial_lists : list of str
        The condition's trial lists.
    backends : list of str
        The back-ends scored.
    score_norm : str or None
        The score normalisation, if any.

    Returns
    -------
    list of System
        By trial list, then back-end, the raw system before the normalised one.

    Example
    -------
    >>> [s.name for s in list_systems(["target"], ["cosine", "plda"], "asnorm")]
    ['target', 'target_asnorm', 'target_plda', 'target_plda_asnorm']
    """
    norms = [None] + [score_norm] * bool(score_norm)
    return [System(name, backend, norm)
            for name in trial_lists for backend in backends for norm in norms]


class TrialList(NamedTuple):
    """A trial list of the condition, read: what scoring and its report need."""

    trials: pd.DataFrame
    manifest: str
    utterances: pd.DataFrame
    models: dict
    enrolment: Optional[pd.DataFrame]
    dcf: list

    @classmethod
    def read(cls, spec):
        """The trial list of a condition's ``evaluation`` entry.

        Arguments
        ---------
        spec : dict
            ``manifest``, ``trials`` and optionally ``enrolment`` and
            ``min_dcf`` (the ``[p_target, c_miss, c_fa]`` settings, default
            VoxCeleb's two operating points).

        Returns
        -------
        TrialList
        """
        models, table = read_enrolment(spec["enrolment"]) if spec.get("enrolment") else ({}, None)
        return cls(read_trials(spec["trials"]), spec["manifest"], read_manifest(spec["manifest"]),
                   models, table, [tuple(setting) for setting in spec.get("min_dcf", VOXCELEB_DCF)])


def verify(embed, hparams, condition, eval_datasets, training, device, checkpoint,
           records=None, settings=None, precision="fp32"):
    """Embed, score and report every trial list of a condition.

    Arguments
    ---------
    embed : callable
        ``embed(wavs, wav_lens) -> [batch, 1, dim]``, in evaluation mode.
    hparams : dict
        Model hparams: what :class:`EmbeddingCache`, :func:`check_score_norm`
        and :func:`training_embeddings` read.
    condition : dict
        Condition hparams: ``condition`` and ``evaluation`` (``{name:
        {manifest, trials[, enrolment, min_dcf]}}``, :meth:`TrialList.read`).
    eval_datasets : dict
        Whole-utterance datasets keyed by manifest path.
    training : dict
        ``{"source": ..., "target": ...}``, whole-utterance datasets of the
        training manifests: the cohort is drawn from ``cohort_domain``'s, the
        back-ends train on up to ``backend_max_utterances`` of each.
    device : str
        Where to embed.
    checkpoint : str
        The checkpoint the model came from, as
        :func:`~local.model.checkpoints.checkpoint_identity` names it
        (:class:`EmbeddingCache`, ``checkpoint.txt``).
    records : callable, optional
        ``records(folder)`` writes the settings the report was made with
        into the staged report, so that they take the place of the report
        before it with it.
    settings : dict, optional
        The run's settings, which name the embedding caches (:class:`EmbeddingCache`).
    precision : str
        What ``embed`` computes in (``--eval_precision``), which names the
        embedding caches too.

    Returns
    -------
    dict
        ``{system: {"eer": ..., "min_dcf_...": ...}}``, in the order of
        :func:`list_systems`.
    """
    check_cohort(hparams, training)
    final_folder = os.path.join(hparams["output_folder"], "verification")
    # A full disk is named before the staged report is removed.
    with staged_folder(final_folder) as report_folder, failing_on_full_disk(
            hparams["output_folder"], "the verification report or an embedding cache",
            "and evaluate the run again (python evaluate.py with its hparams and overrides); "
            "the report before it, the checkpoints and the embedding caches written before are "
            "intact"):
        cache = EmbeddingCache(embed, hparams, device, checkpoint, settings, precision)
        embeddings = evaluation_embeddings(cache, condition["evaluation"], eval_datasets)
        data = training_embeddings(cache, hparams, training)
        backends, unscored = build_backends(chosen_backends(hparams), data)
        # The cohort is drawn (and embedded) only for the uses that need it.
        notes = ([cohort_note(hparams, len(data.cohort))]
                 if hparams["score_norm"] or hparams["backend_adaptation"] else [])
        for note in notes:
            logger.info(note)
        spaces = {name: {manifest: backend.adapt(vectors)
                         for manifest, vectors in embeddings.items()}
                  for name, backend in backends.items()}
        trial_lists = {name: TrialList.read(spec)
                       for name, spec in condition["evaluation"].items()}
        score_norm = hparams["score_norm"]
        top_k = hparams["cohort_top_k"] if score_norm == "asnorm" else None

        systems = list_systems(list(trial_lists), list(backends), score_norm)
        results, curves = {}, {}
        for system in systems:
            trial_list, backend = trial_lists[system.trial_list], backends[system.backend]
            scores = score_trials(spaces[system.backend][trial_list.manifest],
                                  trial_list.trials, trial_list.models,
                                  backend.cohort if system.norm else None, top_k, backend.form,
                                  NORM_SIDES[system.norm])
            results[system.name] = write_report(system.name, trial_list.trials, scores,
                                                trial_list.utterances, report_folder,
                                                trial_list.dcf, trial_list.enrolment)
            curves[system.name] = (scores, trial_list.trials["label"].to_numpy())
        summary = summary_table(results)
        summary.to_csv(os.path.join(report_folder, "summary.csv"), index=False)
        best = best_systems(systems, results)
        drawn = drawn_systems(systems, best, hparams)
        plot_det({name: {s.name: curves[s.name] for s in drawn if s.trial_list == name}
                  for name in trial_lists},
                 os.path.join(report_folder, "det.png"), {s.name: det_style(s) for s in drawn})
        write_summary_report(os.path.join(report_folder, "report.md"), condition["condition"],
                             summary, best, DET_SYSTEMS[hparams["det_systems"]], checkpoint,
                             unscored, notes)
        write_scored_checkpoint(report_folder, checkpoint)
        if records is not None:
            records(report_folder)
    print(f"Verification ({condition['condition']}):\n"
          f"{summary.to_string(index=False, float_format='{:.4f}'.format)}")
    return results


def cohort_note(hparams, size):
    """What the cohort held and what used it, as the report says it.

    ``cohort_size`` is the most utterances drawn: a training manifest with
    fewer that embed whole gives them all, a smaller cohort than the setting
    names, which AS-norm's ``cohort_top_k`` is a share of.

    Arguments
    ---------
    hparams : dict
        ``cohort_domain``, ``cohort_size``, ``score_norm``, ``cohort_top_k``
        and ``backend_adaptation``.
    size : int
        The utterances of the cohort drawn.

    Returns
    -------
    str
        One sentence.

    Example
    -------
    >>> hparams = {"cohort_domain": "target", "cohort_size": 1000, "score_norm": "asnorm",
    ...            "cohort_top_k": 200, "backend_adaptation": "whiten"}
    >>> print(cohort_note(hparams, 240))
    Cohort: 240 target training utterances, all that embed whole (fewer than cohort_size, 1000), for asnorm over each side's 200 closest and whiten.
    """
    drawn = (f"all that embed whole (fewer than cohort_size, {hparams['cohort_size']})"
             if size < hparams["cohort_size"] else "a random draw of cohort_size")
    uses = [hparams["score_norm"], hparams["backend_adaptation"]]
    if hparams["score_norm"] == "asnorm":
        uses[0] = f"asnorm over each side's {hparams['cohort_top_k']} closest"
    return (f"Cohort: {size} {hparams['cohort_domain']} training utterances, {drawn}, for "
            f"{' and '.join(use for use in uses if use)}.")


def best_systems(systems, results):
    """The system of lowest EER of each trial list (the first of them on a tie).

    Arguments
    ---------
    systems : list of System
        As :func:`list_systems` makes them.
    results : dict
        ``{system name: {"eer": ...}}``.

    Returns
    -------
    dict
        ``{trial list: system name}``.
    """
    lists = dict.fromkeys(system.trial_list for system in systems)
    return {name: min((s.name for s in systems if s.trial_list == name),
                      key=lambda system: results[system]["eer"]) for name in lists}


def drawn_systems(systems, best, hparams):
    """The systems the DET figure draws, as ``det_systems`` says (:data:`DET_SYSTEMS`).

    Arguments
    ---------
    systems : list of System
        Every system scored.
    best : dict
        ``{trial list: system name}``, as :func:`best_systems` gives.
    hparams : dict
        ``det_systems`` and ``backend`` (its first is the default back-end).

    Returns
    -------
    list of System
        In the order of ``systems``.
    """
    if hparams["det_systems"] == "all":
        return systems
    default = ["cosine", *hparams["backend"][:1]]
    return [system for system in systems if system.name in best.values()
            or (system.norm is None and system.backend in default)]


def det_style(system):
    """A DET curve's colour, the back-end's, and line style, the score normalisation's.

    Arguments
    ---------
    system : System
        The system drawn.

    Returns
    -------
    dict
        ``color`` and ``linestyle``.
    """
    return {"color": f"C{list(BACKENDS).index(system.backend)}",
            "linestyle": LINE_STYLES[system.norm]}

def summary_table(results):
    """One row per system: trials, EER (%) and each minDCF it was scored at, unrounded.

    Unrounded, so that a mean over runs (:mod:`local.evaluation.seed_table`)
    is not one of rounded figures; the report rounds what it shows.

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
        row = {"system": system, "trials": metrics["trials"], "eer_percent": 100 * metrics["eer"]}
        row.update({k: v for k, v in metrics.items() if k.startswith("min_dcf_")})
        rows.append(row)
    return pd.DataFrame(rows)
