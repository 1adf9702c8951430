// Train the empirical explainer for rt.train.minilm on its LIG explanations -> models/rt.distill.minilm/.
(import '../lib/rotten_tomatoes.libsonnet').minilm.distill
