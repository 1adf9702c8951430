// imdb (distill), following emp-exp.
(import '../lib/hub_datasets.libsonnet').imdb.distill
