// LIG on the ag_news splits (teacher and reference for the empirical explainer).
local j = (import '../lib/hub_datasets.libsonnet').ag_news;
{ jobs: [j.explain_train, j.explain_validation, j.explain_test] }
