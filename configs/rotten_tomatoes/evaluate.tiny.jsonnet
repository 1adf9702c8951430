// Empirical explainer vs LIG on the test split: MSE, Spearman, downstream F1 and cost.
(import '../lib/rotten_tomatoes.libsonnet').tiny.evaluate
