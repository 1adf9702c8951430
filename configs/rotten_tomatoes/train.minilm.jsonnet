// Fine-tune the minilm model on rt.download -> models/rt.train.minilm/.
(import '../lib/rotten_tomatoes.libsonnet').minilm.train
