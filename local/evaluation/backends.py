"""The back-ends a trial list is scored with, one class each, by name (:data:`BACKENDS`).

A back-end gives the space its systems are scored in: the embeddings (as
they are, or adapted to a domain), the cohort of impostors in that space
for score normalisation, and the score as a bilinear form
(:func:`local.evaluation.scoring.cosine_form`, or a PLDA's). Raw cosine is
scored in every run; ``backend_adaptation`` adds one of ``mean`` and
``whiten``, and ``backend`` lists the PLDA back-ends (:mod:`local.evaluation.plda`),
trained on the labelled source training embeddings (classes of the speaker
head, ``speaker_label``: speakers, or speakers saying a phrase): as trained (``plda``),
adapted to the unlabelled target training embeddings (``plda_adapted``),
trained on source embeddings re-coloured to the target covariance
(``coral_plda``); or on the target's pseudo-speakers, found by clustering the
unlabelled target training embeddings as training does (``plda_target``),
alone or pooled with the source speakers (``plda_pooled``). No target speaker
label is read.

Every back-end is built from one :class:`TrainingEmbeddings`, which draws and
embeds each training set the first time a back-end asks for it, and trains
what several back-ends share (the source PLDA, the target's pseudo-speakers)
once. A back-end that the run's data cannot train (too few speakers or
utterances, :class:`~local.evaluation.plda.PLDABackend`; a target too small to
cluster, or of no pseudo-speaker to pool; a domain too small to re-colour by)
raises :class:`~local.evaluation.plda.Unscorable`: its systems are left out
with a warning and a line of the report that names it and says why, not a
failed run. A fault of the input (embeddings with NaN values, a bad
setting) stays an error.
"""

from functools import cached_property

import torch

from local.domain_statistics import DomainAdaptation, coral
from local.evaluation.plda import MIN_SPEAKERS, PLDABackend, Unscorable
from local.evaluation.scoring import cosine_form


class TrainingEmbeddings:
    """The training embeddings of the back-ends, each drawn and embedded when first needed.

    Arguments
    ---------
    hparams : dict
        ``lda_dim``, ``whiten_ridge``, ``plda_within_scale``,
        ``plda_between_scale``, ``seed`` and ``pseudo_labels``
        (:class:`local.model.pseudo_labels.PseudoLabels`, whose clustering
        settings find the target's pseudo-speakers).
    draw : callable
        ``draw(role) -> (embeddings [n, dim], speakers)`` for the roles
        ``cohort``, ``source`` (speakers: the source classes) and ``target``
        (speakers unread), whose draw may add the utterance IDs, which the
        clustering's warnings name.
    """

    def __init__(self, hparams, draw):
        self.hparams = hparams
        self.draw = draw

    @cached_property
    def cohort(self):
        """``[n, dim]`` impostor embeddings of the score normalisation and the adaptation."""
        return self.draw("cohort")[0]

    @cached_property
    def source(self):
        """``(embeddings [n, dim], speakers)`` of the labelled source training data."""
        return self.draw("source")

    @cached_property
    def target_draw(self):
        """``(embeddings [m, dim], speakers[, IDs])`` of the target training data;
        the speakers are None, unless ``pseudo_oracle`` asks for the manifest's."""
        return self.draw("target")

    @property
    def target(self):
        """``[m, dim]`` target training embeddings."""
        return self.target_draw[0]

    @cached_property
    def source_plda(self):
        """The PLDA back-end of the source speakers."""
        vectors, speakers = self.source
        plda = self.plda(vectors, speakers)
        print(f"PLDA back-end: {len(speakers)} source utterances, LDA to {len(plda.lda)} "
              "dimensions")
        return plda

    def plda(self, vectors, speakers):
        """A PLDA back-end with the run's ``lda_dim``.

        Arguments
        ---------
        vectors : torch.Tensor
            ``[n, dim]`` training embeddings.
        speakers : list
            Their speakers.

        Returns
        -------
        PLDABackend
        """
        return PLDABackend(vectors, speakers, self.hparams["lda_dim"])

    @cached_property
    def pseudo_speakers(self):
        """``(kept, speakers)``: the target embeddings that keep a pseudo-speaker, and its name.

        Found as training finds them (:func:`target_pseudo_speakers`): by
        clustering, or with ``pseudo_oracle`` the target manifest's speakers.

        Raises
        ------
        Unscorable
            When the target has too few utterances to cluster.
        """
        neighbours = self.hparams["pseudo_labels"].settings["neighbours"]
        if len(self.target) <= neighbours and not self.hparams["pseudo_labels"].oracle:
            raise Unscorable(f"the target's {len(self.target)} training utterances are too "
                             f"few to cluster with pseudo_neighbours {neighbours}")
        return target_pseudo_speakers(self.hparams, *self.target_draw)


def target_pseudo_speakers(hparams, target, speakers=None, ids=None):
    """The target embeddings' pseudo-speakers, found as training finds them.

    Arguments
    ---------
    hparams : dict
        ``pseudo_labels`` (:class:`local.model.pseudo_labels.PseudoLabels`,
        whose clustering settings are used) and ``seed``.
    target : torch.Tensor
        ``[m, dim]`` target training embeddings.
    speakers : list, optional
        Their manifest speakers, read only with ``pseudo_oracle``, whose
        back-end takes them as the pseudo-speakers.
    ids : list of str, optional
        Their utterance IDs, which the clustering's warnings name; by
        default their row numbers.

    Returns
    -------
    tuple
        ``(kept, speakers)``: the indices of the embeddings that keep a
        pseudo-speaker, and its name (``pseudo<k>``, no source speaker's) for each.
    """
    pseudo = hparams["pseudo_labels"]
    ids = [str(i) for i in range(len(target))] if ids is None else list(ids)
    embeddings = dict(zip(ids, target))
    if pseudo.oracle:
        labels, _, summary = pseudo.true_speakers(embeddings, dict(zip(ids, speakers or [])))
    else:
        labels, _, summary = pseudo.cluster(embeddings, seed=hparams["seed"])
    # One clustering for both target back-ends: a run may score either of them alone.
    pseudo.warn_if_barely_kept(summary, len(target), "target pseudo-speakers of the back-ends",
                               "the target back-ends (plda_target, plda_pooled)")
    kept = [i for i, utt in enumerate(ids) if utt in labels]
    print(f"Target pseudo-speakers for the back-end: {summary['clusters']} clusters, "
          f"{len(kept)} of {len(target)} utterances kept")
    return kept, [f"pseudo{labels[ids[i]]}" for i in kept]


class Cosine:
    """Cosine scoring of the embeddings as they are; every other back-end is a subclass.

    Arguments
    ---------
    data : TrainingEmbeddings
        What the back-end trains on.

    Attributes
    ----------
    setting : str or None
        The setting that chooses the back-end (``backend_adaptation`` names
        one, ``backend`` lists several); None: scored in every run.
    form : callable
        The score as a bilinear form of embeddings.
    """

    setting = None
    form = staticmethod(cosine_form)

    def __init__(self, data):
        self.data = data

    def adapt(self, embeddings):
        """The embeddings in the back-end's space.

        Arguments
        ---------
        embeddings : dict
            ``{utterance ID: tensor [dim]}``.

        Returns
        -------
        dict
            The same keys.
        """
        return embeddings

    @property
    def cohort(self):
        """``[n, dim]`` cohort in the back-end's space, for score normalisation."""
        return self.data.cohort


class Mean(Cosine):
    """Cosine scoring of embeddings centred on the cohort's mean.

    The cohort is adapted as well, for score normalisation in the same space.

    Arguments
    ---------
    data : TrainingEmbeddings
        Its ``cohort`` and ``whiten_ridge``.
    """

    setting = "backend_adaptation"
    whiten = False

    def __init__(self, data):
        super().__init__(data)
        self.adaptation = DomainAdaptation(data.cohort, self.whiten, data.hparams["whiten_ridge"])

    def adapt(self, embeddings):
        return self.adaptation.adapt_embeddings(embeddings)

    @cached_property
    def cohort(self):
        """The adapted cohort."""
        return self.adaptation(self.data.cohort)


class Whiten(Mean):
    """Cosine scoring of embeddings centred on and whitened by the cohort (``whiten_ridge``)."""

    whiten = True


class SourcePLDA(Cosine):
    """PLDA of the source speakers (``plda``); a subclass trains another PLDA.

    Arguments
    ---------
    data : TrainingEmbeddings
        What :meth:`trained` trains on.
    """

    setting = "backend"

    def __init__(self, data):
        super().__init__(data)
        self.form = self.trained(data).score_form

    def trained(self, data):
        """The PLDA back-end whose score form this one scores with.

        Arguments
        ---------
        data : TrainingEmbeddings
            What it trains on.

        Returns
        -------
        PLDABackend
        """
        return data.source_plda


class AdaptedPLDA(SourcePLDA):
    """The source PLDA adapted to the unlabelled target (Kaldi's ``ivector-adapt-plda``)."""

    def trained(self, data):
        return data.source_plda.adapted(data.target, data.hparams["plda_within_scale"],
                                        data.hparams["plda_between_scale"])


class CoralPLDA(SourcePLDA):
    """PLDA of the source speakers on source embeddings re-coloured to the target (CORAL)."""

    def trained(self, data):
        vectors, speakers = data.source
        for domain, embeddings in (("source", vectors), ("target", data.target)):
            if len(embeddings) < 2:
                raise Unscorable(
                    f"the {domain}'s {len(embeddings)} training utterances are fewer than the 2 "
                    f"of a covariance to re-colour by; it needs a {domain} training manifest "
                    "with 2 utterances or more within min_embed_seconds and max_embed_seconds")
        return data.plda(coral(vectors, data.target, data.hparams["whiten_ridge"]), speakers)


class TargetPLDA(SourcePLDA):
    """PLDA of the target's pseudo-speakers alone."""

    def trained(self, data):
        kept, speakers = data.pseudo_speakers
        if len(set(speakers)) < MIN_SPEAKERS:
            raise Unscorable(f"the target's {len(set(speakers))} pseudo-speakers are fewer than "
                             f"the {MIN_SPEAKERS} a PLDA trains on; plda_pooled adds the source "
                             "speakers")
        dim = data.target.shape[1]
        spare = len(kept) - len(set(speakers))
        if spare < dim:  # dim of them span the within-class covariance (plda.singular_within)
            raise Unscorable(
                f"{len(kept)} target utterances of {len(set(speakers))} pseudo-speakers leave "
                f"{spare} within-speaker degrees of freedom, too few for the {dim} dimensions "
                "of the embeddings; plda_pooled adds the source speakers' utterances")
        return data.plda(data.target[kept], speakers)


class PooledPLDA(SourcePLDA):
    """PLDA of the source speakers and the target's pseudo-speakers together."""

    def trained(self, data):
        kept, pseudo = data.pseudo_speakers
        if not kept:
            # It would be the source PLDA, under another name.
            raise Unscorable(
                f"none of the target's {len(data.target)} training utterances keeps a "
                "pseudo-speaker, which would leave the plda of the source speakers alone; lower "
                "pseudo_min_silhouette, change pseudo_neighbours or pseudo_whiten, or check the "
                "target audio")
        vectors, speakers = data.source
        # Prefixed: a source speaker named like a pseudo-speaker stays another speaker.
        return data.plda(torch.cat([vectors, data.target[kept]]),
                         [f"source:{speaker}" for speaker in speakers] + pseudo)


# In the order of each trial list's systems in the summary.
BACKENDS = {"cosine": Cosine, "mean": Mean, "whiten": Whiten, "plda": SourcePLDA,
            "plda_adapted": AdaptedPLDA, "coral_plda": CoralPLDA, "plda_target": TargetPLDA,
            "plda_pooled": PooledPLDA}


def backends_of(setting):
    """The names of the back-ends that ``setting`` chooses among.

    Arguments
    ---------
    setting : str
        ``backend_adaptation`` or ``backend``.

    Returns
    -------
    list of str
        In the order of :data:`BACKENDS`.

    Example
    -------
    >>> backends_of("backend_adaptation")
    ['mean', 'whiten']
    """
    return [name for name, kind in BACKENDS.items() if kind.setting == setting]


def chosen_backends(hparams):
    """The names of the back-ends a run scores, in the order of :data:`BACKENDS`.

    Arguments
    ---------
    hparams : dict
        ``backend_adaptation`` and ``backend``.

    Returns
    -------
    list of str
        ``cosine``, the adaptation if any, and each of the ``backend`` list.

    Example
    -------
    >>> chosen_backends({"backend_adaptation": "whiten", "backend": ["plda_pooled", "plda"]})
    ['cosine', 'whiten', 'plda', 'plda_pooled']
    """
    wanted = {hparams["backend_adaptation"], *hparams["backend"]}
    return [name for name, kind in BACKENDS.items() if kind.setting is None or name in wanted]


def system_name(trial_list, backend, norm=None):
    """A system's name: the trial list's, the back-end's (not cosine's), the normalisation's.

    Arguments
    ---------
    trial_list : str
        The condition's name of the trial list.
    backend : str
        A key of :data:`BACKENDS`.
    norm : str, optional
        The score normalisation (``snorm``, ``asnorm``, ``znorm``, ``tnorm``).

    Returns
    -------
    str
        The name of its row in the summary and of its folder in the report.

    Example
    -------
    >>> system_name("target", "cosine"), system_name("target", "whiten", "asnorm")
    ('target', 'target_whiten_asnorm')
    """
    return "_".join([trial_list] + [backend] * (backend != "cosine") + [norm] * bool(norm))
