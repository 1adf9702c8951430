"""The `heads` mode of the empirical explainer: token scores read off the prediction forward's attention.

AT2 (Cohen-Wang, Chuang and Madry 2025, "Learning to Attribute with Attention") scores a source token by a learned
linear map over every head's attention weight from the position being explained to that token. Here the same idea
explains a sequence classifier: the position is the row the classification head reads (the [CLS] row of the BERT
family, the last real token of a decoder, the read-weighted mean of the rows where the head mean-pools), and the
map is trained against an expensive explainer's scores by the distill stage, like every empirical explainer.

For layer l, head h and token j, with a = that head's attention from the read row to j and v its value vector
there (bias included, as the head adds it to the read position), the score of token j for class c is

    score(j, c) = sum_{l,h} a[l,h,j] * (w[l,h,c] + v[l,h,j] . u[l,h,c])  +  x[j] . z[c]  +  b[c]

- `attention`: the w term, AT2's map (a weight per head and class). Attention weights are not signed, so alone
  they rank what the heads read, not whether it speaks for or against the class.
- `values`: the u term, the value vector each head moves from j into the read row, projected on a learned
  direction per head and class: signed, and the part of the head's output that the class logit can see (ALTI and
  value-norm attention weigh the same vectors by their norm, which has no sign).
- `hidden`: the z term, a linear read of the last layer's output at j as the head sees it (x[j], the final norm
  applied where the layout has one): what the token means in context.

Every feature comes from the prediction forward itself (one pass of the layers through
`attexp.models.encoder.Encoder`, with eager attention whose handler keeps each layer's read row and value vectors),
so explaining costs the prediction, eager attention instead of the fused kernel, and L x heads x d x classes
multiply-adds per token. The classifier is frozen and never saved; the map (a few
thousand numbers) is, with the classifier's fingerprint, and loads only on that classifier. It runs on every
layout `Encoder` knows (BERT family, ModernBERT, Llama/Qwen/Mistral/Gemma decoders).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from attexp.distill.empirical.frozen import ReadsClassifier
from attexp.distill.empirical.model import pick_class
from attexp.errors import AttexpError
from attexp.models.encoder import Encoder, eager_probabilities

FEATURES = ("attention", "values", "hidden")
Feature = Literal["attention", "values", "hidden"]


class HeadsExplainerModel(ReadsClassifier):
    """The frozen classifier and a learned map from its read row's attention (and values, and last hidden states)
    to token scores (module docstring). `head="class"`: a score per class, the target's column is the explanation;
    `head="token"`: one output, the scores of the class the teacher explained."""

    mode = "heads"

    def __init__(
        self,
        classifier: PreTrainedModel,
        head: Literal["token", "class"] = "class",
        features: Sequence[Feature] = FEATURES,
        freeze: bool = True,
    ) -> None:
        super().__init__()
        unknown = sorted(set(features) - set(FEATURES))
        if unknown or not features:
            raise AttexpError(f"heads-mode features {list(features)}: choose one or more of {list(FEATURES)}")
        if head not in ("token", "class"):
            raise AttexpError(f'unknown heads-explainer head {head!r}; expected "token" or "class"')
        self.hold(classifier, freeze)
        self.encoder = Encoder(classifier)
        self.head_type = head
        self.features = tuple(f for f in FEATURES if f in features)
        layers, heads, size = self.encoder.num_layers, self.encoder.num_heads, self.encoder.head_size
        outputs = 1 if head == "token" else int(classifier.config.num_labels)
        hidden = int(classifier.config.hidden_size)
        # small random starts: the correlation term of the loss has no gradient at constant scores
        generator = torch.Generator().manual_seed(0)
        self.weights = nn.Parameter(torch.randn(layers, heads, outputs, generator=generator) * 1e-2)
        self.directions = nn.Parameter(torch.randn(layers, heads, size, outputs, generator=generator) * size**-0.5)
        self.lexicon = nn.Parameter(torch.randn(hidden, outputs, generator=generator) * hidden**-0.5)
        self.bias = nn.Parameter(torch.zeros(outputs))

    def read(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One forward of the classifier: logits [B, C], the read rows' attention [B, L, heads, T], the value
        vectors [B, L, heads, T, d] (empty without the `values` term) and the last layer's output as the head sees
        it, [B, T, H] (float32, detached)."""
        encoder, keep_values = self.encoder, "values" in self.features
        rows: list[Tensor | None] = [None] * encoder.num_layers
        kept: list[Tensor | None] = [None] * encoder.num_layers  # value vectors [B, h, T, d]
        with torch.no_grad():
            hidden = encoder.embed(input_ids, token_type_ids)
            context = encoder.context(attention_mask, hidden.dtype, input_ids)
            batch = torch.arange(input_ids.shape[0], device=input_ids.device)

            def record(index: int, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, scaling: float):
                probs = eager_probabilities(query, key, mask, scaling)  # [B, h, T, T]: the model's own
                if context.read_index is not None:
                    rows[index] = probs[batch, :, context.read_index]  # [B, h, T]
                else:  # mean pooling: the read-weighted mean of the rows
                    rows[index] = torch.einsum("bi,bhij->bhj", context.read.to(probs.dtype), probs)
                kept[index] = value if keep_values else None
                return probs

            with encoder.attention(record):
                final = encoder.final(encoder.run(hidden, context))  # [B, T, H]
            logits = encoder.head(context.pool(final))
            attention = torch.stack(rows, dim=1)  # [B, L, h, T]
            values = torch.stack(kept, dim=1).float() if keep_values else attention.new_zeros(0)
        return logits, attention.float(), values, final.float()

    def scores_from(
        self, attention: Tensor, values: Tensor, hidden: Tensor, attention_mask: Tensor, targets: Tensor | None
    ) -> Tensor:
        """Scores [B, T] from `read`'s features (exactly 0 at padding); `targets` [B] picks the class column of a
        `head="class"` map."""
        outputs = self.bias.expand(*attention_mask.shape, -1)  # [B, T, C]
        if "attention" in self.features:
            outputs = outputs + torch.einsum("blht,lhc->btc", attention, self.weights)
        if "values" in self.features:
            projected = torch.einsum("blhtd,lhdc->blhtc", values, self.directions)  # [B, L, h, T, C]
            outputs = outputs + torch.einsum("blht,blhtc->btc", attention, projected)
        if "hidden" in self.features:
            outputs = outputs + hidden @ self.lexicon
        scores = outputs.squeeze(-1) if self.head_type == "token" else pick_class(outputs, targets)
        return scores * attention_mask.to(scores.dtype)

    def predict_and_explain(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
        targets: Tensor | Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Logits [B, C] of the classifier and scores [B, T] (exactly 0 at padding) from one classifier forward;
        targets as in `SharedExplainerModel.predict_and_explain` (None: the predicted class)."""
        logits, attention, values, hidden = self.read(input_ids, attention_mask, token_type_ids)
        if self.head_type == "class":
            targets = self.explained_class(logits, targets)
        return logits, self.scores_from(attention, values, hidden, attention_mask, targets)

    def save_pretrained(self, directory: Path) -> None:
        """Write the map's weights and settings (not the classifier: it is the explained model itself)."""
        settings = {"head": self.head_type, "features": list(self.features), "layers": self.encoder.num_layers}
        self.save_learned(directory, settings | {"heads": self.encoder.num_heads})

    @classmethod
    def load(cls, directory: Path, settings: dict, classifier: PreTrainedModel) -> HeadsExplainerModel:
        """The saved map in `directory` (settings already read) over `classifier`, which must be the one it was
        trained on."""
        model = cls(classifier, head=settings["head"], features=settings["features"], freeze=False)
        model.load_learned(directory, settings)
        return model.eval()
