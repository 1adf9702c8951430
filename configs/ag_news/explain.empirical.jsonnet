// ag_news (explain_empirical), following emp-exp.
(import '../lib/hub_datasets.libsonnet').ag_news.explain_empirical
