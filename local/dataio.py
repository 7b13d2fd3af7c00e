"""Datasets of the recipe: labelled source crops paired with unlabelled target crops."""

import numpy as np
import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder

from data_prep.manifest import fail, validate
from local.audio import load_random_crop, load_segment

# The classes of the speaker head (``speaker_label``) and the manifest columns
# that make one: a speaker, or a speaker saying a phrase (text-dependent
# training, as in SdSV task 1 systems).
SPEAKER_LABELS = {"spk_id": ("spk_id",), "spk_phrase": ("spk_id", "phrase")}


def manifest_dataset(csv_path, check_audio=True):
    """A DynamicItemDataset over a validated manifest.

    Arguments
    ---------
    csv_path : str
        Manifest in the schema of :mod:`data_prep.manifest`.
    check_audio : bool
        Open every file during validation.

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
        Items carry the manifest columns; ``sample_rate`` is filled in when
        the manifest has no such column.
    """
    manifest = validate(csv_path, check_audio=check_audio)
    data = {
        row["ID"]: {k: v for k, v in row.items() if k != "ID"}
        for row in manifest.to_dict(orient="records")
    }
    return DynamicItemDataset(data)


def add_crop_pipeline(dataset, seconds):
    """Give ``dataset`` a ``sig`` item: a random fixed-length crop at 16 kHz.

    Arguments
    ---------
    dataset : DynamicItemDataset
        From :func:`manifest_dataset`.
    seconds : float
        Crop length.
    """

    @sb.utils.data_pipeline.takes("wav", "start", "stop", "sample_rate")
    @sb.utils.data_pipeline.provides("sig")
    def crop(wav, start, stop, sample_rate):
        return load_random_crop(wav, start, stop, sample_rate, seconds)

    dataset.add_dynamic_item(crop)


def add_whole_pipeline(dataset):
    """Give ``dataset`` a ``sig`` item: the whole row at 16 kHz.

    Arguments
    ---------
    dataset : DynamicItemDataset
        From :func:`manifest_dataset`.
    """

    @sb.utils.data_pipeline.takes("wav", "start", "stop", "sample_rate")
    @sb.utils.data_pipeline.provides("sig")
    def whole(wav, start, stop, sample_rate):
        return load_segment(wav, start, stop, sample_rate)

    dataset.add_dynamic_item(whole)


def speaker_label(hparams):
    """The ``speaker_label`` setting of model hparams, ``spk_id`` where they have none.

    Arguments
    ---------
    hparams : dict
        Model hparams (or their plain top-level values).

    Returns
    -------
    str
        A key of :data:`SPEAKER_LABELS`.

    Example
    -------
    >>> speaker_label({"speaker_label": "spk_phrase"}), speaker_label({})
    ('spk_phrase', 'spk_id')
    >>> speaker_label({"speaker_label": "phrase"})
    Traceback (most recent call last):
      ...
    ValueError: speaker_label must be spk_id (a class per speaker) or spk_phrase (a class per speaker and phrase); got 'phrase'
    """
    label = hparams.get("speaker_label", "spk_id")
    if label not in SPEAKER_LABELS:
        raise ValueError("speaker_label must be spk_id (a class per speaker) or spk_phrase "
                         f"(a class per speaker and phrase); got {label!r}")
    return label


def speaker_class(spk_id, phrase=None):
    """The class of an utterance: its speaker, or its speaker and phrase.

    Arguments
    ---------
    spk_id : str
        Speaker ID.
    phrase : str, optional
        Phrase ID, for speaker-by-phrase classes.

    Returns
    -------
    str or tuple
        ``spk_id``, or ``(spk_id, phrase)``.

    Example
    -------
    >>> speaker_class("spk1"), speaker_class("spk1", "07")
    ('spk1', ('spk1', '07'))
    """
    return spk_id if phrase is None else (spk_id, phrase)


def speaker_classes(manifest, label, path):
    """The class of every row of a labelled manifest under ``speaker_label: label``.

    Arguments
    ---------
    manifest : pandas.DataFrame
        As from :func:`data_prep.manifest.read_manifest`.
    label : str
        A key of :data:`SPEAKER_LABELS`.
    path : str
        The manifest's file, named in errors.

    Returns
    -------
    list
        One class per row (:func:`speaker_class`).

    Raises
    ------
    ManifestError
        When a column the classes need is missing or has empty values.

    Example
    -------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"spk_id": ["a", "a", "b"], "phrase": ["01", "02", "01"]})
    >>> speaker_classes(rows, "spk_phrase", "train.csv")
    [('a', '01'), ('a', '02'), ('b', '01')]
    >>> speaker_classes(rows.drop(columns="phrase"), "spk_phrase", "train.csv")
    Traceback (most recent call last):
      ...
    data_prep.manifest.ManifestError: train.csv: speaker_label: spk_phrase needs a 'phrase' column in the source training manifest; it has none
    Fix: train with speaker_label: spk_id, or on a text-dependent source (data_prep.demo with phrases > 0, DeepMine's SdSV task 1)
    """
    fix = ("train with speaker_label: spk_id, or on a text-dependent source "
           "(data_prep.demo with phrases > 0, DeepMine's SdSV task 1)")
    columns = SPEAKER_LABELS[label]
    for column in columns:
        if column not in manifest.columns:
            fail(path, f"speaker_label: {label} needs a '{column}' column in the source "
                 "training manifest; it has none", fix=fix)
        empty = manifest.index[manifest[column] == ""]
        if len(empty):
            fail(path, f"speaker_label: {label} needs a '{column}' in every row of the source "
                 f"training manifest; {len(empty)} rows have none",
                 rows=list(manifest["ID"][empty]) if "ID" in manifest else None, fix=fix)
    return [speaker_class(*values) for values in zip(*(manifest[c] for c in columns))]


def add_speaker_labels(dataset, encoder_path, label="spk_id"):
    """Give ``dataset`` its class (``speaker_class``) and its index (``spk_id_encoded``).

    Arguments
    ---------
    dataset : DynamicItemDataset
        Labelled source dataset.
    encoder_path : str
        Where the label encoder is saved (reloaded when it exists).
    label : str
        A key of :data:`SPEAKER_LABELS`: the classes are speakers or
        (speaker, phrase) pairs.

    Returns
    -------
    speechbrain.dataio.encoder.CategoricalEncoder
        The encoder, one label per class of the dataset.

    Example
    -------
    >>> import tempfile
    >>> data = DynamicItemDataset({"u1": {"spk_id": "a", "phrase": "01"},
    ...                            "u2": {"spk_id": "a", "phrase": "02"}})
    >>> encoder = add_speaker_labels(data, tempfile.mkdtemp() + "/labels.txt", "spk_phrase")
    >>> sorted(encoder.lab2ind)
    [('a', '01'), ('a', '02')]
    """
    encoder = CategoricalEncoder()

    @sb.utils.data_pipeline.takes(*SPEAKER_LABELS[label])
    @sb.utils.data_pipeline.provides("speaker_class")
    def to_class(*values):
        return speaker_class(*values)

    @sb.utils.data_pipeline.takes("speaker_class")
    @sb.utils.data_pipeline.provides("spk_id_encoded")
    def encode(speaker):
        return torch.LongTensor([encoder.encode_label(speaker)])

    dataset.add_dynamic_item(to_class)
    dataset.add_dynamic_item(encode)
    encoder.load_or_create(path=encoder_path, from_didatasets=[dataset],
                           output_key="speaker_class")
    with dataset.output_keys_as(["speaker_class"]):
        encoder.expect_len(len({item["speaker_class"] for item in dataset}))
    return encoder


class PairedDataset(torch.utils.data.Dataset):
    """Each source item paired with a target item; the shorter set cycles.

    SpeechBrain batches one dataset at a time; domain-adversarial training
    needs a labelled source batch and an unlabelled target batch per step.
    The length is that of the longer set. The pairing is a permutation drawn
    from ``seed`` and the epoch (:meth:`set_epoch`), so a run resumed from a
    checkpoint sees the same pairs as one that was never interrupted.

    Arguments
    ---------
    source : DynamicItemDataset
        Labelled source items (``sig``, ``spk_id_encoded``).
    target : DynamicItemDataset
        Unlabelled target items (``sig``); their ``spk_id`` is never output.
    seed : int
        Pairing seed.

    Example
    -------
    >>> src = DynamicItemDataset({"a": {"x": 1}, "b": {"x": 2}, "c": {"x": 3}})
    >>> tgt = DynamicItemDataset({"t": {"x": 9}})
    >>> src.set_output_keys(["id", "x"]); tgt.set_output_keys(["id", "x"])
    >>> pairs = PairedDataset(src, tgt, seed=0)
    >>> len(pairs), pairs[2][1]["id"]
    (3, 't')
    """

    def __init__(self, source, target, seed):
        self.source, self.target, self.seed = source, target, seed
        self.set_epoch(0)

    def set_epoch(self, epoch):
        """Draw the pairing of ``epoch``.

        Arguments
        ---------
        epoch : int
            Epoch number; the pairing depends on it and on the seed only.
        """
        rng = np.random.default_rng([self.seed, epoch])
        length = len(self)
        self.source_index = _cycled_permutation(rng, len(self.source), length)
        self.target_index = _cycled_permutation(rng, len(self.target), length)

    def __len__(self):
        return max(len(self.source), len(self.target))

    def __getitem__(self, index):
        return (
            self.source[int(self.source_index[index])],
            self.target[int(self.target_index[index])],
        )


def _cycled_permutation(rng, size, length):
    """``length`` indices: permutations of ``range(size)`` one after another."""
    rounds = -(-length // size)
    return np.concatenate([rng.permutation(size) for _ in range(rounds)])[:length]


def collate_pairs(items):
    """Collate (source, target) pairs into two PaddedBatch objects.

    Arguments
    ---------
    items : list of tuple
        From :class:`PairedDataset`.

    Returns
    -------
    tuple of PaddedBatch
        ``(source_batch, target_batch)``.
    """
    return PaddedBatch([s for s, _ in items]), PaddedBatch([t for _, t in items])
