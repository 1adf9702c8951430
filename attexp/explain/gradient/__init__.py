"""Gradient-based explainers, computed with Captum (what every Captum explainer shares is `attexp.explain.captum_base`).

Token ids are discrete, so gradients are taken with respect to embeddings. Two routes:

- `lig`: Layer Integrated Gradients on an embedding layer (the word embeddings or the whole embedding block);
  Captum runs the model from the token ids and swaps the layer's output for the path points.
- `ig`, `saliency`, `input_x_gradient`, `deeplift`, `gradient_shap`: the word embeddings of the batch are
  looked up once and passed to the model as `inputs_embeds` (position and segment embeddings are added by
  the model as usual), with the attention mask and segment ids as additional forward arguments.

The methods and their papers:

- Integrated Gradients (Sundararajan et al., 2017, "Axiomatic Attribution for Deep Networks", ICML).
- Saliency: gradient magnitudes (Simonyan et al., 2014, "Deep Inside Convolutional Networks", ICLR workshop).
- Input x Gradient (Shrikumar et al., 2016, "Not Just a Black Box", arXiv:1605.01713).
- DeepLift, Rescale rule (Shrikumar et al., 2017, "Learning Important Features Through Propagating Activation
  Differences", ICML).
- Gradient SHAP: expected gradients between a baseline and noisy inputs (Lundberg & Lee, 2017, "A Unified
  Approach to Interpreting Model Predictions", NeurIPS; Erion et al., 2021, "Improving performance of deep
  learning models with axiomatic attribution priors and expected gradients", Nature Machine Intelligence).

Baselines (what "absent" means): `pad`, `mask`, `unk` put that token's embedding at every real token, `zero` a
zero vector (only where the model takes embeddings: not `lig`). Structural specials ([CLS], [SEP]) and padding
keep their own embeddings in every baseline, so methods that multiply by (input - baseline) give them exactly 0.

Batching: a whole engine batch goes into one Captum call, which stacks the integration steps (or noise
samples, or the input and baseline of DeepLift) of every instance into one forward/backward pass. The memory
budget `max_tokens_per_forward` (rows x padded width per pass, see `attexp.explain.batching.rows_per_forward`;
unset, `captum_base.gradient_max_tokens` sizes it from the model and the length) splits it into chunks (Captum's
`internal_batch_size`) or groups of instances where Captum cannot chunk.

Passes are counted honestly: every row that goes through the model is counted by a wrapper around the
forward function, and divided among the instances it served.
"""

from attexp.explain.gradient.embeddings import (  # registers
    DeepLiftConfig,
    DeepLiftExplainer,
    EmbeddingGradientConfig,
    EmbeddingGradientExplainer,
    GradientShapConfig,
    GradientShapExplainer,
    IGConfig,
    InputXGradientConfig,
    InputXGradientExplainer,
    IntegratedGradientsExplainer,
    SaliencyConfig,
    SaliencyExplainer,
)
from attexp.explain.gradient.lig import LayerIntegratedGradientsExplainer, LIGConfig, embedding_layer  # registers

__all__ = [
    "DeepLiftConfig",
    "DeepLiftExplainer",
    "EmbeddingGradientConfig",
    "EmbeddingGradientExplainer",
    "GradientShapConfig",
    "GradientShapExplainer",
    "IGConfig",
    "InputXGradientConfig",
    "InputXGradientExplainer",
    "IntegratedGradientsExplainer",
    "LIGConfig",
    "LayerIntegratedGradientsExplainer",
    "SaliencyConfig",
    "SaliencyExplainer",
    "embedding_layer",
]
