"""Loading a saved empirical explainer of any mode (`copy`, `student`, `shared`, `heads`) from its folder."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel

from attexp.distill.empirical.heads import HeadsExplainerModel
from attexp.distill.empirical.model import EmpiricalExplainerModel, SharedExplainerModel, read_settings

LearnedExplainer = EmpiricalExplainerModel | SharedExplainerModel | HeadsExplainerModel


def load_explainer(
    directory: Path, classifier: PreTrainedModel, device: torch.device | str | None = None
) -> LearnedExplainer:
    """Load a saved empirical explainer of any mode in eval mode; a `shared` or `heads` one runs on `classifier`,
    which must be the classifier it was trained on."""
    settings = read_settings(directory)
    mode = settings.get("mode", "copy")
    if mode == "heads":
        model = HeadsExplainerModel.load(directory, settings, classifier)
        return model if device is None else model.to(device)
    if mode != "shared":
        return EmpiricalExplainerModel.from_pretrained(directory, device=device)
    model = SharedExplainerModel(
        classifier,
        settings["branch_layers"],
        settings["dropout"],
        freeze=False,
        branch_init="random",  # the saved branch weights replace whatever it starts from
        head=settings.get("head", "token"),
    )
    model.load_learned(directory, settings)
    if settings.get("layer_norm_eps") is not None:  # not a weight: the state dict does not carry it
        for layer in model.branch:
            layer.norm1.eps = layer.norm2.eps = float(settings["layer_norm_eps"])
    if device is not None:
        model.to(device)
    return model.eval()
