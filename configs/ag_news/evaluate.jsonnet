// ag_news (evaluate), following emp-exp.
(import '../lib/hub_datasets.libsonnet').ag_news.evaluate
