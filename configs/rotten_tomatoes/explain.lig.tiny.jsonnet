// Layer Integrated Gradients (20 steps) on the train, validation and test splits for rt.train.tiny:
// the teacher signal for distillation and the reference for evaluation.
local j = (import '../lib/rotten_tomatoes.libsonnet').tiny;
{ jobs: [j.explain_train, j.explain_validation, j.explain_test] }
