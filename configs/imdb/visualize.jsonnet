// imdb (visualize), following emp-exp.
(import '../lib/hub_datasets.libsonnet').imdb.visualize
