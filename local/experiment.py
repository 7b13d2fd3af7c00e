"""A run of the recipe but its training: settings, data, the Brain, and the verification.

``train_dann.py`` trains what :func:`prepare_experiment` builds, then
verifies it (:func:`evaluate`); ``evaluate.py`` verifies a trained run.
"""

import contextlib
import functools
import io
import logging
import os
import sys

import ruamel.yaml
import speechbrain as sb
from hyperpyyaml import resolve_references
from speechbrain.core import INTRA_EPOCH_CKPT_FLAG
from speechbrain.dataio.dataset import DynamicItemDataset

from local.data.dataio import (
    PairedDataset,
    SpeakerBatchSampler,
    add_crop_pipeline,
    add_speaker_labels,
    add_whole_pipeline,
    item_classes,
    manifest_dataset,
    speaker_batches_per_epoch,
    speaker_classes,
    speaker_label,
)
from local.data.manifest_io import read_manifest
from local.data.ssl_cache import add_cached_crop_pipeline, cache_hidden_states
from local.data.validation import check_manifest_audio_once, validate
from local.errors import ManifestError, checked_on_main, fail
from local.evaluation.verification import (
    check_cohort,
    check_dcf_settings,
    check_score_norm,
    verify,
)
from local.model.augmentation import check_augmentation, data_files
from local.model.checkpoints import checkpoint_identity
from local.model.dann_brain import DANNBrain
from local.model.pseudo_labels import check_oracle_speakers
from local.provenance import code_version, trained_by, write_provenance
from local.run_folder import (
    SSL_MODEL_KEY,
    accept_settings,
    check_one_run,
    check_own_checkpoints,
    hold_run_folder,
    other_save_folder,
    record_run,
    trained_manifests,
)
from local.settings import (
    RECIPE_FOLDER,
    check_condition_files,
    check_device,
    check_precision,
    check_ssl_dim,
    check_trainable,
    load_condition,
    load_model_hparams,
    model_text,
    parse_arguments,
    passed_options,
    plain_values,
    PROCESSES_KEY,
    processes_line,
    run_options,
    run_settings,
    training_processes,
)
from local.whole_files import written_whole

logger = logging.getLogger(__name__)


def dataio_prep(hparams, condition, device="cpu", trained_on=()):
    """Paired training set, speaker label encoder, evaluation and cohort datasets.

    Every manifest, trial list and enrolment table is validated here, before
    any training, so that a bad trial list, one that scores training
    speakers, or a score-normalisation cohort smaller than ``cohort_top_k``
    fails in seconds.

    Arguments
    ---------
    hparams : dict
        Model hparams.
    condition : dict
        Condition hparams.
    device : str or torch.device
        Where the SSL model fills the feature cache (``cache_ssl_features``).
    trained_on : sequence of str
        The training manifests of the run's checkpoints that the condition
        does not name (:func:`local.run_folder.trained_manifests`): its trial
        lists may share no speaker with them either.

    Returns
    -------
    dict
        ``train_pairs`` (:class:`PairedDataset`; for a speaker head with a
        ``batch_layout`` (GE2E), its source parts follow a
        :class:`SpeakerBatchSampler`), ``label_encoder``, ``eval``
        (whole-utterance datasets keyed by evaluation manifest path) and
        ``training_utterances`` (``{"source": ..., "target": ...}``, whole
        utterances of the training manifests, for the score-normalisation
        cohort, the PLDA back-ends and the target's pseudo-labelling).
    """
    for spec in condition["evaluation"].values():
        validate(spec["manifest"], spec["trials"], spec.get("enrolment"), check_audio=False,
                 train_manifests=[condition["source_train"], condition["target_train"],
                                  *trained_on],
                 allow_speaker_overlap=hparams["allow_speaker_overlap"],
                 embed_seconds=(hparams["min_embed_seconds"], hparams["max_embed_seconds"]))
    eval_manifests = dict.fromkeys(spec["manifest"] for spec in condition["evaluation"].values())
    eval_datasets = {path: manifest_dataset(path, check_audio=False) for path in eval_manifests}
    for dataset in eval_datasets.values():
        add_whole_pipeline(dataset)
    source = manifest_dataset(condition["source_train"], check_audio=False)
    target = manifest_dataset(condition["target_train"], check_audio=False)
    # Whole utterances of the same (already validated) training rows.
    utterances = {}
    for domain, dataset in (("source", source), ("target", target)):
        utterances[domain] = DynamicItemDataset(dataset.data)
        add_whole_pipeline(utterances[domain])
    if hparams["pseudo_labels"].oracle:
        rows = utterances["target"].data
        check_oracle_speakers(rows, {utt: row.get("spk_id") for utt, row in rows.items()},
                              condition["target_train"])
    # From the manifest, before the audio is read: the cohort a verification would draw.
    check_cohort(hparams, utterances, condition[f"{hparams['cohort_domain']}_train"])
    if hparams["check_audio"]:
        # Once per manifest version, by the main process; the others wait for it.
        for path in dict.fromkeys([condition["source_train"], condition["target_train"],
                                   *eval_manifests]):
            checked_on_main(check_manifest_audio_once, path)
    for domain, dataset in (("source", source), ("target", target)):
        if hparams.get("cache_ssl_features"):
            checked_on_main(cache_hidden_states, hparams["frontend"], utterances[domain],
                            hparams["ssl_features_folder"], device, hparams["max_embed_seconds"])
            add_cached_crop_pipeline(dataset, hparams["ssl_features_folder"],
                                     hparams["crop_seconds"])
        else:
            add_crop_pipeline(dataset, hparams["crop_seconds"])
    encoder = add_speaker_labels(source, os.path.join(hparams["save_folder"], "label_encoder.txt"),
                                 speaker_label(hparams))
    if len(encoder) != hparams["n_speakers"]:
        fail(os.path.join(hparams["save_folder"], "label_encoder.txt"),
             f"has {len(encoder)} classes, the speaker head {hparams['n_speakers']}: it was "
             "made by a run with another speaker_label or source manifest",
             fix="remove it, or train into another output_folder")
    source.set_output_keys(["id", "sig", "spk_id_encoded"])
    target.set_output_keys(["id", "sig"])
    speaker_batches = None
    layout = hparams["speaker_head"].batch_layout
    if layout is not None:
        # As many batches as the margin heads take at the same batch size: the
        # longer training set once per epoch, rounded up to whole batches for
        # every DDP process. Grouped by the head's classes (speakers, or
        # speakers saying a phrase with speaker_label: spk_phrase).
        speaker_batches = SpeakerBatchSampler(
            [encoder.encode_label(c) for c in item_classes(source, speaker_label(hparams))],
            *layout,
            speaker_batches_per_epoch(max(len(source), len(target)), hparams["batch_size"],
                                      training_processes()),
            hparams["seed"])
    return {"train_pairs": PairedDataset(source, target, hparams["seed"], speaker_batches),
            "label_encoder": encoder, "eval": eval_datasets,
            "training_utterances": utterances}


def prepared(prepare, condition_file, condition):
    """Run one of a condition's preparations; a refusal names the option behind its path.

    The preparation's messages name its own arguments ("pass as data_folder
    ..."), which a training command gives as the condition's options
    (``--vox1_folder``): where the refused path is, or lies in, the value of
    such an option, the message says which.

    Arguments
    ---------
    prepare : callable
        The preparation, its arguments bound (an item of the condition's ``prepare``).
    condition_file : str
        The condition file, whose ``argument: !ref <option>`` lines are read.
    condition : dict
        The loaded condition, holding each option's value.

    Raises
    ------
    ManifestError
        The preparation's, with the line naming the option added.
    """
    try:
        prepare()
    except ManifestError as error:
        refused = os.path.realpath(str(error).split(": ", 1)[0])
        with open(condition_file, encoding="utf-8") as fin:
            pairs = passed_options(fin.read())
        named = [f"--{option}={condition[option]}"
                 for option in dict.fromkeys(option for _, option in pairs)
                 if isinstance(condition.get(option), str)
                 and _within(refused, os.path.realpath(condition[option]))]
        if not named:
            raise
        raise ManifestError(f"{error}\n(the path is given by {' and '.join(named)}: "
                            f"{condition_file} passes it to the data preparation)") from None


def _within(path, folder):
    """Whether ``path`` is ``folder`` or lies under it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@contextlib.contextmanager
def _kept_for_the_run_log():
    """Write what a command logs before SpeechBrain opens the run's ``log.txt`` into it too.

    The preparation, the settings check (a setting changed as allowed, other
    training data, a lock taken over) and the other checks run before the
    run's folder is made, so that a refused command writes nothing into it;
    their messages went to the console alone, and the run's log lacked them.
    Once the block has made the folder, the records kept are written into
    every log file that SpeechBrain's logging has opened.
    """
    kept = _Kept()
    root = logging.getLogger()
    root.addHandler(kept)
    try:
        yield
    finally:
        root.removeHandler(kept)  # SpeechBrain's set-up of its log has replaced it
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            for record in kept.records:
                if record.levelno >= handler.level:
                    handler.handle(record)


class _Kept(logging.Handler):
    """The INFO and higher records logged while it is attached, kept in order."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def prepare_experiment(argv=None, training=True, create_folder=sb.create_experiment_directory):
    """Parse the command line, prepare the condition's data, and build the Brain.

    Before anything is written into the run's folder, the condition's data
    files are checked to exist, the folder's lock is taken, a command that
    would write over another run's results is refused, and the settings and
    training manifests are checked against those of its checkpoints
    (:mod:`local.run_folder`).

    Arguments
    ---------
    argv : list of str, optional
        Command line (default ``sys.argv[1:]``).
    training : bool
        True for a training run, whose settings become the run's
        (``hyperparams.yaml``, ``condition.yaml``, ``provenance.json``);
        False for an evaluation of a trained run, which needs a checkpoint
        and writes its own (``evaluate_hyperparams.yaml``,
        ``evaluate_condition.yaml``, ``evaluate_provenance.json``) into its
        report only. Either writes a copy of its settings into its report,
        so that they replace the report before it together with it
        (:func:`evaluate`).
    create_folder : callable
        ``create_folder(output_folder)``: a call of
        ``speechbrain.create_experiment_directory``, which copies the file of
        its caller into the folder; a script passes a function of its own,
        so that the folder gets the script.

    Returns
    -------
    tuple
        ``(brain, hparams, condition, data)``, ``data`` as from
        :func:`dataio_prep`, with ``report_records``:
        ``report_records(folder)`` writes the command's settings files
        (:func:`save_records`) into a folder, and ``settings``, the
        command's settings (:func:`local.run_folder.accept_settings`).
    """
    hparams_file, run_opts, overrides = parse_arguments(argv)
    check_device(run_opts.get("device"))
    sb.utils.distributed.ddp_init_group(run_opts)
    condition_file, condition, overrides, condition_overrides = load_condition(overrides,
                                                                               hparams_file)
    check_dcf_settings(condition_file, condition["evaluation"])
    check_precision(run_opts, hparams_file, {**plain_values(hparams_file), **overrides})
    # SpeechBrain sets up its logging when the run's folder is made, after the
    # preparation: until then, its messages (where it writes, what it leaves
    # out) go to the console in SpeechBrain's format, and into the run's
    # log.txt once it is open. A no-op where logging is set up already.
    logging.basicConfig(level=logging.INFO, format="%(name)s - %(message)s", stream=sys.stdout)
    with _kept_for_the_run_log():
        if sb.utils.distributed.if_main_process():  # the one process that prepares
            logger.info("Preparing the data of %s; its relative paths are read from the working "
                        "directory, %s", condition_file, os.getcwd())
        for prepare in condition["prepare"]:
            checked_on_main(prepared, prepare, condition_file, condition)
        check_condition_files(condition_file, condition)
        overrides["condition"] = condition["condition"]
        # The speaker head has a row per class: per speaker, or per speaker and
        # phrase (speaker_label: spk_phrase).
        classes = speaker_classes(read_manifest(condition["source_train"]),
                                  speaker_label({**plain_values(hparams_file), **overrides}),
                                  condition["source_train"])
        overrides["n_speakers"] = len(set(classes))
        check_trainable(hparams_file, overrides, condition, run_opts if training else None)
        if not training:
            # Before the models are built, whose checkpointer would make the folder.
            folders = plain_values(hparams_file, overrides)
            if not os.path.isdir(folders["save_folder"]):
                _untrained(folders["save_folder"], folders["output_folder"])
        hparams = load_model_hparams(hparams_file, overrides)
        check_ssl_dim(hparams_file, hparams)
        if training:
            check_augmentation(hparams_file, hparams)
        check_score_norm(hparams)
        # The run options a run trains with, and its number of processes, are its
        # settings; an evaluation's are free.
        options = run_options(run_opts, hparams)
        processes = training_processes()
        augmentation = data_files(hparams) if training else None

        def accepted():
            # And the checkpoints' folder, which runs into other output folders may share.
            for folder in (hparams["output_folder"], hparams["save_folder"]):
                hold_run_folder(folder)
            check_own_checkpoints(hparams["output_folder"], hparams["save_folder"])
            # The settings first: a model file other than the run's finds none of its
            # checkpoints complete, and is told how it differs.
            accepted_settings = accept_settings(
                hparams, {**run_settings(hparams_file, overrides), **options,
                          PROCESSES_KEY: processes}, training, condition, augmentation)
            check_one_run(hparams, training, run_opts.get("debug", False))
            return accepted_settings

        settings, changes = checked_on_main(accepted)
        if not training and not hparams["checkpointer"].list_checkpoints():
            _untrained(hparams["save_folder"], hparams["output_folder"])
        # By the main process (the folder, its log and the script's copy); a write that
        # fails there (a full disk) stops every process.
        checked_on_main(create_folder, hparams["output_folder"])
    # The precision the verification embeds in is in each command's record,
    # not among the run's settings: the weights do not depend on it.
    evaluation = run_options(run_opts, hparams, ("eval_precision",))
    # The commands that trained the run's checkpoints; a training command
    # adds itself with its first checkpoint.
    trained = (trained_by(hparams["output_folder"])
               if hparams["checkpointer"].list_checkpoints() else [])
    records = functools.partial(save_records, hparams_file,
                                {**overrides, **options, **evaluation} if training
                                else {**overrides, **evaluation},
                                condition_file, condition, prefix="" if training else "evaluate_",
                                processes=processes, trained=trained,
                                ssl_model=settings.get(SSL_MODEL_KEY),
                                augmentation=augmentation,
                                condition_overrides=condition_overrides)
    device = run_opts.get("device") or sb.utils.distributed.infer_device()
    # A command on other training data than its checkpoints' (an evaluation, or a resume
    # that accepts them): the trial lists are checked against the checkpoints' data too.
    trained_on = (trained_manifests(hparams["output_folder"], settings)
                  if hparams["checkpointer"].list_checkpoints() else [])
    data = dataio_prep(hparams, condition, device, trained_on)
    # The run's record follows the data's checks: a command they refuse leaves none.
    if training:
        record = functools.partial(record_run, hparams["save_folder"], settings, records,
                                   hparams["output_folder"])

        def first_save():
            trained.append({"code_version": code_version(RECIPE_FOLDER),
                            "first_epoch": hparams["epoch_counter"].current})
            record()

        # The record is written with the first checkpoint this command saves
        # (the main process's save), which adds it to the commands that
        # trained the run; changed settings become the run's then, with a
        # checkpoint trained with them.
        hparams["checkpointer"].on_first_save = first_save
        if not changes:
            # By the main process; a write that fails there (a full disk) stops every process.
            checked_on_main(record)

    # Every report holds the settings it was made with, and replaces the one
    # before it together with them: a resume that changes the run's settings
    # and stops before its report leaves that report with its own.
    data["report_records"] = records
    data["settings"] = settings
    brain = DANNBrain(
        modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
        run_opts=run_opts, checkpointer=hparams["checkpointer"],
        target_utterances=data["training_utterances"]["target"],
    )
    return brain, hparams, condition, data


def check_trained(checkpoint, counter):
    """Refuse to verify a checkpoint of a training that stopped before its last epoch ended.

    Its report would stand in the run's folder as the run's result (a seed
    table would average it with those of finished runs).

    Arguments
    ---------
    checkpoint : Checkpoint
        The checkpoint recovered.
    counter : speechbrain.utils.epoch_loop.EpochCounter
        The run's epoch counter, recovered from it: its whole epochs done and
        ``number_of_epochs``.

    Raises
    ------
    ManifestError
        Naming the checkpoint, the epochs done and how to finish or score them.
    """
    inside = bool(checkpoint.meta.get(INTRA_EPOCH_CKPT_FLAG))
    if counter.current >= counter.limit and not inside:
        return
    done = f"{counter.current} of {counter.limit} epochs" + " and part of the next" * inside
    fix = "resume it first (python train_dann.py with the same hparams and overrides)"
    if not inside:
        fix += (f", or score it as a run of {counter.current} epochs: "
                f"--number_of_epochs={counter.current} --allow_changed=[number_of_epochs]")
    fail(str(checkpoint.path), f"the run's training stopped after {done}: its verification "
                               "would be taken for the finished run's", fix=fix)


def _untrained(save_folder, output_folder):
    """Exit: an evaluation of a run without a checkpoint in ``save_folder``; one of a run
    trained with another ``--save_folder`` (as its ``hyperparams.yaml`` records) names it."""
    recorded = other_save_folder(output_folder, save_folder)
    if recorded:
        sys.exit(f"No checkpoint in {save_folder}: the run in {output_folder} saved its "
                 f"checkpoints in {recorded}: pass --save_folder={recorded}.")
    sys.exit(f"No checkpoint in {save_folder}: train the system first "
             "(python train_dann.py with the same hparams and overrides).")


def save_settings(hparams_file, overrides, condition_file, folder, prefix="", processes=1,
                  condition_overrides=None):
    """Write the whole model settings (``hyperparams.yaml``) and the ``condition.yaml`` of a command.

    Arguments
    ---------
    hparams_file : str
        The model hparams file, merged onto its bases.
    overrides : dict
        The model overrides, resolved into the saved file.
    condition_file : str
        The condition file, copied with ``condition_overrides`` (:func:`condition_text`).
    folder : str
        The run's output folder.
    prefix : str
        Of the file names: ``""`` for the training run's own, ``"evaluate_"``
        for an evaluation's, which leaves the run's untouched.
    processes : int
        DDP processes of the command, each taking ``batch_size`` crops a step;
        the file's header names them (they are no setting of the file).
    condition_overrides : dict, optional
        The command's overrides of the condition file's keys.
    """
    resolved = resolve_references(model_text(hparams_file), overrides).getvalue()
    with written_whole(os.path.join(folder, f"{prefix}hyperparams.yaml"),
                       encoding="utf-8") as out:
        out.write(f"# {os.path.abspath(hparams_file)} on its bases, with the run's overrides\n"
                  f"{processes_line(processes)}# yamllint disable\n{resolved}")
    with written_whole(os.path.join(folder, f"{prefix}condition.yaml"), encoding="utf-8") as out:
        out.write(condition_text(condition_file, condition_overrides or {}))


def condition_text(condition_file, overrides):
    """The text of ``condition_file`` with ``overrides`` of its top-level keys in their place.

    Its references stay, so that the copy reads, and runs as ``--condition``,
    as the condition the command ran (``--demo_seed=7`` generates another
    corpus than the file's ``demo_seed: 1234``).

    Arguments
    ---------
    condition_file : str
        The condition file.
    overrides : dict
        The command's overrides of its keys, typed as they were loaded.

    Returns
    -------
    str
        The text of the condition the command ran.

    Example
    -------
    >>> text = condition_text("recipes/demo/condition.yaml", {"demo_seed": 7})
    >>> "demo_seed: 7" in text, "save_folder: !ref <data_folder>" in text
    (True, True)
    """
    with open(condition_file, encoding="utf-8") as fin:
        if not overrides:
            return fin.read()
        yaml = ruamel.yaml.YAML()
        yaml.preserve_quotes = True
        tree = yaml.load(fin)
    tree.update(overrides)
    out = io.StringIO()
    yaml.dump(tree, out)
    return out.getvalue()


def save_records(hparams_file, overrides, condition_file, condition, folder, prefix="",
                 processes=1, trained=None, ssl_model=None, augmentation=None,
                 condition_overrides=None):
    """Write the settings of a command (:func:`save_settings`) and its data files' hashes.

    Arguments
    ---------
    hparams_file : str
        The model hparams file, merged onto its bases.
    overrides : dict
        The model overrides.
    condition_file : str
        The condition file.
    condition : dict
        Condition hparams, whose data files are hashed (``provenance.json``,
        :func:`local.provenance.write_provenance`).
    folder : str
        Where they go: the run's output folder, or an evaluation's report.
    prefix : str
        Of the file names: ``""`` for the training run's own, ``"evaluate_"``
        for an evaluation's.
    processes : int
        DDP processes of the command.
    trained : list of dict, optional
        The commands that trained the run (:func:`local.provenance.trained_by`).
    ssl_model : str, optional
        The digest of an SSL front end's model files.
    augmentation : dict, optional
        The noise and impulse-response CSVs a training run augments with,
        hashed with the data files.
    condition_overrides : dict, optional
        The command's overrides of the condition file's keys.
    """
    save_settings(hparams_file, overrides, condition_file, folder, prefix, processes,
                  condition_overrides)
    write_provenance(condition, folder, RECIPE_FOLDER, prefix, trained, ssl_model, augmentation)


def evaluate(brain, hparams, condition, data):
    """Verify the system of the latest checkpoint on the condition's trial lists.

    Runs on the main process only; every process gets the results, or the
    :class:`~local.errors.ManifestError` it raised there (a trial list or
    audio file found bad while scoring, a full disk), so that the others stop
    with its message rather than at their next collective operation.

    Arguments
    ---------
    brain : DANNBrain
        With its latest checkpoint loaded.
    hparams : dict
        Model hparams.
    condition : dict
        Condition hparams.
    data : dict
        As from :func:`prepare_experiment`: its ``report_records`` are
        written into the report, its ``settings`` name the embedding caches.

    Returns
    -------
    dict
        ``{system: metrics}``, as from :func:`local.evaluation.verification.verify`.
    """
    def on_main():
        brain.modules.eval()
        checkpoint = checkpoint_identity(brain.checkpointer.find_checkpoint())
        results = verify(brain.evaluation_embed, hparams, condition, data["eval"],
                         data["training_utterances"], brain.device, checkpoint,
                         data.get("report_records"), data.get("settings"), brain.eval_precision)
        # In percent, as summary.csv and report.md give it.
        hparams["train_logger"].log_stats(
            stats_meta={"verification": "EER (%)"},
            test_stats={f"{system} EER": 100 * metrics["eer"]
                        for system, metrics in results.items()})
        return results

    return checked_on_main(on_main)
