"""Back-end adaptation of embeddings to a domain, before cosine or PLDA scoring.

The embeddings of one domain (the score-normalisation cohort, drawn from the
unlabelled target or the source training data) give a mean and a covariance
(:mod:`local.domain_statistics`). Every embedding is centred on that mean and,
with whitening, whitened by that covariance; the cosine scoring of
:mod:`local.evaluation.scoring` then length-normalises it again.
"""

BACKEND_ADAPTATIONS = (None, "mean", "whiten")
