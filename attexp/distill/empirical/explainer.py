"""Learned explainers: models trained to predict another explainer's attributions.

An empirical explainer (Schwarzenberg et al., 2021, "Efficient Explanations from Empirical Explainers",
BlackboxNLP; code DFKI-NLP/emp-exp) is distilled by the distill stage from an expensive explainer's records
and then explains a new instance with a single forward pass, no backward pass. The explain stage treats it
like any other explainer, so its cost and faithfulness are measured the same way as its teacher's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import torch

from attexp.config.schema import Upstream
from attexp.distill.empirical.frozen import ReadsClassifier
from attexp.distill.empirical.loading import load_explainer
from attexp.explain.base import Explainer, ExplainerConfig, Explanation, zero_padding
from attexp.models.inputs import Batch
from attexp.registry import EXPLAINERS


class EmpiricalConfig(ExplainerConfig):
    """Empirical explainer (Schwarzenberg et al., 2021): a distilled model that predicts token scores.

    model: name of the distill job whose artifact (`<distill job>/model/`) holds the explainer model.
    """

    type: Literal["empirical"] = "empirical"
    model: Annotated[str, Upstream(("distill",))]


@EXPLAINERS.register("empirical", EmpiricalConfig)
class EmpiricalExplainer(Explainer):
    """Empirical explainer (Schwarzenberg et al., 2021): one forward pass of a distilled model per batch.

    The distilled model reads the same token ids as the classifier (it was built from the classifier and its
    tokenizer) and predicts the scores its teacher gave. With a one-output head (`token`, `flat`) those are the
    scores of the class the teacher explained and `batch.targets` is not used (explain with the teacher's target
    policy, usually "predicted"); with `head: 'class'` it scores every class and returns the column of each
    instance's target.
    Specials: scored as the teacher scored them; padding gets exactly 0.
    Cost per instance: `copy` and `student` explainers run their own encoder after the prediction forward
    (1 forward, 0 backward passes; a student's forward is its fraction of the classifier's layers); a `shared`
    or `heads` explainer gives the prediction and the explanation from the prediction forward itself
    (`predict_and_explain`: 0 passes beyond it). It runs under the explain job's `precision`
    (`mixed_precision`): a forward of a regression model, no gradients summed.
    """

    mixed_precision = True
    config: EmpiricalConfig

    def __init__(
        self, config: EmpiricalConfig, model: torch.nn.Module, tokenizer: Any, upstream: Mapping[str, Path]
    ) -> None:
        super().__init__(config, model, tokenizer, upstream)
        folder = self.upstream_dir(config.model, "model") / "model"
        self.explainer_model = load_explainer(folder, model, device=self.device)
        self.predicts = isinstance(self.explainer_model, ReadsClassifier)

    def predict_and_explain(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        targets: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, Explanation]:
        """`shared` and `heads` modes: the classifier's logits [B, C] and the explanation, from one classifier forward;
        `targets` ([B], or a function of the logits; None: the predicted class) as in
        `SharedExplainerModel.predict_and_explain`."""
        with torch.inference_mode():
            logits, scores = self.explainer_model.predict_and_explain(
                input_ids, attention_mask, token_type_ids, targets
            )
        size = input_ids.shape[0]
        explanation = Explanation(
            attributions=zero_padding(scores.float(), attention_mask),
            forward_passes=[0] * size,
            backward_passes=[0] * size,
        )
        return logits, explanation

    def explain(self, batch: Batch) -> Explanation:
        if self.predicts:  # called outside explain_rows (e.g. by a benchmark): the forward it would share
            inputs = (batch.input_ids, batch.attention_mask, batch.token_type_ids, batch.targets)
            return self.predict_and_explain(*inputs)[1]
        with torch.inference_mode():
            # scores [B, T]
            scores = self.explainer_model(
                batch.input_ids, batch.attention_mask, batch.token_type_ids, targets=batch.targets
            )
            scores = zero_padding(scores.float(), batch.attention_mask)
        size = len(batch)
        return Explanation(attributions=scores, forward_passes=[1] * size, backward_passes=[0] * size)
