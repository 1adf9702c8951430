// Explain the test split with the distilled empirical explainer (one forward pass per batch).
(import '../lib/rotten_tomatoes.libsonnet').tiny.explain_empirical
