"""Words, not subword pieces, for every tokenizer family: WordPiece (`##`), byte-level BPE (`Ġ`, RoBERTa) and
SentencePiece (`▁`, ALBERT, XLM-R). Real `tokenizers` models are trained here on a few sentences, wrapped as
transformers fast tokenizers the way those model families ship them."""

from __future__ import annotations

import pytest
from tokenizers import ByteLevelBPETokenizer, SentencePieceUnigramTokenizer, processors
from transformers import PreTrainedTokenizerFast

from attexp.models.inputs import tokenize_rows
from attexp.models.sources import train_wordpiece
from attexp.visualize.heatmap import heatmap_row
from attexp.visualize.heatmap import merge_words as merge_by_word_ids
from attexp.visualize.heatmap import merge_words as merge_wordpieces

CORPUS = ["Hello, wonderful world of films!", "The unbelievably boring plot", "Émile's café was délicieux"] * 20
SPECIALS = dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def wordpiece():
    return train_wordpiece(CORPUS, 120, False, 64)


def byte_level_bpe():
    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    bpe.train_from_iterator(CORPUS, vocab_size=300, special_tokens=specials, show_progress=False)
    sep, cls = ("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>"))
    bpe.post_processor = processors.RobertaProcessing(sep, cls)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, cls_token="<s>", sep_token="</s>", **SPECIALS)


def sentencepiece():
    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(
        CORPUS, vocab_size=120, special_tokens=["<pad>", "<unk>", "<s>", "</s>"], unk_token="<unk>", show_progress=False
    )
    ids = [("<s>", unigram.token_to_id("<s>")), ("</s>", unigram.token_to_id("</s>"))]
    unigram._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B </s>", special_tokens=ids
    )
    return PreTrainedTokenizerFast(tokenizer_object=unigram._tokenizer, **SPECIALS)


FAMILIES = {"wordpiece": wordpiece, "byte-level-bpe": byte_level_bpe, "sentencepiece": sentencepiece}
ROW = {"idx": 0, "text": "Émile's unbelievably boring café", "text_pair": "Hello world"}


@pytest.mark.parametrize("family", FAMILIES)
def test_word_ids_give_the_words_as_written(family):
    tokenizer = FAMILIES[family]()
    feature = tokenize_rows(tokenizer, [ROW], 64, with_words=True)[0]
    tokens = tokenizer.convert_ids_to_tokens(feature["input_ids"])
    assert len(feature["word_ids"]) == len(tokens)
    assert len(tokens) > len(feature["words"]) + 3  # the words really are split into pieces here
    # every word is cut from the text as written (case, accents, apostrophes kept), in order, pair text last
    assert "".join(feature["words"]) == "".join((ROW["text"] + ROW["text_pair"]).split())
    assert {"unbelievably", "café", "Hello", "world"} <= set(feature["words"])
    specials = {tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "</s>", "[CLS]", "[SEP]")}
    for token_id, word in zip(feature["input_ids"], feature["word_ids"], strict=True):
        assert (word is None) == (token_id in specials)

    scores = [float(i) for i in range(len(tokens))]
    words, summed, pieces = merge_by_word_ids(tokens, scores, feature["word_ids"], feature["words"])
    assert sum(summed) == pytest.approx(sum(scores))  # merging moves no mass
    assert [w for w in words if w not in ("<s>", "</s>", "[CLS]", "[SEP]")] == feature["words"]
    assert all(len(p.split()) >= 1 for p in pieces)


@pytest.mark.parametrize("family", ["byte-level-bpe", "sentencepiece"])
def test_spelling_fallback_knows_word_start_marks(family):
    """Records without word_ids (older ones) are merged by spelling: Ġ and ▁ start words, other pieces continue."""
    tokenizer = FAMILIES[family]()
    ids = tokenizer("The unbelievably boring plot")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    words, summed, _ = merge_wordpieces(tokens, [1.0] * len(tokens))
    assert words == ["<s>", "The", "unbelievably", "boring", "plot", "</s>"]
    assert sum(summed) == len(tokens)


def test_wordpiece_fallback_is_unchanged():
    words, scores, pieces = merge_wordpieces(["[CLS]", "play", "##ing", "##s", "now", "[SEP]"], [0, 1, 2, 3, 4, 5])
    assert words == ["[CLS]", "playings", "now", "[SEP]"] and scores == [0, 6, 4, 5]
    assert pieces[1] == "play ##ing ##s"


def test_specials_can_be_left_out_of_the_colour_scale():
    tokens = ["[CLS]", "good", "film", "[SEP]"]
    scores = [10.0, 1.0, -0.5, 4.0]
    _, with_specials = heatmap_row(tokens, scores)
    row, without = heatmap_row(tokens, scores, scale_specials=False)
    assert with_specials == 10.0 and without == 1.0
    assert "0.500" in row[2].style and "1.000" in row[1].style  # the words use the full colour range
    assert "1.000" in row[0].style  # a special above the scale is clipped to full colour, not hidden


def test_one_grouping_reads_recorded_word_ids_before_spelling():
    """`attexp.io.words.group_words` is what the heatmaps and the masking game count words by."""
    from attexp.io.words import group_words, word_ids

    tokens = ["<s>", "The", "Ġun", "like", "</s>", "</s>", "ly", "Ġgood", "</s>"]
    # by spelling: no word reaches across a structural special (the two texts of a pair stay apart)
    spelled = group_words(tokens)
    assert spelled.ids == [None, 0, 1, 1, None, None, 2, 3, None]
    assert spelled.texts == ["The", "unlike", "ly", "good"]
    # by the record's word ids: structural tokens are in no word whatever the record says; ids are renumbered
    recorded = [None, 5, 6, 6, 7, None, 8, 9, None]
    grouped = group_words(tokens, recorded, ["", "", "", "", "", "The", "unlike", "x", "ly", "good"])
    assert grouped.ids == [None, 0, 1, 1, None, None, 2, 3, None]
    assert grouped.texts == ["The", "unlike", "ly", "good"]
    assert group_words(tokens, recorded).texts == ["The", "unlike", "ly", "good"]  # no words: spelled
    assert word_ids(["[CLS]", "a", "##", "##b", "[SEP]", "##c"]) == [None, 0, 1, 1, None, 2]  # a lone ## is text
