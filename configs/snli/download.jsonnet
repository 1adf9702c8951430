// snli (download stage), from the Hugging Face hub (needs a network).
(import '../lib/hub_datasets.libsonnet').snli.download
