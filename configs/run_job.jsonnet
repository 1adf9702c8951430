// The demo pipeline, run by `python run_job.py` with no config: the Empirical-Explainer pipeline on the
// Rotten Tomatoes sentences with a tiny BERT, offline, in a few minutes on a laptop CPU.
//   download RT -> train tiny -> explain LIG (train/validation/test) -> distill -> explain empirical
//   -> evaluate -> visualize
import 'pipelines/rotten_tomatoes.tiny.jsonnet'
