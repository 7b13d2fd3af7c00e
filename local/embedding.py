"""Embedding every distinct utterance of a dataset once, in batches.

Below both the model and the evaluation: the Brain embeds the target
training set for its pseudo-labels (:mod:`local.model.pseudo_labels`), the
verification every evaluation utterance (:mod:`local.evaluation.verification`).
"""

import hashlib
import os

import pandas as pd
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.autocast import AMPConfig, TorchAutocast
from tqdm import tqdm

from local.data.audio import check_lengths, signal_key
from local.whole_files import written_whole


def length_sorted_batches(lengths, batch_size):
    """Batches of ``batch_size`` neighbours in length order: the least padding.

    SpeechBrain's ECAPA-TDNN and x-vector mask the padding in their pooling
    (relative lengths ``wav_lens``), but their convolutions pad with
    reflection at the edges of the tensor, not of each utterance, so the last
    frames of a padded utterance see the zeros after it. Between
    length-sorted neighbours of a large list that padding is a few frames.
    SpeechBrain's ResNet takes no lengths: its pooling averages the padding in.

    Arguments
    ---------
    lengths : list
        Length of each item (any sortable value).
    batch_size : int
        Largest batch.

    Returns
    -------
    list of list of int
        Index batches, longest items first.

    Example
    -------
    >>> length_sorted_batches([5, 3, 4, 5, 2], batch_size=2)
    [[0, 3], [2, 1], [4]]
    """
    order = sorted(range(len(lengths)), key=lambda index: lengths[index], reverse=True)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def equal_length_batches(lengths, batch_size):
    """Batches of indices whose items all have the same length.

    No padding at all: every embedding is exactly what it is alone (see
    :func:`length_sorted_batches`), at the cost of batches of one on corpora
    of varied lengths.

    Arguments
    ---------
    lengths : list
        Length of each item (any hashable, sortable value).
    batch_size : int
        Largest batch.

    Returns
    -------
    list of list of int
        Index batches, longest items first.

    Example
    -------
    >>> equal_length_batches([5, 3, 5, 5, 3], batch_size=2)
    [[0, 2], [3], [1, 4]]
    """
    groups = {}
    for index, length in enumerate(lengths):
        groups.setdefault(length, []).append(index)
    batches = []
    for length in sorted(groups, reverse=True):
        members = groups[length]
        batches += [members[i:i + batch_size] for i in range(0, len(members), batch_size)]
    return batches


BATCHINGS = {"length_sorted": length_sorted_batches, "equal_length": equal_length_batches}


def manifest_lengths(dataset, indices):
    """The items at ``indices`` (``id``, ``wav``) and their ``(samples, sample rate)``.

    From the manifest's ``start``, ``stop`` and ``sample_rate``, without decoding the audio.

    Arguments
    ---------
    dataset : DynamicItemDataset
        A manifest's items.
    indices : iterable of int
        Which.

    Returns
    -------
    tuple
        ``(items, lengths)``.
    """
    with dataset.output_keys_as(["id", "wav", "start", "stop", "sample_rate"]):
        items = [dataset[i] for i in indices]
    return items, [(int(item["stop"]) - int(item["start"]), int(item["sample_rate"]))
                   for item in items]


def embeddable_ids(dataset, shortest=None, longest=None):
    """The IDs of ``dataset`` whose length is within ``[shortest, longest]`` seconds.

    Arguments
    ---------
    dataset : DynamicItemDataset
        A manifest's items.
    shortest, longest : float, optional
        ``min_embed_seconds``, ``max_embed_seconds`` (None: no limit).

    Returns
    -------
    list of str
        In the dataset's order.

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> dataset = DynamicItemDataset({
    ...     "u1": {"wav": "u1.wav", "start": 0, "stop": 16000, "sample_rate": 16000},
    ...     "u2": {"wav": "u2.wav", "start": 0, "stop": 1600, "sample_rate": 16000}})
    >>> embeddable_ids(dataset, shortest=0.25)
    ['u1']
    """
    items, lengths = manifest_lengths(dataset, range(len(dataset)))
    return [item["id"] for item, (samples, rate) in zip(items, lengths)
            if (shortest or 0) <= samples / rate <= (longest or float("inf"))]


def none_embeddable(utterances, recordings, shortest=None, longest=None):
    """Why utterances of which none is within the embedding limits give nothing, and the fix.

    One wording for every refusal of such a set: the target that the
    pseudo-labels would cluster, a training set that a back-end would train on.

    Arguments
    ---------
    utterances : str
        The set, counted: ``"240 target training utterances"``.
    recordings : str
        What to cut into rows of such lengths: ``"them"``, ``"the target's recordings"``.
    shortest, longest : float, optional
        ``min_embed_seconds``, ``max_embed_seconds``.

    Returns
    -------
    tuple
        ``(reason, fix)``, two texts.

    Example
    -------
    >>> reason, fix = none_embeddable("3 utterances of eval.csv", "them", 0.5, 600)
    >>> print(f"{reason}; {fix}")
    none of the 3 utterances of eval.csv is within min_embed_seconds and max_embed_seconds (0.5-600 s), the lengths embedded whole; cut them into rows (start, stop) of such lengths
    """
    return (f"none of the {utterances} is within min_embed_seconds and max_embed_seconds "
            f"({shortest}-{longest} s), the lengths embedded whole",
            f"cut {recordings} into rows (start, stop) of such lengths")


def embedded_in(precision, device_type, embed, *inputs):
    """``embed(*inputs)`` under autocast to ``precision``, in float32: the verification's embeddings.

    The run's ``--eval_precision`` (SpeechBrain's Brain applies it in its
    ``evaluate_batch``, which the verification does not run), as the Brain
    embeds for the report and an exported model for its users.

    Arguments
    ---------
    precision : str
        ``fp32``, ``bf16`` or ``fp16``.
    device_type : str
        ``cpu`` or ``cuda``.
    embed : callable
        Gives the embeddings of ``inputs``.
    *inputs
        Its arguments.

    Returns
    -------
    torch.Tensor
        The embeddings, float32.

    Example
    -------
    >>> embedded_in("bf16", "cpu", torch.nn.Linear(3, 2), torch.ones(1, 3)).dtype
    torch.float32
    """
    with TorchAutocast(device_type=device_type, dtype=AMPConfig.from_name(precision).dtype):
        return embed(*inputs).float()


@torch.no_grad()
def compute_embeddings(embed, dataset, batch_size=16, device="cpu", cache_path=None, ids=None,
                       batching="equal_length", limits=(None, None)):
    """Embed each item of ``dataset`` (or those of ``ids``) once, in batches.

    Arguments
    ---------
    embed : callable
        ``embed(wavs, wav_lens) -> [batch, 1, dim]`` (e.g. ``DANNBrain.embed``),
        run in evaluation mode by the caller.
    dataset : DynamicItemDataset
        Items with ``id`` and ``sig`` (whole utterances).
    batch_size : int
        Largest batch.
    device : str
        Where to run.
    cache_path : str, optional
        When given, embeddings are loaded from it if it exists and saved to
        it otherwise (a ``torch.save`` dict ``{ID: tensor}``); name it with
        :func:`content_key`, so that other audio is never read from it.
    ids : list of str, optional
        Embed only these items.
    batching : str
        ``equal_length`` (:func:`equal_length_batches`) or ``length_sorted``
        (:func:`length_sorted_batches`).
    limits : tuple
        ``(min_embed_seconds, max_embed_seconds)``: items shorter or longer
        are refused before any is embedded (None: no limit).

    Returns
    -------
    dict
        ``{ID: tensor [dim]}`` on the CPU.

    Raises
    ------
    ManifestError
        Naming the items outside ``limits`` (:func:`local.data.audio.check_lengths`).

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> dataset = DynamicItemDataset({
    ...     "u1": {"wav": "u1.wav", "start": 0, "stop": 3, "sample_rate": 16000,
    ...            "sig": torch.ones(3)},
    ...     "u2": {"wav": "u2.wav", "start": 0, "stop": 2, "sample_rate": 16000,
    ...            "sig": torch.full((2,), 2.0)}})
    >>> def embed(wavs, wav_lens):
    ...     return torch.stack([wavs.mean(dim=1), wavs.amax(dim=1)], dim=-1).unsqueeze(1)
    >>> compute_embeddings(embed, dataset)
    {'u1': tensor([1., 1.]), 'u2': tensor([2., 2.])}
    """
    if cache_path and os.path.isfile(cache_path):
        return torch.load(cache_path)
    position = {utt: index for index, utt in enumerate(dataset.data_ids)}
    indices = range(len(dataset)) if ids is None else [position[utt] for utt in ids]
    items, lengths = manifest_lengths(dataset, indices)
    check_lengths(pd.Series([samples / rate for samples, rate in lengths],
                            index=[f"{item['id']} ({item['wav']})" for item in items]),
                  "utterances to embed", *limits)
    dataset.set_output_keys(["id", "sig"])
    embeddings = {}
    for batch_indices in tqdm(BATCHINGS[batching](lengths, batch_size), desc="embedding"):
        batch = PaddedBatch([dataset[indices[i]] for i in batch_indices]).to(device)
        vectors = embed(batch.sig.data, batch.sig.lengths).squeeze(1).cpu()
        embeddings.update(zip(batch.id, vectors))
    if cache_path:
        # An interrupted run leaves no truncated cache.
        with written_whole(cache_path, "wb") as out:
            torch.save(embeddings, out)
    return embeddings


def content_key(dataset, ids=None):
    """A digest of the waveforms of ``dataset``'s items (or those of ``ids``), for cache names.

    It changes with the rows (their IDs, files and spans) and with the audio
    files themselves (:func:`local.data.audio.signal_key`), so that an
    embedding cache named with it is never reused for other audio.

    Arguments
    ---------
    dataset : DynamicItemDataset
        Items with the manifest's ``wav``, ``start``, ``stop``, ``sample_rate``.
    ids : list of str, optional
        Only these items (default all).

    Returns
    -------
    str
        16 hex digits.

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> rows = {"u1": {"wav": "a.wav", "start": 0, "stop": 3, "sample_rate": 16000},
    ...         "u2": {"wav": "a.wav", "start": 3, "stop": 6, "sample_rate": 16000}}
    >>> key = content_key(DynamicItemDataset(rows))
    >>> key == content_key(DynamicItemDataset(rows), ["u2", "u1"]) != content_key(
    ...     DynamicItemDataset(rows), ["u1"])
    True
    """
    digest = hashlib.sha256()
    for utt in sorted(dataset.data_ids if ids is None else ids):
        digest.update(f"{utt} {signal_key(dataset.data[utt])}\n".encode("utf-8"))
    return digest.hexdigest()[:16]
