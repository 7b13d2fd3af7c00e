"""Hidden states of a frozen SSL model, cached on disk so that training skips its forward.

A frozen SSL model computes the same hidden states for an utterance at every
epoch; only the weighted layer sum and what follows it train. With
``cache_ssl_features: True`` the hidden states of every layer of every whole
training utterance are computed once, before training, and stored in half
precision (one ``.npy`` file per utterance, ``[frames, layers, dim]``, so
that a crop is one contiguous read). Each epoch then draws its random crops in
frame space from these files, and the front end
(:class:`local.model.ssl_frontend.SSLFrontend`) mixes them with its learnable
weights instead of running the SSL model.

A cached crop is an approximation of the SSL model run on the waveform crop:

* Its start is a whole number of frames, i.e. a multiple of the CNN's stride
  (320 samples, 20 ms at 16 kHz), drawn uniformly over the utterance as the
  waveform crop's start is.
* Its frames are those of the whole utterance: the transformer layers (and
  the waveform normalisation of checkpoints with ``do_normalize``) saw the
  whole utterance, not just the crop.
* An utterance shorter than the crop has its frames repeated, where the
  waveform crop repeats its samples.

The cache is for small corpora (hours of audio; wavlm-base-plus needs about
3.6 GB per hour, see ``benchmarks/README.md``) and the frozen SSL model only.
"""

import fcntl
import json
import math
import os
from urllib.parse import quote

import numpy as np
import pandas as pd
import speechbrain as sb
import torch
from tqdm import tqdm

from local.data.audio import check_lengths, signal_key
from local.data.schema import SAMPLE_RATE
from local.environment import installed_versions
from local.errors import fail, failing_on_full_disk
from local.whole_files import written_whole

# Cached hidden states are those of one frozen model.
FROZEN_ONLY = ("cache_ssl_features needs a frozen SSL model: a fine-tuned one "
               "(freeze_ssl: False) gives other hidden states at every step")
FROZEN_ONLY_FIX = "set freeze_ssl: True or cache_ssl_features: False"
FULL_DISK_FIX = ("or pass --ssl_features_folder= a folder on another disk; the hidden states "
                 "cached before are intact, and the same command caches only the rest")
# The libraries that compute the hidden states, whose versions the cache records.
HIDDEN_STATE_LIBRARIES = ("torch", "transformers")
INFO_FILE = "cache_info.json"
# Held while a run reads or writes INFO_FILE.
LOCK_FILE = "cache_info.lock"


def frame_geometry(config):
    """Receptive field and stride, in samples, of an SSL model's CNN feature encoder.

    Arguments
    ---------
    config : transformers.PretrainedConfig
        A wav2vec2 or WavLM configuration (``conv_kernel``, ``conv_stride``).

    Returns
    -------
    tuple of int
        ``(receptive_field, stride)``: 400 and 320 for the base models.

    Example
    -------
    >>> from transformers import WavLMConfig
    >>> frame_geometry(WavLMConfig())
    (400, 320)
    """
    receptive, stride = 1, 1
    for kernel, step in zip(config.conv_kernel, config.conv_stride):
        receptive += (kernel - 1) * stride
        stride *= step
    return receptive, stride


def frame_count(samples, receptive_field, stride):
    """Frames the CNN feature encoder outputs for ``samples`` samples.

    Arguments
    ---------
    samples : int
        Waveform length.
    receptive_field : int
        Samples seen by one frame.
    stride : int
        Samples between frames.

    Returns
    -------
    int
        Number of frames (0 for a waveform shorter than one receptive field).

    Example
    -------
    >>> frame_count(48000, 400, 320)
    149
    """
    return max(0, (samples - receptive_field) // stride + 1)


def cache_path(folder, utt_id, key):
    """File of the cached hidden states of ``utt_id``, whose waveform has the key ``key``.

    Arguments
    ---------
    folder : str
        Cache folder.
    utt_id : str
        Utterance ID (any characters; it is quoted into a file name).
    key : str
        :func:`local.data.audio.signal_key` of its row: changed audio or
        another span under the same ID is another file.

    Returns
    -------
    str
        ``<folder>/<quoted ID>.<key>.npy``.

    Example
    -------
    >>> cache_path("cache", "spk1/utt 2", "0123abcd")
    'cache/spk1%2Futt%202.0123abcd.npy'
    """
    return os.path.join(folder, f"{quote(utt_id, safe='')}.{key}.npy")


def cache_paths(folder, dataset):
    """``{ID: cache file}`` of every item of a manifest dataset (:func:`cache_path`).

    Arguments
    ---------
    folder : str
        Cache folder.
    dataset : DynamicItemDataset
        Items with the manifest's ``wav``, ``start``, ``stop``, ``sample_rate``.

    Returns
    -------
    dict
        The file each item's hidden states are cached in.
    """
    return {utt: cache_path(folder, utt, signal_key(dataset.data[utt]))
            for utt in dataset.data_ids}


def cache_hidden_states(frontend, dataset, folder, device="cpu", longest=None):
    """Write the hidden states of every whole utterance of ``dataset`` not yet cached.

    Each utterance runs alone through the SSL model, so that no padding
    reaches it. ``folder/cache_info.json`` records the SSL model (its source
    and the fingerprint of the files it was loaded from,
    :func:`local.model.ssl_frontend.ssl_fingerprint`), its frame geometry and
    the versions of :data:`HIDDEN_STATE_LIBRARIES`; a folder written for
    another model, for the files of the same source before they were
    replaced, or under another torch or transformers, is refused. Several runs may fill one folder
    at once (:mod:`local.whole_files`); of runs of different models that find
    it without a record at once, the first to record its model fills it and
    the others are refused.

    Arguments
    ---------
    frontend : local.model.ssl_frontend.SSLFrontend
        Front end with a frozen SSL model.
    dataset : DynamicItemDataset
        Items with ``id`` and ``sig``, the whole utterance at 16 kHz
        (:func:`local.data.dataio.add_whole_pipeline`).
    folder : str
        Cache folder (created if missing).
    device : str or torch.device
        Where the SSL model runs.
    longest : float, optional
        ``max_embed_seconds``: longer utterances are refused before any is
        cached (None: no limit), as are utterances shorter than one frame of
        the SSL model (its receptive field), which have no hidden states.

    Returns
    -------
    dict
        The cache's ``source``, ``fingerprint``, ``receptive_field``, ``stride``
        and ``libraries``.

    Raises
    ------
    ManifestError
        Naming the utterances too short or too long.
    """
    if not frontend.ssl.freeze:
        fail("--cache_ssl_features=True", FROZEN_ONLY, fix=FROZEN_ONLY_FIX)
    receptive, stride = frame_geometry(frontend.ssl.config)
    _check_whole_lengths(dataset, receptive, longest)
    info = {"source": frontend.source, "fingerprint": frontend.fingerprint,
            "receptive_field": receptive, "stride": stride,
            "libraries": installed_versions(HIDDEN_STATE_LIBRARIES)}
    os.makedirs(folder, exist_ok=True)
    _check_model(folder, info)
    paths = cache_paths(folder, dataset)
    missing = [i for i, utt in enumerate(dataset.data_ids) if not os.path.isfile(paths[utt])]
    frontend.to(device).eval()
    with dataset.output_keys_as(["id", "sig"]):
        for index in tqdm(missing, desc="caching SSL hidden states"):
            item = dataset[index]
            states = frontend.hidden_states(item["sig"].unsqueeze(0).to(device))[:, 0]
            array = states.transpose(0, 1).to(torch.float16).cpu().numpy()
            # An interrupted run leaves no truncated file that a later one
            # would take for a cached utterance; numpy's error of a full disk
            # names neither the disk nor the cause, and is named here.
            with written_whole(paths[item["id"]], "wb") as fout, failing_on_full_disk(
                    folder, "the SSL feature cache", FULL_DISK_FIX):
                np.save(fout, array)
    return info


def _check_model(folder, info):
    """Record the model ``info`` in ``folder``, or refuse a folder that records another.

    Under a lock: of runs with different models that find the folder without
    a record at once, one records its model and the others are refused,
    rather than each taking the files of the others for its own.
    """
    info_path = os.path.join(folder, INFO_FILE)
    with open(os.path.join(folder, LOCK_FILE), "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(info_path):
            with written_whole(info_path, encoding="utf-8") as fout:
                json.dump(info, fout)
            return
        with open(info_path, encoding="utf-8") as fin:
            found = json.load(fin)
    if found == info:
        return
    if {**found, "libraries": info["libraries"]} == info:
        # The same model files under another torch or transformers may give other hidden states.
        problem = (f"holds hidden states computed with other libraries "
                   f"({found.get('libraries', 'not recorded')}, not {info['libraries']})")
    else:
        replaced = {**found, "fingerprint": info["fingerprint"]} == info
        problem = (f"holds the hidden states of another model ({found}, not {info})"
                   + (f": the files of {info['source']} are not those it was filled "
                      "from" * replaced))
    fail(folder, problem, fix="delete the folder, or set ssl_features_folder to another one")


def _check_whole_lengths(dataset, receptive_field, longest):
    """Refuse items shorter than ``receptive_field`` samples at 16 kHz or longer than ``longest`` s."""
    rows = pd.DataFrame.from_dict(dataset.data, orient="index")
    rows.index = rows.index + " (" + rows["wav"] + ")"
    native = rows["stop"] - rows["start"]
    seconds = native / rows["sample_rate"]
    samples = -(-native * SAMPLE_RATE // rows["sample_rate"])  # as the resampling gives them
    short = samples[samples < receptive_field]
    if len(short):
        fail("cache_ssl_features: True", f"{len(short)} training utterances are shorter than one "
             f"frame of the SSL model ({receptive_field} samples at 16 kHz): they have no "
             "hidden states to cache", rows=[f"{name}: {n} samples" for name, n in short.items()],
             fix="take them out of the training manifest, or set cache_ssl_features: False "
                 "(a waveform crop repeats a short utterance)")
    check_lengths(seconds, "cache_ssl_features: True: the training utterances, whose SSL "
                           "hidden states are computed whole", longest=longest)


def add_cached_crop_pipeline(dataset, folder, seconds):
    """Give ``dataset`` a ``sig`` item: a random crop of the cached hidden states.

    The crop has as many frames as the SSL model gives for a ``seconds``-long
    waveform and starts at a random frame (see the module's notes on how it
    differs from the SSL model run on a waveform crop).

    Arguments
    ---------
    dataset : DynamicItemDataset
        Manifest items, all cached in ``folder`` by :func:`cache_hidden_states`.
    folder : str
        Cache folder.
    seconds : float
        Crop length.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, INFO_FILE), "w") as fout:
    ...     json.dump({"source": "m", "receptive_field": 400, "stride": 320}, fout)
    >>> dataset = DynamicItemDataset({"u1": {"wav": "u1.wav", "start": 0, "stop": 9600,
    ...                                       "sample_rate": 16000}})
    >>> np.save(cache_paths(folder, dataset)["u1"], np.ones((30, 3, 4), dtype=np.float16))
    >>> add_cached_crop_pipeline(dataset, folder, seconds=0.5)
    >>> dataset.set_output_keys(["sig"])
    >>> dataset[0]["sig"].shape, dataset[0]["sig"].dtype
    (torch.Size([24, 3, 4]), torch.float16)
    """
    with open(os.path.join(folder, INFO_FILE), encoding="utf-8") as fin:
        info = json.load(fin)
    frames = frame_count(round(seconds * SAMPLE_RATE), info["receptive_field"],
                         info["stride"])
    paths = cache_paths(folder, dataset)
    missing = [utt for utt in dataset.data_ids if not os.path.isfile(paths[utt])]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} utterances (first: {missing[0]}) have no hidden states in the SSL "
            f"feature cache {folder}: fill it with cache_hidden_states first."
        )

    @sb.utils.data_pipeline.takes("id")
    @sb.utils.data_pipeline.provides("sig")
    def crop(utt_id):
        # Memory-mapped: only the crop's frames are read from disk.
        states = np.load(paths[utt_id], mmap_mode="r")
        if len(states) > frames:
            start = int(torch.randint(0, len(states) - frames + 1, (1,)))
            return torch.from_numpy(np.array(states[start:start + frames]))
        repeats = math.ceil(frames / len(states))
        return torch.from_numpy(np.array(states)).repeat(repeats, 1, 1)[:frames]

    dataset.add_dynamic_item(crop)
