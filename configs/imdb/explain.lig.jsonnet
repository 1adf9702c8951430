// LIG on the imdb splits (teacher and reference for the empirical explainer).
local j = (import '../lib/hub_datasets.libsonnet').imdb;
{ jobs: [j.explain_train, j.explain_validation, j.explain_test] }
