// Fine-tune the tiny model on rt.download -> models/rt.train.tiny/.
(import '../lib/rotten_tomatoes.libsonnet').tiny.train
