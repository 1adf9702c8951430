// Train the empirical explainer for rt.train.tiny on its LIG explanations -> models/rt.distill.tiny/.
(import '../lib/rotten_tomatoes.libsonnet').tiny.distill
