"""Waveform augmentation of the training crops (``--augment=True``), with SpeechBrain's Augmenter.

``hparams/common.yaml`` builds ``wav_augment`` as SpeechBrain's VoxCeleb
speaker recipes do (``speechbrain.augment``); this module keeps of its
augmentations those that have their data, refuses the settings it cannot
serve, applies it to a step's ``(source, target)`` pair of batches, and
keeps in the checkpoints how far its noise and impulse-response loaders
have read (:class:`DataPositions`).

Both domains are augmented, alike: the target crops train the domain
discriminator, MMD and, once pseudo-labelled, the speaker head; with the
source alone augmented, "augmented or not" would be one more difference
between the domains for the discriminator to read and the encoder to erase,
and the pseudo-speakers would train on clean crops only.
"""

import json

import torch
from speechbrain.augment.time_domain import AddNoise, AddReverb
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.legacy import load_sb_extended_csv
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

from local.data.schema import SAMPLE_RATE, audio_info
from local.errors import ManifestError, fail

# The data files of the augmentations that need them: hparams key, and what it holds.
DATA_KEYS = {"noise_csv": "noise recordings", "rir_csv": "room impulse responses"}
_CSV_FIX = ("write it as SpeechBrain's speechbrain.augment.preparation.write_csv does: a "
            "header ID,duration,wav,wav_format,wav_opts and a row per 16 kHz audio file, "
            "its path absolute or relative to the working directory")


def available(augmentations):
    """The augmentations that have their data: AddNoise and AddReverb only with a CSV.

    SpeechBrain's ``enable_augmentations`` would do this, but the Augmenter
    sets its number of augmentations per copy before it drops the disabled
    ones, and ``replicate_labels`` then repeats the labels by that number:
    the list is chosen here instead.

    Arguments
    ---------
    augmentations : list of torch.nn.Module
        SpeechBrain augmentations; those with a ``csv_file`` of None are left out.

    Returns
    -------
    list of torch.nn.Module
        The others, in order.

    Example
    -------
    >>> from speechbrain.augment.time_domain import AddNoise, DropChunk
    >>> [type(a).__name__ for a in available([AddNoise(csv_file=None), DropChunk()])]
    ['DropChunk']
    """
    return [aug for aug in augmentations if getattr(aug, "csv_file", "") is not None]


def data_files(hparams):
    """``{key: path}`` of the data files a run augments with: none without ``augment``.

    Arguments
    ---------
    hparams : dict
        Model hparams: ``augment`` and the keys of :data:`DATA_KEYS`.

    Returns
    -------
    dict
        Such as ``{"noise_csv": "noise.csv"}``.

    Example
    -------
    >>> data_files({"augment": True, "noise_csv": "noise.csv", "rir_csv": None})
    {'noise_csv': 'noise.csv'}
    >>> data_files({"augment": False, "noise_csv": None, "rir_csv": None})
    {}
    """
    if not hparams["augment"]:
        return {}
    return {key: hparams[key] for key in DATA_KEYS if hparams[key] is not None}


def check_augmentation(hparams_file, hparams):
    """Refuse augmentation settings that would not train as asked, before any training.

    Arguments
    ---------
    hparams_file : str
        The model hparams file, named in the messages.
    hparams : dict
        The loaded model hparams: ``augment``, ``noise_csv``, ``rir_csv``,
        ``speaker_head`` and, for an SSL front end, ``cache_ssl_features``.

    Raises
    ------
    ManifestError
        A data file given without ``augment`` (it would do nothing), the
        SSL feature cache (of the clean audio) with ``augment``, or a noise
        or RIR CSV that is missing or malformed (:func:`check_data_csv`).
    """
    given = {key: hparams[key] for key in DATA_KEYS if hparams[key] is not None}
    if not hparams["augment"]:
        if given:
            options = " ".join(f"--{key}={path}" for key, path in given.items())
            fail(hparams_file, f"{options} augments nothing without --augment=True",
                 fix="pass --augment=True as well, or leave them out")
        return
    if hparams.get("cache_ssl_features"):
        fail(hparams_file, "--augment=True with --cache_ssl_features=True: the cached hidden "
                           "states are those of the clean audio, so no augmented crop would "
                           "reach the model",
             fix="pass --cache_ssl_features=False (the SSL model then runs on every "
                 "augmented crop, at its cost), or --augment=False")
    for key, path in given.items():
        check_data_csv(path, key)


def check_data_csv(path, key):
    """Refuse a noise or RIR CSV that SpeechBrain's AddNoise or AddReverb could not read.

    Read with SpeechBrain's own reader (``load_sb_extended_csv``); then every
    file's header, once per run (0.12 ms a file in the page cache: 7 s for
    60,000 impulse responses; more from a cold disk).

    Arguments
    ---------
    path : str
        The CSV.
    key : str
        Its option (``noise_csv`` or ``rir_csv``), named in the messages.

    Raises
    ------
    ManifestError
        Naming the file, and the rows of any audio file that is missing,
        unreadable or not 16 kHz.
    """
    what = DATA_KEYS[key]
    try:
        rows, _, names = load_sb_extended_csv(path)
    except FileNotFoundError:
        fail(path, f"--{key}: no such file", fix=f"give a CSV of {what}; {_CSV_FIX}")
    except (KeyError, ValueError, IndexError, TypeError) as err:
        fail(path, f"--{key}: not a SpeechBrain augmentation CSV ({err})", fix=_CSV_FIX)
    if not rows or names[:1] != ["wav"]:
        problem = f"its first audio column is {names[:1]}, not wav" if rows else "has no rows"
        fail(path, f"--{key}: {problem}", fix=_CSV_FIX)
    problems = [problem for utt, row in rows.items()
                if (problem := _audio_problem(utt, row["wav_data"].data))]
    if problems:
        fail(path, f"--{key}: {len(problems)} of its {len(rows)} {what} cannot be used",
             rows=problems, fix=_CSV_FIX)


def _audio_problem(utt, wav):
    """Why the file of a CSV row cannot be used, or None."""
    try:
        rate, _ = audio_info(wav)
    except ManifestError as err:
        return f"{utt}: {str(err).splitlines()[0]}"
    return None if rate == SAMPLE_RATE else f"{utt}: {wav} is {rate} Hz, not {SAMPLE_RATE}"


def augmented_pair(augmenter, source, target):
    """A step's batches with the augmented copies of every crop, each with its crop's labels.

    Source and target crops go through one call of ``augmenter``, so that
    they share its draw (a speed changes every crop's length alike) and its
    padding; SpeechBrain's ``replicate_labels`` then gives each output row
    the index of its crop, through which every label follows: the source
    speaker classes and the utterance IDs (whose pseudo-speakers the target
    crops take). The source rows come first, as the Brain expects.

    Arguments
    ---------
    augmenter : speechbrain.augment.augmenter.Augmenter
        The augmentation, with ``concat_original`` (the clean crops kept).
    source : PaddedBatch
        ``id``, ``sig`` and ``spk_id_encoded`` of the source crops.
    target : PaddedBatch
        ``id`` and ``sig`` of the target crops.

    Returns
    -------
    tuple of PaddedBatch
        ``(source, target)``, each with the same keys, more rows.
    """
    n_source = len(source)
    wavs, lengths = augmenter(*_crops(source, target))
    crops = augmenter.replicate_labels(torch.arange(n_source + len(target)))
    samples = torch.round(lengths * wavs.shape[1]).long()

    def rows(selected, labelled):
        examples = []
        for row in selected.tolist():
            crop = int(crops[row])
            part, index = (source, crop) if crop < n_source else (target, crop - n_source)
            example = {"id": part.id[index], "sig": wavs[row, :samples[row]]}
            if labelled:
                example["spk_id_encoded"] = source.spk_id_encoded.data[index]
            examples.append(example)
        return PaddedBatch(examples)

    is_source = crops < n_source
    return (rows(torch.nonzero(is_source).flatten(), True),
            rows(torch.nonzero(~is_source).flatten(), False))


def _crops(source, target):
    """The crops of a step's ``(source, target)`` batches as the Augmenter takes them:
    ``(waveforms, relative lengths)``, the source ones first."""
    return (torch.cat([source.sig.data, target.sig.data]),
            torch.cat([source.sig.lengths, target.sig.lengths]))


# The augmentations that draw their files from a DataLoader of their own, built
# at their first call as `data_loader`, and the attribute of its iterator. Relies
# on speechbrain 1.1.2's internals (tests/unit/test_augmentation.py): those
# attributes, the iterator's `_num_yielded` and SaveableDataLoader's
# `_speechbrain_recovery_skip_to`.
_LOADER_ITERATORS = {AddNoise: "noise_data", AddReverb: "rir_data"}


@register_checkpoint_hooks
class DataPositions:
    """How far the noise and impulse-response loaders of an Augmenter have read, for a resume.

    SpeechBrain's ``AddNoise`` and ``AddReverb`` take their files from a
    DataLoader of their own, built at their first call, whose order is one
    permutation drawn from the run's seed, taken again at each pass. A resumed
    run would start it again at its first file, and then add other noises and
    impulse responses than an uninterrupted run. Registered with the
    Checkpointer, this saves how many batches each loader's pass has given
    and, at the first step after a resume (:meth:`restore`), takes each loader
    back there.

    Arguments
    ---------
    augmenter : speechbrain.augment.augmenter.Augmenter
        The run's ``wav_augment``.
    """

    def __init__(self, augmenter):
        self.augmenter = augmenter
        self.pending = {}  # {augmentation name: batches to skip}, from a checkpoint

    def iterators(self):
        """``{augmentation name: (augmentation, attribute of its loader's iterator)}``."""
        return {name: (augmentation, attribute)
                for name, augmentation in self.augmenter.augmentations.items()
                for kind, attribute in _LOADER_ITERATORS.items()
                if isinstance(augmentation, kind)}

    def restore(self, source, target):
        """Take each loader to its position in the checkpoint the run resumed from, once.

        A loader not yet built (by its augmentation's first call, at the
        batch size of that call, which it keeps) is built by a call on the
        step's crops, whose output is not used: call it before the step's
        random state is seeded. A position of an augmentation the Augmenter
        no longer has (a change of ``noise_csv`` or ``rir_csv`` accepted on
        resuming) is left out.

        Arguments
        ---------
        source, target : PaddedBatch
            The step's batches, as :func:`augmented_pair` takes them.
        """
        iterators = self.iterators()
        for name, skip in self.pending.items():
            if name not in iterators:
                continue
            augmentation, attribute = iterators[name]
            if not hasattr(augmentation, "data_loader"):
                self.augmenter.augment(*_crops(source, target), [name])
            # SpeechBrain's SaveableDataLoader fast-forwards a new iterator's sampler.
            augmentation.data_loader._speechbrain_recovery_skip_to = skip
            setattr(augmentation, attribute, iter(augmentation.data_loader))
        self.pending = {}

    @mark_as_saver
    def _save(self, path):
        positions = {name: getattr(augmentation, attribute)._num_yielded
                     for name, (augmentation, attribute) in self.iterators().items()
                     if hasattr(augmentation, attribute)}
        with open(path, "w", encoding="utf-8") as fout:
            json.dump(positions, fout)

    @mark_as_loader
    def _recover(self, path, end_of_epoch):
        with open(path, encoding="utf-8") as fin:
            self.pending = json.load(fin)
