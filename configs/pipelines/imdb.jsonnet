// The Empirical-Explainer pipeline on imdb from the Hugging Face hub with bert-base-uncased (needs a network;
// validates offline with --dry-run).
local empexp = import '../lib/empexp.libsonnet';
empexp.pipeline((import '../lib/hub_datasets.libsonnet').imdb)
