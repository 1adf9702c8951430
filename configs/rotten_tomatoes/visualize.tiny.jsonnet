// Heatmaps of LIG and the empirical explainer side by side -> visualizations/rt.visualize.tiny/index.html.
(import '../lib/rotten_tomatoes.libsonnet').tiny.visualize
