// snli (evaluate), following emp-exp.
(import '../lib/hub_datasets.libsonnet').snli.evaluate
