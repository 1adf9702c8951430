// ag_news (visualize), following emp-exp.
(import '../lib/hub_datasets.libsonnet').ag_news.visualize
