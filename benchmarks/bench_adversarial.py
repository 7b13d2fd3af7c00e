"""Cost of the adversarial branch: a DANN step against a baseline step on as many utterances.

A DANN step (``DANNBrain.fit_batch``) embeds B labelled source and B
unlabelled target crops, computes the speaker loss on the source half and the
domain loss on all of them behind the gradient-reversal layer, and takes an
optimiser step. The baseline step embeds 2B labelled source crops with the same
modules, computes the speaker loss on all of them, and takes the same
optimiser step: what a source-only speaker-embedding recipe does. The two are
timed alternately on the same batches (already in memory, so that no audio is
decoded), after warm-up steps, and compared by their median times.

Models, each built from its hparams file as ``train_dann.py`` builds it:

* ``dann_fbank.yaml``;
* ``dann_wavlm.yaml`` with a tiny randomly initialised WavLM as
  ``--ssl_source`` (frozen, as by default) and the file's ECAPA-TDNN;

each with the discriminator on the pooled embedding (the default), on every
frame of ECAPA-TDNN's ``mfa`` layer (``--adv_layer=mfa``), and on those frames
with one hidden layer of 64 instead of two of 256
(``--discriminator_neurons=[64]``).

The adversaries part (``--only adversaries``; without ``--only`` both parts
run) times, with ``dann_fbank.yaml``, a step of each ``adversary`` against a
gradient-reversal step, in turn on the same batches, with the speaker head
and the auxiliary-classifier GAN's speaker classifier grown to ``--classes``
rows (default 5,994, VoxCeleb2 dev's speakers; pseudo-speakers add rows to
the former), and the gradient-reversal step with those rows against one with
the demo's.

Run from the repository root (about 9 minutes on 2 busy CPU cores, the
adversaries another 3.5)::

    .venv/bin/python benchmarks/bench_adversarial.py [--rounds 20] [--batch_size 8] \
        [--only adv_layer|adversaries] [--classes 5994]

The last line prints the ratios DANN step / baseline step (or each step /
the gradient-reversal step).
"""

import argparse
import statistics
import tempfile

import torch

from common import build, loader, machine, step, tiny_wavlm

ADVERSARIES = ["grl", "vanilla", "least_squares", "relativistic", "auxiliary_classifier"]
MODELS = {
    "fbank": ("dann_fbank.yaml", [], 768),
    "tiny WavLM": ("dann_wavlm.yaml", None, 1536),
}


def speaker_only(brain):
    """``compute_objectives`` of the baseline: the speaker loss on every row of both halves."""

    def compute_objectives(predictions, batch, stage):
        embeddings = predictions[0]
        labels = torch.cat([half.spk_id_encoded.data for half in batch]).to(brain.device)
        return brain.modules.speaker_head(embeddings, labels, embeddings[:0], [])[0]

    return compute_objectives


def compare(brain, hparams, data, rounds, warmup=1):
    """Median wall and CPU times of DANN and baseline steps on the same batches, alternately."""
    batches = list(loader(brain, hparams, data, num_workers=0))
    times = {"dann": [], "baseline": []}
    baseline_objectives = speaker_only(brain)
    for index in range(rounds + warmup):
        (source, target), (other_source, _) = (batches[(2 * index + k) % len(batches)]
                                               for k in (0, 1))
        # Alternate which goes first, so that neither always follows the other.
        for mode in (("dann", "baseline") if index % 2 else ("baseline", "dann")):
            if mode == "dann":
                brain.__dict__.pop("compute_objectives", None)
                elapsed = step(brain, (source, target))
            else:
                brain.compute_objectives = baseline_objectives
                elapsed = step(brain, (source, other_source))
            if index >= warmup:
                times[mode].append(elapsed)
    brain.__dict__.pop("compute_objectives", None)
    return {mode: [statistics.median(t[i] for t in values) for i in (0, 1)]
            for mode, values in times.items()}


def with_classes(brain, classes, target_ids):
    """``brain`` as at a pseudo-label epoch with ``classes`` speaker classes in all.

    The speaker head has a row for each of the source speakers and of as many
    pseudo-speakers as make up the rest, which ``target_ids`` are labelled
    with in turn (so that the target crops train it, as after a clustering);
    the auxiliary-classifier GAN's discriminator classifies ``classes``
    speakers; the optimisers are made anew for them.
    """
    head, emb_dim = brain.modules.speaker_head, brain.hparams.emb_dim
    pseudo_speakers = classes - head.pseudo_labels.offset
    labels = {utt: index % pseudo_speakers for index, utt in enumerate(target_ids)}
    head.pseudo_labels.update(labels, n_speakers=pseudo_speakers, epoch=1)
    head.start_pseudo_speakers(torch.randn(pseudo_speakers, emb_dim), brain.optimizer)
    mlp = brain.modules.domain_discriminator.mlp
    if mlp[-1].out_features > 2:
        mlp[-1] = torch.nn.Linear(mlp[-1].in_features, 2 + classes)
    brain.init_optimizers()
    return brain


def compare_brains(brains, batches, rounds, warmup=1):
    """Median wall and CPU times of a step of each Brain on the same batches, in turn."""
    times = {name: [] for name in brains}
    for index in range(rounds + warmup):
        batch = batches[index % len(batches)]
        # Rotate which goes first, so that none always follows another.
        names = list(brains)[index % len(brains):] + list(brains)[:index % len(brains)]
        for name in names:
            elapsed = step(brains[name], batch)
            if index >= warmup:
                times[name].append(elapsed)
    return {name: [statistics.median(t[i] for t in values) for i in (0, 1)]
            for name, values in times.items()}


def adversaries(work, rounds, batch_size, classes):
    """Each adversary's step against gradient reversal's, with ``classes`` speaker classes."""
    brains = {}
    for adversary in ADVERSARIES:
        brains[adversary], hparams, data = build("dann_fbank.yaml", work, adversary,
                                                 f"--adversary={adversary}",
                                                 f"--batch_size={batch_size}")
    if classes <= hparams["n_speakers"]:
        raise SystemExit(f"--classes={classes}: more than the demo's {hparams['n_speakers']}")
    batches = list(loader(brains["grl"], hparams, data, num_workers=0))
    target_ids = [utt for _, target in batches for utt in target.id]
    for brain in brains.values():
        with_classes(brain, classes, target_ids)
    brains[f"grl, {hparams['n_speakers']} classes"] = build(
        "dann_fbank.yaml", work, "grl_demo", f"--batch_size={batch_size}")[0]
    times = compare_brains(brains, batches, rounds)
    for name, (wall, cpu) in times.items():
        print(f"fbank, {name if ', ' in name else f'{name}, {classes} classes'}: step on "
              f"{batch_size} + {batch_size} crops of {hparams['crop_seconds']} s {wall:.3f} s "
              f"({cpu:.3f} s CPU), median of {rounds}")
    print(f"step / grl step, {classes} classes (CPU time): " + ", ".join(
        f"{name} {cpu / times['grl'][1]:.3f}x" for name, (_, cpu) in times.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed steps of each kind")
    parser.add_argument("--batch_size", type=int, default=8, help="B, source utterances per step")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: CPU time is compute alone, without spinning)")
    parser.add_argument("--only", choices=["adv_layer", "adversaries"],
                        help="where the discriminator reads, or the adversaries alone")
    parser.add_argument("--classes", type=int, default=5994,
                        help="speaker classes of the adversaries' runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine())
    ratios = []
    with tempfile.TemporaryDirectory() as work:
        if args.only != "adv_layer":
            adversaries(work, args.rounds, args.batch_size, args.classes)
        if args.only == "adversaries":
            return
        for model, (hparams_file, options, frames_size) in MODELS.items():
            options = tiny_wavlm(work) if options is None else options
            frames = ["--adv_layer=mfa", f"--adv_input_size={frames_size}"]
            for where, extra in (("embedding", []), ("mfa frames", frames),
                                 ("mfa frames, 64 neurons",
                                  [*frames, "--discriminator_neurons=[64]"])):
                name = f"{model} {where}".replace(" ", "_").replace(",", "")
                brain, hparams, data = build(hparams_file, work, name, *options, *extra,
                                             f"--batch_size={args.batch_size}")
                times = compare(brain, hparams, data, args.rounds)
                (dann, dann_cpu), (baseline, baseline_cpu) = times["dann"], times["baseline"]
                batch = hparams["batch_size"]
                print(f"{model}, discriminator on the {where}: DANN step on {batch} + {batch} "
                      f"crops of {hparams['crop_seconds']} s {dann:.3f} s ({dann_cpu:.3f} s CPU), "
                      f"baseline step on {2 * batch} crops {baseline:.3f} s ({baseline_cpu:.3f} s "
                      f"CPU), medians of {args.rounds}: {dann / baseline:.3f}x wall, "
                      f"{dann_cpu / baseline_cpu:.3f}x CPU")
                ratios.append(f"{model} / {where} {dann_cpu / baseline_cpu:.3f}x")
    print("DANN step / baseline step (CPU time): " + ", ".join(ratios))


if __name__ == "__main__":
    main()
