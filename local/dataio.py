"""Datasets of the recipe: labelled source crops paired with unlabelled target crops."""

import numpy as np
import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder

from data_prep.manifest import validate
from local.audio import load_random_crop, load_segment


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


def add_speaker_labels(dataset, encoder_path):
    """Encode ``spk_id`` as ``spk_id_encoded`` with a saved CategoricalEncoder.

    Arguments
    ---------
    dataset : DynamicItemDataset
        Labelled source dataset.
    encoder_path : str
        Where the label encoder is saved (reloaded when it exists).

    Returns
    -------
    speechbrain.dataio.encoder.CategoricalEncoder
        The encoder.
    """
    encoder = CategoricalEncoder()

    @sb.utils.data_pipeline.takes("spk_id")
    @sb.utils.data_pipeline.provides("spk_id_encoded")
    def label(spk_id):
        return torch.LongTensor([encoder.encode_label(spk_id)])

    dataset.add_dynamic_item(label)
    encoder.load_or_create(path=encoder_path, from_didatasets=[dataset], output_key="spk_id")
    with dataset.output_keys_as(["spk_id"]):
        encoder.expect_len(len({item["spk_id"] for item in dataset}))
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
