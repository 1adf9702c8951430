"""A BERT-style WordPiece tokenizer learned from a corpus, deterministically: the tiny model's vocabulary."""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers import models as tokenizer_models
from transformers import BertTokenizerFast

from attexp.errors import AttexpError

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(
    texts: Sequence[str], vocab_size: int, lowercase: bool, model_max_length: int, segments: bool = True
) -> BertTokenizerFast:
    """A BERT-style WordPiece tokenizer learned from `texts`; the same texts give the same vocabulary and ids.

    `tokenizers`' WordPiece trainer breaks ties between equally frequent merges in hash-map order, so its
    vocabulary changes from process to process, which would make a resumed or repeated run incompatible
    with its own checkpoints. The word pieces are therefore learned with `tokenizers`' BPE trainer (its ties
    are broken by the ids of a sorted alphabet: deterministic) and each piece enters the WordPiece vocabulary
    both as a word start and as a continuation (`##piece`), in the order BPE learned them, after the specials.
    `segments=False`: the tokenizer makes no `token_type_ids` (for models that take none; saved with it).
    """
    if not texts:
        raise AttexpError("the tiny model needs training texts to learn its WordPiece vocabulary; got none")
    normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    bpe = Tokenizer(tokenizer_models.BPE(unk_token="[UNK]"))
    bpe.normalizer, bpe.pre_tokenizer = normalizer, pre_tokenizer
    budget = max((vocab_size - len(BERT_SPECIALS)) // 2, 1)
    bpe.train_from_iterator(list(texts), trainers.BpeTrainer(vocab_size=budget, show_progress=False))
    vocab = {token: i for i, token in enumerate(BERT_SPECIALS)}
    for piece in sorted(bpe.get_vocab(), key=bpe.get_vocab().__getitem__):  # alphabet first, then merges
        for entry in (piece, "##" + piece):
            if len(vocab) < vocab_size:
                vocab.setdefault(entry, len(vocab))
    tok = Tokenizer(tokenizer_models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    return BertTokenizerFast(
        tokenizer_object=tok,
        do_lower_case=lowercase,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
        **({} if segments else {"model_input_names": ["input_ids", "attention_mask"]}),
    )
