// ag_news (distill), following emp-exp.
(import '../lib/hub_datasets.libsonnet').ag_news.distill
