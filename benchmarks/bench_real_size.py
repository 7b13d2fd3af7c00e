"""The main command at real size: training steps, memory, checkpoints, SSL FLOP/s.

An SSL model of a published size (``wavlm-base-plus`` by default;
``wavlm-large`` and ``wav2vec2-base`` as options) is built from a
``transformers`` configuration with the published values, randomly
initialised (the compute does not depend on the weights), written with
``save_pretrained`` and loaded through the recipe's own path
(``--ssl_source=DIR``). ``hparams/dann_wavlm.yaml`` is then built by
``local.experiment.prepare_experiment`` on the demo corpus, and ``DANNBrain.fit_batch``
runs on batches of the run's own DataLoader, for each configuration of
``CONFIGURATIONS``: frozen SSL, frozen with the hidden-state cache, fine-tuned,
fine-tuned in bf16, fine-tuned with activation checkpointing, and the frozen
step with ``--adv_weight=0 --mmd_weight=0`` (the step of the source-only
baseline, whose pseudo-labels are off as well: the discriminator still
trains as a probe of the domains, without a gradient to the encoder).  The peer is SpeechBrain's VoxCeleb recipe's ECAPA-TDNN on 80
filterbanks (``train_ecapa_tdnn.yaml``: 1024 channels, AAM softmax with margin
0.2 and scale 30 over VoxCeleb2's 7,205 speakers, Adam), built directly, on
the frozen run's batches once that run is released (its waveform augmentation
left out). ``--skip`` leaves out configurations, and the ratios of their rows.

Per configuration: steps per second, peak memory (``max_memory_allocated`` on
CUDA, the process's peak resident set on the CPU, reset before the timed
steps: it includes what earlier rows left resident), the share of the time spent waiting for the DataLoader and, on CUDA,
the GPU's utilisation (``nvidia-smi`` sampled every 100 ms). For the frozen
and fine-tuned runs also the checkpoint's size and write time, and for the
frozen one what a checkpoint holding the whole front end would take (the
default ``torch.save`` of its state dict). Finally the SSL forward of one
batch: its FLOPs (``torch.utils.flop_counter.FlopCounterMode``), its time in
float32 and under bf16 autocast, and the FLOP/s as a fraction of the
device's bf16 dense peak (``--peak_tflops``; the default, 989, is the H100 /
H200 SXM figure; an A100's is 312).

GPU, at real size (about 5 minutes on an H100-class GPU)::

    python benchmarks/bench_real_size.py --device=cuda:0

CPU, at real size with a reduced batch::

    OMP_NUM_THREADS=1 python benchmarks/bench_real_size.py --batch_size=2 --steps=3 --warmup=1

``--smoke`` runs everything at tiny sizes in seconds (the test suite runs it).
"""

import argparse
import gc
import os
import shutil
import subprocess
import tempfile
import time

import torch
from speechbrain.utils.checkpoints import Checkpointer, torch_save

from common import DEMO, TINY_ENCODER, build, loader, machine, step, tiny_wavlm
from resident import peak_resident_mib, reset_peak_resident

# The published configurations (config.json of the hub checkpoints): the same
# CNN and convolutional position embedding in all three.
BASE_CNN = dict(conv_dim=(512,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2),
                conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_bias=False,
                num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16)
BASE = dict(BASE_CNN, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, feat_extract_norm="group", do_stable_layer_norm=False)
WAVLM_BUCKETS = dict(num_buckets=320, max_bucket_distance=800)
SSL_MODELS = {
    "wavlm-base-plus": ("wavlm", dict(BASE, **WAVLM_BUCKETS)),
    "wavlm-large": ("wavlm", dict(
        BASE_CNN, **WAVLM_BUCKETS, hidden_size=1024, num_hidden_layers=24,
        num_attention_heads=16, intermediate_size=4096, feat_extract_norm="layer",
        do_stable_layer_norm=True)),
    "wav2vec2-base": ("wav2vec2", BASE),
}

FINE_TUNED = ["--freeze_ssl=False"]
BASELINE = "frozen, --adv_weight=0 --mmd_weight=0"
CONFIGURATIONS = {
    "frozen": [],
    "frozen, cached hidden states": ["--cache_ssl_features=True"],
    BASELINE: ["--adv_weight=0", "--mmd_weight=0"],
    "fine-tuned": FINE_TUNED,
    "fine-tuned, bf16": FINE_TUNED + ["--precision=bf16"],
    "fine-tuned, activation checkpointing": FINE_TUNED + ["--ssl_gradient_checkpointing=True"],
}
PEER = "SpeechBrain ECAPA-TDNN, 80 fbank"


def save_ssl(folder, name):
    """Write a randomly initialised SSL model of the published size ``name`` to ``folder``."""
    from transformers import (Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model,
                              WavLMConfig, WavLMModel)

    family, sizes = SSL_MODELS[name]
    model_class, config_class = ((WavLMModel, WavLMConfig) if family == "wavlm"
                                 else (Wav2Vec2Model, Wav2Vec2Config))
    model_class(config_class(**sizes)).save_pretrained(folder)
    # wav2vec2-base normalises its input waveform, the WavLM checkpoints do not.
    Wav2Vec2FeatureExtractor(do_normalize=family == "wav2vec2").save_pretrained(folder)
    return [f"--ssl_source={folder}", f"--ssl_family={family}",
            f"--ssl_dim={sizes['hidden_size']}"]


def reset_peak_memory(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_peak_resident()


def peak_memory_mib(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_resident_mib()


class GPUUtilisation:
    """``nvidia-smi``'s utilisation of the device, sampled every 100 ms while in the block."""

    def __init__(self, device):
        self.device, self.samples, self.process = device, [], None

    def __enter__(self):
        if self.device.type == "cuda" and shutil.which("nvidia-smi"):
            self.process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", "100", "-i", str(self.device.index or 0)],
                stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc):
        if self.process is not None:
            self.process.terminate()
            output, _ = self.process.communicate()
            self.samples = [float(value) for value in output.split()]

    @property
    def percent(self):
        return sum(self.samples) / len(self.samples)


def forever(batches):
    while True:
        yield from batches


def time_steps(run_step, batches, warmup, steps, device):
    """Steps per second, peak memory, data-wait share and GPU use of ``steps`` timed steps."""
    iterator = forever(batches)
    for _ in range(warmup):
        run_step(next(iterator))
    reset_peak_memory(device)
    waited = 0.0
    with GPUUtilisation(device) as utilisation:
        start = time.perf_counter()
        for _ in range(steps):
            before = time.perf_counter()
            batch = next(iterator)
            waited += time.perf_counter() - before
            run_step(batch)
        elapsed = time.perf_counter() - start
    row = {"steps/s": steps / elapsed, "peak MiB": peak_memory_mib(device),
           "data wait %": 100 * waited / elapsed}
    if utilisation.samples:
        row["GPU util %"] = utilisation.percent
    return row


def checkpoint_cost(brain, folder, whole_frontend=False):
    """Size (MB) and write time (s) of a checkpoint of the run.

    With ``whole_frontend`` the front end is saved as a plain state dict, SSL
    model included (SpeechBrain's default saver for a module).
    """
    hooks = {"frontend": torch_save} if whole_frontend else None
    checkpointer = Checkpointer(folder, brain.checkpointer.recoverables, custom_save_hooks=hooks)
    start = time.perf_counter()
    written = checkpointer.save_checkpoint()
    elapsed = time.perf_counter() - start
    size = sum(os.path.getsize(os.path.join(written.path, name))
               for name in os.listdir(written.path))
    return {"MB": size / 1e6, "write s": elapsed}


def ssl_forward(frontend, batch_size, samples, device, repeats):
    """FLOPs of one SSL forward on ``batch_size`` crops and its FLOP/s, fp32 and bf16."""
    from torch.utils.flop_counter import FlopCounterMode

    wavs = 0.1 * torch.randn(batch_size, samples, device=device)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            frontend.hidden_states(wavs)
        flops = counter.get_total_flops()
        rows = {}
        for precision in ("fp32", "bf16"):
            with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
                frontend.hidden_states(wavs)  # warm-up
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                for _ in range(repeats):
                    frontend.hidden_states(wavs)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds = (time.perf_counter() - start) / repeats
            rows[precision] = {"GFLOP": flops / 1e9, "s": seconds,
                               "TFLOP/s": flops / seconds / 1e12}
    return rows


def peer_step(device, classes, channels, n_mels=80):
    """One training step of SpeechBrain's VoxCeleb ECAPA-TDNN recipe, as a function of a batch."""
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper
    from speechbrain.processing.features import InputNormalization

    fbank = Fbank(n_mels=n_mels).to(device)
    normalise = InputNormalization(norm_type="sentence", std_norm=False).to(device)
    encoder = ECAPA_TDNN(n_mels, channels=channels, kernel_sizes=[5, 3, 3, 3, 1],
                         dilations=[1, 2, 3, 4, 1], attention_channels=128,
                         lin_neurons=192).to(device)
    classifier = Classifier(192, out_neurons=classes).to(device)
    loss_fn = LogSoftmaxWrapper(AdditiveAngularMargin(margin=0.2, scale=30))
    parameters = list(encoder.parameters()) + list(classifier.parameters())
    optimiser = torch.optim.Adam(parameters, lr=0.001, weight_decay=2e-6)
    generator = torch.Generator().manual_seed(0)

    def run(batch):
        wavs = torch.cat([part.sig.data for part in batch]).to(device)
        lens = torch.cat([part.sig.lengths for part in batch]).to(device)
        labels = torch.randint(classes, (len(wavs), 1), generator=generator).to(device)
        features = normalise(fbank(wavs), lens)
        loss = loss_fn(classifier(encoder(features, lens)), labels)
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return run


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ssl_model", choices=sorted(SSL_MODELS), default="wavlm-base-plus")
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=16,
                        help="source crops per step (and as many target crops)")
    parser.add_argument("--crop_seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--num_workers", type=int, default=4)
    parser.add_argument("--peak_tflops", type=float, default=989.0,
                        help="the device's dense bf16 peak in TFLOP/s (H100/H200 SXM: 989)")
    parser.add_argument("--data_folder", default=DEMO, help="the demo corpus (made if missing)")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(CONFIGURATIONS)[1:],
                        help="configurations not to run (the cache fill is long on a CPU)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny SSL model and encoder, 2 + 2 crops of 0.5 s, 2 steps, CPU")
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.batch_size, args.crop_seconds = "cpu", 2, 0.5
        args.warmup, args.steps, args.num_workers = 1, 2, 0
    return args


def print_table(title, rows):
    columns = list(dict.fromkeys(column for row in rows.values() for column in row))
    print(f"\n{title}\n| | " + " | ".join(columns) + " |\n" + "| --- " * (len(columns) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row.get(column, float('nan')):.4g}"
                                          for column in columns) + " |")


def main(argv=None):
    """Run every measurement; returns ``{table title: {row: {column: number}}}``."""
    args = parse(argv)
    device = torch.device(args.device)
    print(machine(), f"device {device}",
          torch.cuda.get_device_name(device) if device.type == "cuda" else "")
    training, checkpoints, forward = {}, {}, {}
    with tempfile.TemporaryDirectory() as work:
        if args.smoke:
            ssl, sizes = tiny_wavlm(work), TINY_ENCODER
            peer = dict(classes=10, channels=[32] * 4 + [96])
        else:
            ssl, sizes = save_ssl(os.path.join(work, args.ssl_model), args.ssl_model), []
            peer = dict(classes=7205, channels=[1024] * 4 + [3072])
        common = [*ssl, *sizes, f"--ssl_cache={work}/hub", f"--batch_size={args.batch_size}",
                  f"--crop_seconds={args.crop_seconds}", f"--device={args.device}",
                  "--adv_warmup=0", "--number_of_epochs=100", "--pseudo_label_epochs=[]"]
        for index, (name, options) in enumerate(CONFIGURATIONS.items()):
            if name in args.skip:
                continue
            brain, hparams, data = build(
                "dann_wavlm.yaml", work, f"run{index}", *common, *options,
                f"--ssl_features_folder={work}/ssl_features", data_folder=args.data_folder)
            batches = loader(brain, hparams, data, args.num_workers)
            training[name] = time_steps(lambda batch: step(brain, batch), batches,
                                        args.warmup, args.steps, device)
            print(name, training[name], flush=True)
            if name in ("frozen", "fine-tuned"):
                checkpoints[name] = checkpoint_cost(brain, f"{work}/ckpt{index}")
            if name == "frozen":
                checkpoints["frozen, whole front end (before)"] = checkpoint_cost(
                    brain, f"{work}/ckpt_whole", whole_frontend=True)
                samples = int(args.crop_seconds * 16000)
                for precision, row in ssl_forward(brain.modules.frontend, 2 * args.batch_size,
                                                  samples, device, args.steps).items():
                    forward[f"{2 * args.batch_size} crops, {precision}"] = dict(
                        row, **{"% of bf16 peak": 100 * row["TFLOP/s"] / args.peak_tflops})
            del brain, hparams, data
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if name == "frozen":
                # On the frozen run's batches, that run released: the peak is the peer's.
                training[PEER] = time_steps(peer_step(device, **peer), batches, args.warmup,
                                            args.steps, device)
                print(PEER, training[PEER], checkpoints, forward, flush=True)
            del batches
    tables = {f"training, {args.ssl_model if not args.smoke else 'tiny WavLM'}, "
              f"{args.batch_size} + {args.batch_size} crops of {args.crop_seconds} s": training,
              "checkpoint": checkpoints, "SSL forward": forward}
    for title, rows in tables.items():
        print_table(title, rows)
    steps = {name: row["steps/s"] for name, row in training.items()}
    whole, saved = checkpoints["frozen, whole front end (before)"], checkpoints["frozen"]
    ratios = []  # those whose rows ran: --skip leaves some out
    if BASELINE in steps:
        ratios.append(f"DANN step / adv_weight=0 step: {steps[BASELINE] / steps['frozen']:.3f}x")
    if "fine-tuned" in steps:
        ratios.append(f"fine-tuned / frozen step: {steps['frozen'] / steps['fine-tuned']:.2f}x")
    ratios += [f"checkpoint before / after: {whole['MB'] / saved['MB']:.1f}x size, "
               f"{whole['write s'] / saved['write s']:.1f}x write time",
               f"peer / frozen steps/s {steps[PEER] / steps['frozen']:.2f}x"]
    print("\n" + "; ".join(ratios))
    return tables


if __name__ == "__main__":
    main()
