// Heatmaps of LIG and the empirical explainer side by side -> visualizations/rt.visualize.minilm/index.html.
(import '../lib/rotten_tomatoes.libsonnet').minilm.visualize
