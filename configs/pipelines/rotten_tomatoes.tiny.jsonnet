// The whole Empirical-Explainer pipeline on Rotten Tomatoes with the tiny model.
local empexp = import '../lib/empexp.libsonnet';
empexp.pipeline((import '../lib/rotten_tomatoes.libsonnet').tiny)
