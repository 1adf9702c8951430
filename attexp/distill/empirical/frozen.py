"""What the explainers that read a frozen classifier's own forward share (the `shared` and `heads` modes of the
empirical explainer): the classifier's fingerprint, and a base class that keeps the classifier frozen, saves only the
learned part and loads it only on the classifier it was trained on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from attexp.errors import AttexpError

HEAD_WEIGHTS = "explainer_head.safetensors"
HEAD_SETTINGS = "explainer_head.json"
FORMAT_VERSION = 1


def classifier_fingerprint(classifier: nn.Module) -> str:
    """sha256 over the classifier's parameter names, shapes, dtypes and values: which classifier a shared
    explainer's branch was trained on."""
    digest = hashlib.sha256()
    for name, param in classifier.named_parameters():
        tensor = param.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


class ReadsClassifier(nn.Module):
    """Base of the explainers that read the frozen classifier's own prediction forward (`shared`, `heads`): the
    classifier stays in eval mode while the learned part trains, `forward` is the explanation of
    `predict_and_explain`, and only the learned part is saved, beside the classifier's fingerprint, so that it
    loads on that classifier alone. Subclasses set `mode` and call `hold` with their classifier."""

    mode: str
    classifier: nn.Module
    fingerprint: str

    def hold(self, classifier: nn.Module, freeze: bool) -> None:
        """Keep `classifier` as the one read; `freeze` (for training) stops its gradients. Loading to explain leaves
        the caller's classifier as it is."""
        self.classifier = classifier
        if freeze:
            classifier.requires_grad_(False)
        self.fingerprint = classifier_fingerprint(classifier)

    def learned_parameters(self) -> list[nn.Parameter]:
        """Every parameter but the classifier's: what distillation trains and `save_learned` writes."""
        return [p for name, p in self.named_parameters() if not name.startswith("classifier.")]

    @staticmethod
    def explained_class(logits: Tensor, targets: Tensor | Callable[[Tensor], Tensor] | None) -> Tensor:
        """The class explained per instance [B]: `targets` as given, a function of the logits (the explain engine's
        target policy) applied to them, or the predicted class (None)."""
        targets = targets(logits) if callable(targets) else targets
        return logits.argmax(dim=-1) if targets is None else targets

    def train(self, mode: bool = True) -> ReadsClassifier:
        super().train(mode)
        self.classifier.eval()  # frozen: its dropout stays off, its predictions unchanged
        return self

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
        targets: Tensor | None = None,
    ) -> Tensor:
        """Scores [B, T] (of `targets` [B] with `head="class"`, default the predicted class); exactly 0 where
        `attention_mask` is 0."""
        return self.predict_and_explain(input_ids, attention_mask, token_type_ids, targets)[1]

    def save_learned(self, directory: Path, settings: dict) -> None:
        """Write the learned weights (everything but the classifier) and `settings` (+ mode and fingerprint)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        learned = {
            k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if not k.startswith("classifier.")
        }
        save_file(learned, directory / HEAD_WEIGHTS)
        settings = {"format_version": FORMAT_VERSION, "mode": self.mode, **settings}
        settings["classifier_sha256"] = self.fingerprint
        (directory / HEAD_SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")

    def load_learned(self, directory: Path, settings: dict) -> None:
        """Load the learned weights saved in `directory`, after checking that this is the classifier they were
        trained on."""
        if self.fingerprint != settings["classifier_sha256"]:
            raise AttexpError(
                f"the {self.mode}-mode empirical explainer in {directory} was trained on another classifier than the "
                "one being explained (its weights differ): it reads its own classifier's forward. Explain the "
                "classifier its distill job read, or distil one for this classifier."
            )
        missing, unexpected = self.load_state_dict(load_file(Path(directory) / HEAD_WEIGHTS), strict=False)
        if unexpected or any(not k.startswith("classifier.") for k in missing):
            raise AttexpError(f"{directory / HEAD_WEIGHTS} does not match a {self.mode}-mode explainer of its settings")
