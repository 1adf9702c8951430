"""The empirical explainer: a model trained to predict an expensive explainer's scores in one forward pass.

Schwarzenberg, Feldhus and Möller (2021), "Efficient Explanations from Empirical Explainers" (BlackboxNLP;
code DFKI-NLP/emp-exp), distil the token attributions of an expensive explainer (e.g. Integrated Gradients
with many steps) into a model that produces them in one forward pass. Three designs (`mode`):

- `copy` (the paper's): a copy of the fine-tuned classifier's encoder (the classifier already represents the
  task), fine-tuned with a regression head. Explaining costs one forward of a full encoder after the
  classifier's own prediction forward: two forwards in all.
- `student`: the same with only the classifier's first `student_layers` layers kept (`truncated_copy`):
  explaining costs a fraction of one forward.
- `shared` (`SharedExplainerModel`): the classifier itself, frozen, and a small branch reading its hidden
  states (a learned mix of every layer, `branch_layers` transformer layers, the regression head). One forward
  of the classifier gives the prediction and the explanation; its predictions are unchanged.

Heads (`head`):

- `head="token"` (default): dropout + Linear(hidden, 1) applied to every token's final hidden state.
- `head="class"`: dropout + Linear(hidden, num_labels), a score per token and class; the explanation is the column
  of each instance's target class (`pick_class`). One output has to infer from the input which class the teacher
  explained (a binary classifier's two classes get roughly opposite scores); a per-class head is told, and
  explains whichever class is asked. Every mode takes it.
- `head="flat"` (`copy` only): emp-exp's decoder, dropout + Linear(max_length * hidden, max_length) over the
  flattened hidden states of the sequence padded to `max_length`. Hidden states at padded positions are zeroed
  before flattening, which makes the output independent of how much padding a batch carries (emp-exp padded every
  input to `max_length`; real tokens' hidden states do not depend on padding, so this matches it).

Scores at padding positions are exactly 0 with every head.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch
import transformers
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import AutoModel, PreTrainedModel

from attexp.distill.empirical.frozen import (
    FORMAT_VERSION,
    HEAD_SETTINGS,
    HEAD_WEIGHTS,
    ReadsClassifier,
)
from attexp.errors import AttexpError
from attexp.models.encoder import Encoder, layer_stack


class EmpiricalExplainerModel(nn.Module):
    """Encoder + per-token regression head predicting one attribution score per token (Schwarzenberg et al. 2021)."""

    def __init__(
        self,
        encoder: PreTrainedModel,
        head: Literal["token", "flat", "class"] = "token",
        max_length: int = 128,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        if head not in ("token", "flat", "class"):
            raise AttexpError(f'unknown empirical-explainer head {head!r}; expected "token", "flat" or "class"')
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.head_type = head
        self.max_length = max_length
        self.dropout_p = float(getattr(encoder.config, "hidden_dropout_prob", 0.1) if dropout is None else dropout)
        self.dropout = nn.Dropout(self.dropout_p)
        if head == "flat":
            self.head = nn.Linear(max_length * hidden, max_length)
        else:
            self.head = nn.Linear(hidden, 1 if head == "token" else int(encoder.config.num_labels))

    @classmethod
    def from_classifier(
        cls,
        classifier: PreTrainedModel,
        head: Literal["token", "flat", "class"] = "token",
        max_length: int = 128,
        layers: int | None = None,
    ) -> EmpiricalExplainerModel:
        """A new explainer whose encoder is a copy of `classifier.base_model` (the classifier is left untouched);
        with `layers`, only its first `layers` transformer layers (the `student` mode)."""
        encoder = copy.deepcopy(classifier.base_model) if layers is None else truncated_copy(classifier, layers)
        encoder.requires_grad_(True)  # trained whole, even when the classifier it came from is frozen
        return cls(encoder, head=head, max_length=max_length)

    @property
    def mode(self) -> str:
        return "copy" if self.student_layers is None else "student"

    @property
    def student_layers(self) -> int | None:
        return getattr(self.encoder.config, "attexp_student_of", None) and self.encoder.config.num_hidden_layers

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
        targets: Tensor | None = None,
    ) -> Tensor:
        """Scores [B, T] for input_ids [B, T] (of the classes `targets` [B]: required by `head="class"`, ignored
        by the others); exactly 0 where `attention_mask` is 0."""
        length = input_ids.shape[1]
        if self.head_type == "flat" and length > self.max_length:
            raise AttexpError(
                f"the flat-head explainer takes at most max_length={self.max_length} tokens, got {length}; "
                "truncate the inputs or distil with a larger max_length"
            )
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state  # [B,T,H]
        mask = attention_mask.to(hidden.dtype)  # [B, T]
        if self.head_type == "token":
            scores = self.head(self.dropout(hidden)).squeeze(-1)  # [B, T]
        elif self.head_type == "class":
            scores = pick_class(self.head(self.dropout(hidden)), targets)  # [B, T, C] -> [B, T]
        else:
            hidden = hidden * mask.unsqueeze(-1)  # padding carries nothing into the flat layer
            hidden = nn.functional.pad(hidden, (0, 0, 0, self.max_length - length))  # [B, L, H]
            scores = self.head(self.dropout(hidden.flatten(1)))[:, :length]  # [B, L*H] -> [B, L] -> [B, T]
        return scores * mask

    def save_pretrained(self, directory: Path) -> None:
        """Write the encoder (`save_pretrained`, safetensors), the head weights and the head settings."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(directory)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, directory / HEAD_WEIGHTS
        )
        settings = {
            "format_version": FORMAT_VERSION,
            "mode": self.mode,
            "head": self.head_type,
            "max_length": self.max_length,
            "dropout": self.dropout_p,
            "hidden_size": self.encoder.config.hidden_size,
        }
        (directory / HEAD_SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: Path, device: torch.device | str | None = None) -> EmpiricalExplainerModel:
        """Load a saved `copy` or `student` explainer in eval mode (encoder via `AutoModel.from_pretrained`)."""
        settings = read_settings(directory)
        if settings.get("mode", "copy") == "shared":
            raise AttexpError(
                f"{directory} holds a shared-mode explainer, which runs on its classifier: load it with "
                "load_explainer(directory, classifier)"
            )
        transformers.logging.set_verbosity_error()
        encoder = AutoModel.from_pretrained(directory)
        model = cls(encoder, head=settings["head"], max_length=settings["max_length"], dropout=settings["dropout"])
        model.head.load_state_dict(load_file(Path(directory) / HEAD_WEIGHTS))
        if device is not None:
            model.to(device)
        return model.eval()


def pick_class(per_class: Tensor, targets: Tensor | None) -> Tensor:
    """The column of each instance's target class: per_class [B, T, C], targets [B] -> [B, T]."""
    if targets is None:
        raise AttexpError("an empirical explainer with head 'class' needs the class to explain, one per instance")
    targets = targets.to(per_class.device).long().reshape(-1)
    batch, length, classes = per_class.shape
    if targets.shape[0] != batch or bool(((targets < 0) | (targets >= classes)).any()):
        raise AttexpError(
            f"targets {targets.tolist()[:8]} do not name one class in 0..{classes - 1} for each of the {batch} "
            f"instances of the batch; the explainer's head has one output per class of its classifier"
        )
    return per_class.gather(2, targets.view(-1, 1, 1).expand(-1, length, 1)).squeeze(-1)


def read_settings(directory: Path) -> dict:
    """The head settings of a saved empirical explainer, checked (format version, files present)."""
    directory = Path(directory)
    if not (directory / HEAD_SETTINGS).is_file() or not (directory / HEAD_WEIGHTS).is_file():
        raise AttexpError(
            f"{directory} is not a saved empirical explainer (expected {HEAD_SETTINGS} and {HEAD_WEIGHTS}). "
            "Run the distill job that writes it first."
        )
    settings = json.loads((directory / HEAD_SETTINGS).read_text())
    if settings.get("format_version") != FORMAT_VERSION:
        raise AttexpError(
            f"{directory / HEAD_SETTINGS} has format_version {settings.get('format_version')!r}; this attexp "
            f"reads version {FORMAT_VERSION}. Re-run the distill job with this version."
        )
    return settings


def truncated_copy(classifier: PreTrainedModel, layers: int) -> PreTrainedModel:
    """A copy of `classifier.base_model` keeping only its first `layers` transformer layers (the config says so,
    so `save_pretrained` / `AutoModel.from_pretrained` round-trip it)."""
    total = classifier.config.num_hidden_layers
    if not 1 <= layers <= total:
        raise AttexpError(f"student_layers={layers}: the classifier has {total} layers; choose 1 to {total}")
    encoder = copy.deepcopy(classifier.base_model)
    stack = layer_stack(encoder)
    del stack[layers:]
    encoder.config.num_hidden_layers = layers
    if isinstance(getattr(encoder.config, "layer_types", None), list):  # decoders, ModernBERT: one type per layer
        encoder.config.layer_types = encoder.config.layer_types[:layers]
    encoder.config.attexp_student_of = total  # marks a student; saved with the config
    return encoder


class ScalarMix(nn.Module):
    """A learned softmax-weighted sum of every layer's hidden states, times a learned scale (ELMo's mix)."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(count))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, layers: Sequence[Tensor]) -> Tensor:
        weights = self.weights.softmax(dim=0)
        return self.gamma * sum(w * h for w, h in zip(weights, layers, strict=True))


def feed_forward_size(config: transformers.PretrainedConfig) -> int:
    """The classifier's feed-forward width: `intermediate_size` (BERT, RoBERTa, ELECTRA), `hidden_dim`
    (DistilBERT), else 4 x the hidden size."""
    for key in ("intermediate_size", "hidden_dim"):
        if isinstance(getattr(config, key, None), int):
            return int(getattr(config, key))
    return 4 * int(config.hidden_size)


class SharedExplainerModel(ReadsClassifier):
    """The `shared` mode: the frozen classifier and a branch reading its hidden states.

    One classifier forward (`output_hidden_states=True`) gives the logits and, through the branch, the scores:
    `ScalarMix` over the embedding output and every layer's output -> `branch_layers` transformer layers
    (the classifier's width, heads and feed-forward size; padding masked) -> dropout -> Linear(hidden, 1).
    `branch_init="top_layers"` starts the branch's layers as copies of the classifier's top `branch_layers`
    layers (BERT-family layouts, `attexp.models.encoder`); `"random"` starts them fresh; `None` copies where the
    classifier's layout allows it, else starts fresh. Copying learns faster and agrees more with the teacher
    (benchmarks/README.md, "Which branch").
    `head="token"`: Linear(hidden, 1), the scores of the class the teacher explained, whatever the target asked;
    `head="class"`: Linear(hidden, num_labels), one score per token and class, and the explanation is the column
    of each instance's target (the predicted class unless given): a teacher's scores for one class are often the
    other's with the sign flipped, which a single output must infer from the hidden states and a per-class
    output is told.
    The classifier is never trained (its parameters are frozen and it stays in eval mode, dropout off), so its
    predictions are those of the classifier alone. Only the branch is saved; loading checks that the
    classifier it is given is the one it was trained on (`classifier_fingerprint`).
    """

    def __init__(
        self,
        classifier: PreTrainedModel,
        branch_layers: int = 1,
        dropout: float | None = None,
        freeze: bool = True,
        branch_init: Literal["top_layers", "random"] | None = None,
        head: Literal["token", "class"] = "token",
    ) -> None:
        super().__init__()
        config = classifier.config
        hidden = config.hidden_size
        self.hold(classifier, freeze)
        self.branch_layers = branch_layers
        self.dropout_p = float(getattr(config, "hidden_dropout_prob", 0.1) if dropout is None else dropout)
        self.mix = ScalarMix(config.num_hidden_layers + 1)
        self.branch = nn.ModuleList(
            nn.TransformerEncoderLayer(
                hidden,
                config.num_attention_heads,
                dim_feedforward=feed_forward_size(config),
                dropout=self.dropout_p,
                activation="gelu",
                batch_first=True,
            )
            for _ in range(branch_layers)
        )
        self.dropout = nn.Dropout(self.dropout_p)
        if head not in ("token", "class"):
            raise AttexpError(f'unknown shared-explainer head {head!r}; expected "token" or "class"')
        self.head_type = head
        self.head = nn.Linear(hidden, 1 if head == "token" else int(config.num_labels))
        copied = branch_init != "random" and copy_top_layers(self, required=branch_init is not None)
        self.branch_init = "top_layers" if copied else "random"

    mode = "shared"

    def predict_and_explain(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
        targets: Tensor | Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Logits [B, C] of the classifier and scores [B, T] (exactly 0 at padding) from one classifier forward.

        targets (`head="class"`; ignored by `"token"`): the class explained per instance, [B], or a function of
        the logits giving it (the explain engine's target policy); None: the predicted class."""
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        with torch.no_grad():
            out = self.classifier(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **kwargs
            )
        if self.head_type == "class":
            targets = self.explained_class(out.logits, targets)
        return out.logits, self.explain_hidden_states(out.hidden_states, attention_mask, targets)

    def explain_hidden_states(
        self, hidden_states: Sequence[Tensor], attention_mask: Tensor, targets: Tensor | None = None
    ) -> Tensor:
        """Scores [B, T] (exactly 0 at padding) from the classifier's hidden states: the embedding output and
        every layer's, each [B, T, H], as `output_hidden_states=True` returns them; `targets` [B] picks the
        class column of a `head="class"` branch (required there)."""
        hidden = self.mix([h.detach() for h in hidden_states])  # [B, T, H]
        padding = attention_mask == 0
        for layer in self.branch:
            hidden = layer(hidden, src_key_padding_mask=padding)
        outputs = self.head(self.dropout(hidden))  # [B, T, 1 or C]
        scores = outputs.squeeze(-1) if self.head_type == "token" else pick_class(outputs, targets)  # [B, T]
        return scores * attention_mask.to(scores.dtype)

    def save_pretrained(self, directory: Path) -> None:
        """Write the branch weights and settings (not the classifier: it is the explained model itself)."""
        self.save_learned(
            directory,
            {
                "branch_layers": self.branch_layers,
                "dropout": self.dropout_p,
                "branch_init": self.branch_init,
                "head": self.head_type,
                "layer_norm_eps": self.branch[0].norm1.eps if len(self.branch) else None,  # copied layers take theirs
                "hidden_size": self.classifier.config.hidden_size,
            },
        )


def copy_top_layers(model: SharedExplainerModel, required: bool) -> bool:
    """Set the branch's layers to copies of the classifier's top `len(model.branch)` layers; returns whether it
    did. Both are post-LayerNorm layers with the same parts; the activation may differ in approximation (e.g.
    gelu_new), harmless for a starting point. Where the classifier's layout is not one `Encoder` reads, is
    pre-norm (decoders, ModernBERT) or the sizes differ, raises if `required`, else leaves the branch fresh."""
    try:
        encoder = Encoder(model.classifier)
        if encoder.layout.pre_norm:
            raise AttexpError(
                f"its layers are pre-norm ({encoder.layout.name} layout), the branch's post-LayerNorm layers have "
                "another shape of computation"
            )
        source = encoder.layers[-len(model.branch) :] if len(model.branch) else []
        if len(source) < len(model.branch):
            raise AttexpError(f"branch_layers={len(model.branch)} but the classifier has {len(source)} layers to copy")
        pairs = list(zip(model.branch, source, strict=True))
        for target, layer in pairs:
            shapes = [
                (target.linear1.weight.shape, layer.ffn_in.weight.shape),
                (target.linear2.weight.shape, layer.ffn_out.weight.shape),
                (target.self_attn.out_proj.weight.shape, layer.output.weight.shape),
            ]
            if any(a != b for a, b in shapes):
                raise AttexpError(f"the classifier's layer sizes {[b for _, b in shapes]} differ from the branch's")
    except AttexpError as err:
        if required:
            raise AttexpError(
                f"branch_init 'top_layers' copies the classifier's top layers into the branch, which this classifier "
                f"does not allow ({err}); set branch_init: 'random'"
            ) from err
        return False
    with torch.no_grad():
        for target, layer in pairs:
            attention = target.self_attn
            attention.in_proj_weight.copy_(torch.cat([layer.query.weight, layer.key.weight, layer.value.weight]))
            attention.in_proj_bias.copy_(torch.cat([layer.query.bias, layer.key.bias, layer.value.bias]))
            attention.out_proj.load_state_dict(layer.output.state_dict())
            target.linear1.load_state_dict(layer.ffn_in.state_dict())
            target.linear2.load_state_dict(layer.ffn_out.state_dict())
            for norm, source_norm in ((target.norm1, layer.norm), (target.norm2, layer.ffn_norm)):
                norm.load_state_dict(source_norm.state_dict())
                norm.eps = source_norm.eps
    return True
