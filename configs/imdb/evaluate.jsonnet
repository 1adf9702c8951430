// imdb (evaluate), following emp-exp.
(import '../lib/hub_datasets.libsonnet').imdb.evaluate
