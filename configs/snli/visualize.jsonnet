// snli (visualize), following emp-exp.
(import '../lib/hub_datasets.libsonnet').snli.visualize
