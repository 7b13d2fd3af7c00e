"""Datasets of the recipe: labelled source crops paired with unlabelled target crops."""

import logging
import os

import numpy as np
import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder

from local.data.audio import load_random_crop, load_segment
from local.data.validation import validate
from local.errors import checked_on_main, fail
from local.whole_files import saved_whole

logger = logging.getLogger(__name__)

# The classes of the speaker head (``speaker_label``) and the manifest columns
# that make one: a speaker, or a speaker saying a phrase (text-dependent
# training, as in SdSV task 1 systems).
SPEAKER_LABELS = {"spk_id": ("spk_id",), "spk_phrase": ("spk_id", "phrase")}
# The random streams of a run (random_seed): each training crop's, each training step's.
CROP_STREAM, STEP_STREAM = 0, 1


def random_seed(seed, stream, epoch, index, process=0):
    """A torch seed for item or step ``index`` of ``epoch`` in one of a run's random streams.

    Drawn from all four numbers, so that every crop and every step has its
    own seed whatever came before it: a run resumed at any step draws what an
    uninterrupted one draws. (The key has a fixed length: numpy's SeedSequence
    gives ``[1]`` and ``[1, 0]`` the same state.) Under DDP a step's draws
    (dropout, the augmentations') are each process's own: a process other
    than the main one adds its rank to the key, a fifth number; the main
    process, and a run of one process, draw as without it.

    Arguments
    ---------
    seed : int
        The run's seed.
    stream : int
        ``CROP_STREAM`` or ``STEP_STREAM``.
    epoch : int
        Epoch number.
    index : int
        Item index in the epoch's pairs, or step number.
    process : int
        The DDP rank of the process that draws (:func:`process_group`); 0,
        the main process's, for one process.

    Returns
    -------
    int
        For ``torch.manual_seed``.

    Example
    -------
    >>> random_seed(1986, CROP_STREAM, 1, 0) == random_seed(1986, CROP_STREAM, 1, 0)
    True
    >>> random_seed(1986, CROP_STREAM, 1, 0) == random_seed(1986, STEP_STREAM, 1, 0)
    False
    >>> random_seed(1986, STEP_STREAM, 1, 0, process=1) == random_seed(1986, STEP_STREAM, 1, 0)
    False
    """
    key = [seed, stream, epoch, index] + ([process] if process else [])
    return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0])


def manifest_dataset(csv_path, check_audio=True):
    """A DynamicItemDataset over a validated manifest.

    Arguments
    ---------
    csv_path : str
        Manifest in the schema of :mod:`local.data.schema`.
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
    local.errors.ManifestError: --speaker_label=phrase: speaker_label must be spk_id (a class per speaker) or spk_phrase (a class per speaker and phrase); got 'phrase'
    Fix: pass --speaker_label=spk_id or --speaker_label=spk_phrase
    """
    label = hparams.get("speaker_label", "spk_id")
    if label not in SPEAKER_LABELS:
        fail(f"--speaker_label={label}", "speaker_label must be spk_id (a class per speaker) or "
             f"spk_phrase (a class per speaker and phrase); got {label!r}",
             fix="pass --speaker_label=spk_id or --speaker_label=spk_phrase")
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
        As from :func:`local.data.manifest_io.read_manifest`.
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
    local.errors.ManifestError: train.csv: speaker_label: spk_phrase needs a 'phrase' column in the source training manifest; it has none
    Fix: pass --speaker_label=spk_id, or train on a text-dependent source (--condition=recipes/demo_text_dependent/condition.yaml, DeepMine's SdSV task 1)
    """
    fix = ("pass --speaker_label=spk_id, or train on a text-dependent source "
           "(--condition=recipes/demo_text_dependent/condition.yaml, DeepMine's SdSV task 1)")
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


def item_classes(dataset, label):
    """The class of each item of ``dataset``, in item order (:func:`speaker_class`).

    Read from the items' columns: through the dynamic items, a million source
    rows took seconds a pass.

    Arguments
    ---------
    dataset : DynamicItemDataset
        Labelled source dataset.
    label : str
        A key of :data:`SPEAKER_LABELS`.

    Returns
    -------
    list
        One class per item.
    """
    columns = SPEAKER_LABELS[label]
    return [speaker_class(*(dataset.data[i][c] for c in columns)) for i in dataset.data_ids]


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
    listed = item_classes(dataset, label)

    def create():
        # As SpeechBrain's load_or_create (classes numbered in order of their
        # first item, as update_from_didataset numbers them), but written
        # whole: it saves in place, and a kill or a full disk would leave half
        # an encoder.
        if not os.path.isfile(encoder_path):
            made = CategoricalEncoder()
            made.update_from_iterable(listed)
            saved_whole(encoder_path, made.save)

    # The other processes wait for the main one's file, or stop with its failure.
    checked_on_main(create)
    encoder.load(encoder_path)
    classes = set(listed)
    # A reloaded encoder (a resumed run) may lack classes of this dataset:
    # encode_label would only fail at their first batch.
    unknown = sorted(map(str, classes - set(encoder.lab2ind)))
    if unknown:
        fail(encoder_path,
             f"lacks {len(unknown)} classes ({label}) of the source training data, e.g. "
             f"{', '.join(unknown[:5])}: it was made by a run with another speaker_label or "
             "source manifest", fix="remove it, or train into another output_folder")
    encoder.expect_len(len(classes))
    return encoder


class PairedDataset(torch.utils.data.Dataset):
    """Each source item paired with a target item; the shorter set cycles.

    SpeechBrain batches one dataset at a time; domain-adversarial training
    needs a labelled source batch and an unlabelled target batch per step.
    The length is that of the longer set. The pairing is a permutation drawn
    from ``seed`` and the epoch (:meth:`set_epoch`), and the random crops of
    pair ``index`` from ``(seed, epoch, index)`` (:func:`random_seed`),
    whichever process or loader worker reads it, so a run resumed from a
    checkpoint sees the same pairs and crops as one that was never interrupted.

    With ``source_batches``, the source items come in the order of its
    batches instead (speakers x utterances for GE2E), and the length is its
    number of batches times its batch size: batched in order with that batch
    size, the pairs' source parts are its batches.

    Arguments
    ---------
    source : DynamicItemDataset
        Labelled source items (``sig``, ``spk_id_encoded``).
    target : DynamicItemDataset
        Unlabelled target items (``sig``); their ``spk_id`` is never output.
    seed : int
        Pairing seed.
    source_batches : SpeakerBatchSampler, optional
        Batches of source indices to follow; its epoch is set with the pairs'.

    Example
    -------
    >>> src = DynamicItemDataset({"a": {"x": 1}, "b": {"x": 2}, "c": {"x": 3}})
    >>> tgt = DynamicItemDataset({"t": {"x": 9}})
    >>> src.set_output_keys(["id", "x"]); tgt.set_output_keys(["id", "x"])
    >>> pairs = PairedDataset(src, tgt, seed=0)
    >>> len(pairs), pairs[2][1]["id"]
    (3, 't')
    """

    def __init__(self, source, target, seed, source_batches=None):
        self.source, self.target, self.seed = source, target, seed
        self.source_batches = source_batches
        self.set_epoch(0)

    def set_epoch(self, epoch):
        """Draw the pairing of ``epoch``.

        Arguments
        ---------
        epoch : int
            Epoch number; the pairing depends on it and on the seed only.
        """
        self.epoch = epoch
        rng = np.random.default_rng([self.seed, epoch])
        length = len(self)
        if self.source_batches is None:
            self.source_index = _cycled_permutation(rng, len(self.source), length)
        else:
            self.source_batches.set_epoch(epoch)
            self.source_index = np.concatenate(list(self.source_batches))
        self.target_index = _cycled_permutation(rng, len(self.target), length)

    def __len__(self):
        if self.source_batches is None:
            return max(len(self.source), len(self.target))
        return len(self.source_batches) * self.source_batches.batch_size

    def steps_per_epoch(self, batch_size):
        """Training steps of an epoch on each process, for the schedule of the domain losses.

        Arguments
        ---------
        batch_size : int
            Pairs per step.

        Returns
        -------
        int
            Whole batches per process; speaker-major batches are dealt out
            whole to the processes (:meth:`process_batches`).
        """
        if self.source_batches is None:
            return len(self) // (batch_size * process_group()[0])
        return len(self.process_batches(batch_size))

    def process_batches(self, batch_size):
        """This process's batches of pair indices, with ``source_batches``: its share of them.

        Under DDP, process ``rank`` of ``world`` takes the epoch's batches
        ``rank``, ``rank + world``, ..., whole: no batch goes to two processes,
        and the epoch's number of batches (:func:`speaker_batches_per_epoch`)
        gives each as many. The positions of the batches are those of every
        epoch; each epoch's pairs fill them anew (:meth:`set_epoch`).

        Arguments
        ---------
        batch_size : int
            Pairs per batch: the batch size of ``source_batches``.

        Returns
        -------
        list of range
            The pair indices of each of this process's batches, for a
            DataLoader's ``batch_sampler``.
        """
        world, rank = process_group()
        return [range(start, start + batch_size)
                for start in range(rank * batch_size, len(self), world * batch_size)]

    def __getitem__(self, index):
        # The crops draw from torch's CPU random state: seeded for this pair, and
        # given back as it was, so that the training step's draws are untouched.
        # Only the CPU generator, the one given back: torch.manual_seed would also
        # seed the CUDA generators, for about 0.1 ms a pair.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(
                random_seed(self.seed, CROP_STREAM, self.epoch, index))
            return (
                self.source[int(self.source_index[index])],
                self.target[int(self.target_index[index])],
            )


class SpeakerBatchSampler(torch.utils.data.Sampler):
    """Batches of ``n_speakers`` speakers x ``n_utterances`` utterances, speaker-major.

    The batches that GE2E (:mod:`local.model.speaker_heads`) needs: the first
    ``n_utterances`` indices of a batch are of one speaker, the next ones of
    another, and so on. Each batch draws its speakers uniformly, without
    replacement, among those with at least 2 utterances, whatever their
    number; each speaker drawn brings ``n_utterances`` distinct utterances
    drawn at random when it has that many, and otherwise all of its
    utterances, repeated in turn until there are ``n_utterances`` (a
    repeated utterance is another random crop of it, the same audio when it
    is shorter than the crop: GE2E leaves all crops of an utterance out of
    its own speaker's centroid, so a speaker of one utterance would have
    none, and is never drawn). The batches depend on ``seed`` and the epoch
    (:meth:`set_epoch`) only, so that a run resumed at an epoch boundary sees
    those of an uninterrupted one.

    Arguments
    ---------
    speakers : sequence
        The speaker label of each item of the dataset, by index.
    n_speakers : int
        Speakers per batch (N).
    n_utterances : int
        Utterances per speaker in a batch (M).
    n_batches : int
        Batches per epoch.
    seed : int
        Sampling seed.

    Example
    -------
    >>> speakers = ["a", "a", "b", "b", "b", "c", "c", "d"]
    >>> sampler = SpeakerBatchSampler(speakers, 2, 3, n_batches=3, seed=0)
    >>> [[speakers[i] for i in batch] for batch in sampler]  # never d, of one utterance
    [['b', 'b', 'b', 'c', 'c', 'c'], ['c', 'c', 'c', 'a', 'a', 'a'], ['b', 'b', 'b', 'c', 'c', 'c']]
    >>> list(sampler)[0]  # speaker c's two utterances, one of them twice
    [3, 4, 2, 5, 6, 5]
    """

    def __init__(self, speakers, n_speakers, n_utterances, n_batches, seed):
        labels, codes = np.unique(np.asarray(speakers), return_inverse=True)
        if n_speakers < 1 or n_utterances < 1:
            raise ValueError("Speaker batches need n_speakers and n_utterances >= 1; got "
                             f"{n_speakers} and {n_utterances}")
        if n_batches < 1:
            fail(f"--ge2e_speakers={n_speakers} --ge2e_utterances={n_utterances}",
                 f"No batch of {n_speakers} speakers x {n_utterances} utterances in an epoch "
                 f"(n_batches {n_batches}): the training sets are smaller than one batch",
                 fix="lower ge2e_speakers or ge2e_utterances")
        # The indices of each speaker's items, of the speakers with 2 or more.
        items = np.split(np.argsort(codes, kind="stable"), np.cumsum(np.bincount(codes))[:-1])
        self.items = [indices for indices in items if len(indices) >= 2]
        if len(self.items) < len(items):
            logger.info("GE2E batches leave out the %d of the %d source speakers with one "
                        "utterance, which has no other to be compared with",
                        len(items) - len(self.items), len(items))
        if len(self.items) < n_speakers:
            fail(f"--ge2e_speakers={n_speakers}",
                 f"Batches of {n_speakers} speakers need that many speakers of at least 2 "
                 f"utterances; the source training set has {len(self.items)} (of "
                 f"{len(labels)} speakers)", fix="lower ge2e_speakers")
        self.n_speakers, self.n_utterances = n_speakers, n_utterances
        self.batch_size = n_speakers * n_utterances
        self.n_batches, self.seed = n_batches, seed
        self.epoch = 0

    def set_epoch(self, epoch):
        """Draw the batches of ``epoch`` from now on.

        Arguments
        ---------
        epoch : int
            Epoch number; the batches depend on it and on the seed only.
        """
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        for _ in range(self.n_batches):
            chosen = rng.choice(len(self.items), self.n_speakers, replace=False)
            yield [int(i) for speaker in chosen
                   for i in np.resize(rng.permutation(self.items[speaker]), self.n_utterances)]

    def __len__(self):
        return self.n_batches


def speaker_batches_per_epoch(pairs, batch_size, processes):
    """Speaker-major batches of an epoch: those ``pairs`` fill, up to a multiple of ``processes``.

    As many as one process takes, so that an epoch covers the speakers as
    often in any number of DDP processes; each process takes every
    ``processes``-th of them (:meth:`PairedDataset.process_batches`), and
    the rounding up gives each as many batches, each drawn for it, where
    padding would repeat a batch of another process.

    Arguments
    ---------
    pairs : int
        Training pairs of an epoch: the longer training set's utterances.
    batch_size : int
        Pairs per batch (speakers x utterances).
    processes : int
        DDP processes.

    Returns
    -------
    int
        Batches of the epoch; 0 when ``pairs`` fill none.

    Example
    -------
    >>> speaker_batches_per_epoch(240, 128, 1), speaker_batches_per_epoch(240, 128, 2)
    (1, 2)
    >>> speaker_batches_per_epoch(240, 14, 2), speaker_batches_per_epoch(100, 128, 2)
    (18, 0)
    """
    return -(-(pairs // batch_size) // processes) * processes


def process_group():
    """``(world size, rank)`` of this process's DDP group; ``(1, 0)`` without one.

    Returns
    -------
    tuple
        ``(world size, rank)``.

    Example
    -------
    >>> process_group()
    (1, 0)
    """
    if torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


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
