// snli (distill), following emp-exp.
(import '../lib/hub_datasets.libsonnet').snli.distill
