"""Self-supervised front end: a learnable weighted sum of all SSL layers.

SpeechBrain's ``WeightedSSLModel`` has the idea but neither normalises the
waveform as the checkpoint expects (``do_normalize``), nor runs a frozen model
under ``no_grad``, nor can keep the CNN feature encoder frozen while the
transformer is fine-tuned. SpeechBrain's ``Wav2Vec2``/``WavLM`` wrappers do all
three and return every hidden state (``output_all_hiddens``), so the front end
wraps one of them and adds the weighted sum, which neither has, and the
preparation of a padded batch as transformers' feature extractor prepares it
(:meth:`SSLFrontend.hidden_states`).
"""

import importlib
import os

import pandas as pd
import torch
import torch.nn.functional as F
from huggingface_hub import try_to_load_from_cache
from matplotlib.figure import Figure
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
    torch_patched_state_dict_load,
)

from local.data.audio import relative_lengths, sample_counts
from local.data.ssl_cache import frame_count, frame_geometry
from local.errors import fail
from local.provenance import file_sha256, short_digest
from local.whole_files import written_whole

# SpeechBrain's wrapper per SSL family; both load any checkpoint of the family
# from the hub or from a folder written by ``save_pretrained``.
WRAPPERS = {
    "wavlm": "speechbrain.integrations.huggingface.wavlm.WavLM",
    "wav2vec2": "speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2",
}
# The files of a model folder that make the SSL model: its configurations and
# its weights, of the one format transformers loads (safetensors where there
# are, as from_pretrained prefers them). A folder filled by `hf download` also
# holds the hub repository's other files (tokenizer, TensorFlow or PyTorch
# weights beside safetensors), which from_pretrained neither loads nor fetches.
CONFIG_FILES = ("config.json", "preprocessor_config.json")
WEIGHT_FORMATS = ((".safetensors", "model.safetensors.index.json"),
                  (".bin", "pytorch_model.bin.index.json"))


def model_files(names):
    """The names among ``names`` (a model folder's) that make the model ``from_pretrained`` loads.

    Arguments
    ---------
    names : list of str
        The names of the files of a model folder.

    Returns
    -------
    list of str
        Its configuration files and the weights of one format, sorted.

    Example
    -------
    >>> model_files(["config.json", "pytorch_model.bin", "model.safetensors", "vocab.json"])
    ['config.json', 'model.safetensors']
    """
    for suffix, index in WEIGHT_FORMATS:
        weights = [name for name in names if name.endswith(suffix) or name == index]
        if weights:
            break
    return sorted([name for name in names if name in CONFIG_FILES] + weights)


def _model_folder(source, save_path):
    """``source``, a folder, or the hub cache's snapshot of a hub ID (None if not cached)."""
    if os.path.isdir(source):
        return source
    config = try_to_load_from_cache(source, "config.json", cache_dir=save_path)
    return os.path.dirname(config) if isinstance(config, str) else None


def ssl_fingerprint(source, save_path):
    """A digest of the contents of the SSL model files ``source`` loads.

    The files are those of :func:`model_files` in the folder
    ``from_pretrained`` loads from: ``source`` itself, or for a hub ID the hub
    cache's snapshot of the revision it resolves to
    (``<save_path>/models--<org>--<name>/snapshots/<commit>``, named by
    ``refs/main``). Their names and bytes are hashed (about a second per GB
    of weights, once per command): the same model has the same fingerprint
    wherever its files are (a copy, another machine), and a model whose files
    were replaced under the same ``source`` gets another.

    Arguments
    ---------
    source : str
        A folder written by ``save_pretrained``, or a hub ID.
    save_path : str
        The hub cache a hub ID is downloaded into.

    Returns
    -------
    str
        The digest, as hex digits.

    Example
    -------
    >>> from tempfile import mkdtemp
    >>> folder = mkdtemp()
    >>> _ = open(os.path.join(folder, "config.json"), "w").write("{}")
    >>> before = ssl_fingerprint(folder, "pretrained_models")
    >>> _ = open(os.path.join(folder, "README.md"), "w").write("not the model")
    >>> before == ssl_fingerprint(folder, "pretrained_models")
    True
    >>> _ = open(os.path.join(folder, "config.json"), "w").write('{"hidden_size": 8}')
    >>> before == ssl_fingerprint(folder, "pretrained_models")
    False
    """
    folder = _model_folder(source, save_path)
    files = [] if folder is None else model_files(os.listdir(folder))
    return short_digest([[name, file_sha256(os.path.join(folder, name))] for name in files])


class WeightedLayerSum(torch.nn.Module):
    """Softmax-weighted sum of stacked hidden states, weights uniform at start.

    Arguments
    ---------
    num_layers : int
        Number of hidden states (transformer layers + the transformer's input).
    layernorm : bool
        Normalise each hidden state (no affine parameters) before the sum, so
        that layers of larger norm do not dominate it.

    Example
    -------
    >>> layer_sum = WeightedLayerSum(3)
    >>> hidden = torch.stack([torch.full((2, 5, 4), float(i)) for i in range(3)])
    >>> layer_sum(hidden)[0, 0].tolist()
    [1.0, 1.0, 1.0, 1.0]
    >>> layer_sum.layer_weights()
    tensor([0.3333, 0.3333, 0.3333])
    """

    def __init__(self, num_layers, layernorm=False):
        super().__init__()
        self.layernorm = layernorm
        self.weights = torch.nn.Parameter(torch.zeros(num_layers))

    def layer_weights(self):
        """The normalised weights, one per hidden state (a detached copy)."""
        return F.softmax(self.weights.detach(), dim=0)

    def forward(self, hidden_states):
        """The weighted sum of the hidden states.

        Arguments
        ---------
        hidden_states : torch.Tensor
            ``[layers, batch, frames, dim]``.

        Returns
        -------
        torch.Tensor
            ``[batch, frames, dim]``.
        """
        if hidden_states.shape[0] != len(self.weights):
            raise ValueError(
                f"{hidden_states.shape[0]} hidden states for {len(self.weights)} layer weights"
            )
        if self.layernorm:
            hidden_states = F.layer_norm(hidden_states, hidden_states.shape[-1:])
        weights = F.softmax(self.weights, dim=0).view(-1, 1, 1, 1)
        return (weights * hidden_states).sum(dim=0)


@register_checkpoint_hooks
class SSLFrontend(torch.nn.Module):
    """WavLM or wav2vec2 hidden states of all layers, mixed by learnable weights.

    A checkpoint of a frozen front end holds only the layer weights: the SSL
    model is the one ``source`` loads, unchanged by training (a base model's
    weights would add about 380 MB to every checkpoint). A fine-tuned front
    end's checkpoint holds the SSL model too.

    Arguments
    ---------
    source : str
        Hugging Face hub ID (``microsoft/wavlm-base-plus``) or a local folder
        written by ``save_pretrained`` (model and feature extractor).
    save_path : str
        Where hub downloads are cached.
    family : str
        ``wavlm`` or ``wav2vec2``.
    freeze : bool
        Keep the SSL model fixed: it runs in eval mode under ``no_grad``, so
        no activations are kept for backward; only the layer weights (and
        what follows the front end) train.
    freeze_feature_extractor : bool
        When fine-tuning, keep the CNN feature encoder fixed.
    layernorm : bool
        Normalise each layer before the weighted sum.
    gradient_checkpointing : bool
        When fine-tuning, keep only each transformer layer's input for the
        backward pass and run the layer again there (transformers' activation
        checkpointing): less memory for longer crops or larger batches, at
        the cost of a second forward pass of the SSL model.
    trained_fingerprint : str, optional
        :func:`ssl_fingerprint` of the SSL model files the layer weights (and
        what follows them) were trained on, as an exported model of a frozen
        front end records it: files of another model are refused, rather than
        embedding with weights trained on other hidden states.

    Attributes
    ----------
    fingerprint : str
        :func:`ssl_fingerprint` of the files the SSL model was loaded from:
        the caches of its hidden states and of the embeddings name the model
        by it as well as by ``source``, and a run's settings record it
        (``ssl_model_sha256``), so that a model replaced under the same
        ``source`` is not taken for the one before.

    Example
    -------
    >>> frontend = SSLFrontend("microsoft/wavlm-base-plus", "pretrained_models")  # doctest: +SKIP
    >>> frontend(torch.rand(2, 16000), torch.ones(2)).shape  # doctest: +SKIP
    torch.Size([2, 49, 768])
    """

    def __init__(self, source, save_path="pretrained_models", family="wavlm", freeze=True,
                 freeze_feature_extractor=True, layernorm=False, gradient_checkpointing=False,
                 trained_fingerprint=None):
        super().__init__()
        if family not in WRAPPERS:
            fail(f"--ssl_family={family}",
                 f"ssl_family must be one of {sorted(WRAPPERS)}, got '{family}'",
                 fix="pass the family of ssl_source")
        module, name = WRAPPERS[family].rsplit(".", 1)
        wrapper = getattr(importlib.import_module(module), name)
        self.source = source
        try:
            self.ssl = wrapper(source, save_path=save_path, freeze=freeze,
                               freeze_feature_extractor=freeze_feature_extractor,
                               output_all_hiddens=True)
        except (OSError, ValueError) as err:
            _refuse_load(source, save_path, err)
        self.fingerprint = ssl_fingerprint(source, save_path)
        if trained_fingerprint not in (None, self.fingerprint):
            fail(source, "holds other SSL model files than those the model was trained with "
                         f"(fingerprint {self.fingerprint}, not {trained_fingerprint})",
                 fix="load the SSL model it was trained with: restore its files here, or pass "
                     "a copy of them (to an exported model: from_hparams(..., overrides="
                     "{'frontend': {'source': DIR}}))")
        # transformers loads a checkpoint in the precision its files hold (a
        # model saved in float16 or bfloat16 would take no float32 waveform);
        # the recipe runs it in float32, as its other modules, and --precision
        # gives mixed precision.
        self.ssl.model.float()
        # The waveform normalisation and the attention mask of a padded batch
        # are those of transformers' feature extractor (hidden_states), where
        # SpeechBrain's wrapper would normalise the padded tensor as a whole
        # and always mask.
        extractor = self.ssl.feature_extractor
        self.normalize_wav, self.ssl.normalize_wav = extractor.do_normalize, False
        self.attention_mask = extractor.return_attention_mask
        # transformers 5 collects hidden states with hooks, so a layer skipped
        # by LayerDrop during fine-tuning would be missing from the weighted
        # sum: every layer runs at every step.
        self.ssl.model.config.layerdrop = 0.0
        masked_spec_embed = getattr(self.ssl.model, "masked_spec_embed", None)
        if masked_spec_embed is not None and not self.ssl.model.config.apply_spec_augment:
            # The vector that replaces SpecAugment's masked frames: the wrapper
            # turns SpecAugment off, so no forward pass uses it. Left trainable,
            # a fine-tuned model under DDP would wait at every step for its
            # gradient, which never comes.
            masked_spec_embed.requires_grad_(False)
        if getattr(self.ssl.model.config, "do_stable_layer_norm", False):
            # The layer norm a large checkpoint's transformer ends with
            # (wavlm-large, wav2vec2-large-lv60, xls-r): transformers gives the
            # last layer's output before it, so no hidden state uses it, and it
            # would hold a fine-tuned model under DDP as masked_spec_embed would.
            self.ssl.model.encoder.layer_norm.requires_grad_(False)
        if not freeze and freeze_feature_extractor:
            # The wrapper only stops the CNN's parameters from training; in
            # training mode the CNN would still mark its input as needing a
            # gradient and keep its activations (about 110 MB per 3 s crop
            # of a base model) for a backward pass that reaches no parameter.
            self.ssl.model.freeze_feature_encoder()
        if gradient_checkpointing:
            if freeze:
                fail("--ssl_gradient_checkpointing=True", "ssl_gradient_checkpointing needs a "
                     "fine-tuned SSL model (freeze_ssl: False): a frozen one runs under "
                     "no_grad and keeps no activations to save",
                     fix="pass --freeze_ssl=False or --ssl_gradient_checkpointing=False")
            # activation_checkpointing_enable is the name in recent transformers 5
            # releases, gradient_checkpointing_enable its older (now deprecated) one.
            enable = getattr(self.ssl.model, "activation_checkpointing_enable",
                             self.ssl.model.gradient_checkpointing_enable)
            enable()
        self.layer_sum = WeightedLayerSum(self.ssl.config.num_hidden_layers + 1, layernorm)

    @property
    def output_size(self):
        """Feature size of each frame (the encoder's input size)."""
        return self.ssl.config.hidden_size

    def train(self, mode=True):
        """Switch modes; a frozen SSL model stays in eval mode (no dropout).

        Arguments
        ---------
        mode : bool
            Training mode (True) or evaluation mode (False).

        Returns
        -------
        SSLFrontend
            This module.
        """
        super().train(mode)
        if self.ssl.freeze:
            self.ssl.model.eval()
        return self

    def trained_state_dict(self):
        """The state that training changes: without the SSL model when it is frozen."""
        state = self.state_dict()
        if self.ssl.freeze:
            state = {name: value for name, value in state.items() if not name.startswith("ssl.")}
        return state

    @mark_as_saver
    def _save(self, path):
        torch.save(self.trained_state_dict(), path)

    @mark_as_loader
    def _recover(self, path, end_of_epoch):
        """Load a checkpoint; one without the SSL model keeps the one ``source`` loaded."""
        del end_of_epoch  # the same either way
        missing, unexpected = self.load_state_dict(torch_patched_state_dict_load(path),
                                                   strict=False)
        missing = [name for name in missing if not name.startswith("ssl.")]
        if missing or unexpected:
            raise RuntimeError(
                f"The checkpoint {path} does not fit this front end (missing {missing}, "
                f"unexpected {unexpected}): it was written by a run with another ssl_source, "
                "ssl_family or ssl_layernorm. Recover it with that run's hparams.")

    def hidden_states(self, wavs, wav_lens=None):
        """Hidden states of all layers, the transformer's input (projected CNN features) first.

        A padded batch is prepared as transformers' feature extractor
        prepares one: each waveform is normalised over its own samples (when
        the checkpoint's ``do_normalize`` asks for it) and padded with zeros,
        and the model gets an attention mask only when the extractor returns
        one (``return_attention_mask``: the checkpoints whose CNN has layer
        normalisation, such as wavlm-large, and wavlm-base-plus; not
        wav2vec2-base). With such a mask and a CNN with layer normalisation
        the hidden states of a waveform do not depend on the padding; a CNN
        with group normalisation (wav2vec2-base, wavlm-base-plus) normalises
        over the padding too, so its hidden states do, mask or not.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` waveforms at 16 kHz.
        wav_lens : torch.Tensor, optional
            ``[batch]`` relative lengths (1.0 for the longest).

        Returns
        -------
        torch.Tensor
            ``[layers, batch, frames, hidden size]``; computed under
            ``no_grad`` when the SSL model is frozen.
        """
        # The recipe never pads (fixed training crops, equal-length evaluation
        # batches); an all-ones mask would only cost the attention a mask.
        if wav_lens is not None and bool((wav_lens >= 1).all()):
            wav_lens = None
        if self.normalize_wav:
            # F.layer_norm's eps (1e-5) is that of fairseq's loader, which
            # normalised the checkpoints' pretraining audio; transformers'
            # extractor adds 1e-7 instead, which differs only near silence.
            wavs = torch.stack([F.pad(F.layer_norm(wav[:length], (length,)),
                                      (0, len(wav) - length))
                                for wav, length in zip(wavs, sample_counts(wavs, wav_lens))])
        return self.ssl(wavs, wav_lens if self.attention_mask else None)

    def forward(self, wavs, wav_lens=None):
        """Features ``[batch, frames, dim]`` of 16 kHz ``wavs`` or of cached hidden states.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` waveforms at 16 kHz, or ``[batch, frames,
            layers, hidden size]`` hidden states of the frozen SSL model, as
            :func:`local.data.ssl_cache.add_cached_crop_pipeline` provides them.
        wav_lens : torch.Tensor, optional
            ``[batch]`` relative lengths (1.0 for the longest).

        Returns
        -------
        torch.Tensor
            ``[batch, frames, hidden size]``, the weighted sum of all layers.
        """
        if wavs.dim() == 4:
            if not self.ssl.freeze:
                fail("--cache_ssl_features=True",
                     "Cached hidden states reached a fine-tuned SSL model",
                     fix="set freeze_ssl: True or cache_ssl_features: False")
            return self.layer_sum(wavs.permute(2, 0, 1, 3).float())
        return self.layer_sum(self.hidden_states(wavs, wav_lens))

    def frame_lengths(self, wavs, wav_lens):
        """Relative lengths of the frames :meth:`forward` gives, for the encoder's pooling.

        The CNN feature encoder makes ``(samples - receptive field) // stride
        + 1`` frames of each waveform (:func:`local.data.ssl_cache.frame_count`),
        fewer than its share ``wav_lens`` of the padded batch's frames: that
        share would count up to a frame of padding as the waveform's. Cached
        hidden states are frames already, and so are their lengths. Each is
        given as :func:`local.data.audio.relative_lengths` rounds it, so that
        the pooling's mask (``length_to_mask`` of ``lengths * frames``)
        counts no frame of padding.

        Arguments
        ---------
        wavs : torch.Tensor
            What :meth:`forward` takes: waveforms or cached hidden states.
        wav_lens : torch.Tensor
            ``[batch]`` relative lengths of ``wavs``.

        Returns
        -------
        torch.Tensor
            ``[batch]`` relative lengths of the frames (all ones for a batch of
            one length).
        """
        if wavs.dim() == 4:
            # [batch, frames, layers, hidden]: the padded batch's shares are frames already.
            frames, total = sample_counts(wavs, wav_lens), wavs.shape[1]
        else:
            geometry = frame_geometry(self.ssl.config)
            frames = [frame_count(samples, *geometry) for samples in sample_counts(wavs, wav_lens)]
            total = frame_count(wavs.shape[1], *geometry)
        return relative_lengths(frames, total, wav_lens)


def _refuse_load(source, save_path, err):
    """Refuse an SSL checkpoint that could not be loaded, with the fix."""
    if os.path.isdir(source):
        fail(source, f"cannot load the SSL model from this folder ({err})",
             fix="it must hold what save_pretrained writes for the model (config.json, "
                 "model.safetensors) and for its feature extractor (preprocessor_config.json)")
    fail(f"--ssl_source={source}", "cannot load the SSL model: it is not a local folder, and "
         f"the Hugging Face hub did not provide it ({type(err).__name__}: {err})",
         fix=f"with the hub reachable it is downloaded into '{save_path}'. Offline, download "
             f"it on a machine with access, either into that cache (hf download {source} "
             f"--cache-dir {save_path}), copy the cache here and run with HF_HUB_OFFLINE=1, or "
             f"into a folder (hf download {source} --local-dir DIR), copy DIR here and pass "
             "--ssl_source=DIR (to an exported model: from_hparams(..., overrides={'frontend': "
             "{'source': DIR}}))")


def save_layer_weights(layer_sum, folder):
    """Write the learned layer weights as ``layer_weights.csv`` and a bar chart PNG.

    Layer 0 is the transformer's input (the CNN's features projected to the
    hidden size, with the convolutional position embedding added), layer i
    the i-th transformer layer's output. Each file is written whole
    (:func:`local.whole_files.written_whole`): a kill or a full disk leaves
    the one before it.

    Arguments
    ---------
    layer_sum : WeightedLayerSum
        The trained weighted sum.
    folder : str
        Results folder.

    Returns
    -------
    pandas.DataFrame
        Columns ``layer`` and ``weight``.
    """
    weights = layer_sum.layer_weights().cpu().numpy()
    table = pd.DataFrame({"layer": range(len(weights)), "weight": weights})
    with written_whole(os.path.join(folder, "layer_weights.csv"), encoding="utf-8") as out:
        table.to_csv(out, index=False)
    figure = Figure(figsize=(max(4, 0.4 * len(weights)), 3))
    axes = figure.subplots()
    axes.bar(table["layer"], table["weight"])
    axes.axhline(1 / len(weights), color="grey", linestyle=":", label="uniform")
    axes.set_xlabel("layer (0 = transformer input)")
    axes.set_ylabel("softmax weight")
    axes.set_xticks(table["layer"])
    axes.legend()
    figure.tight_layout()
    with written_whole(os.path.join(folder, "layer_weights.png"), "wb") as out:
        figure.savefig(out, format="png", dpi=120)
    return table
