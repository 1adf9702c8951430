// snli (explain_empirical), following emp-exp.
(import '../lib/hub_datasets.libsonnet').snli.explain_empirical
