// imdb (explain_empirical), following emp-exp.
(import '../lib/hub_datasets.libsonnet').imdb.explain_empirical
