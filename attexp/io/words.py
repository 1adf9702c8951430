"""Which tokens of a record form a word: the one reader of records' word grouping, for every stage that shows
or counts words (the visualize stage's merged heatmaps and previews, the masking game's word modification rate).

The explain stage stores per record `word_ids` (per token, the index of the word it belongs to, None for
specials) and `words` (each word as written), from a fast tokenizer's own word ids and character offsets
(`attexp.models.inputs.token_words`, the producer): exact for every tokenizer family. Only records without them
(written before attexp stored them, or by a slow tokenizer) are grouped by their pieces' spelling
(`spelled_words`): WordPiece continues a word with `##ing`; byte-level BPE (`Ġ`: RoBERTa, GPT-2) and
SentencePiece (`▁`: ALBERT, XLM-R, T5) instead mark the piece that starts a word, and every unmarked piece
continues the one before.

Structural specials (`STRUCTURAL_TOKENS`: [CLS], [SEP], <s>, padding, ...) are never a word of the text,
whatever a record says, and no word reaches across one (the two texts of a sentence pair stay apart).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from attexp.io.records import STRUCTURAL_TOKENS

WORD_START_MARKS = ("Ġ", "▁")  # byte-level BPE (RoBERTa, GPT-2) and SentencePiece (ALBERT, XLM-R, T5) word starts
CONTINUATION = "##"  # WordPiece (BERT) continues a word with `##ing`


@dataclass(frozen=True)
class Words:
    """A record's tokens grouped into words.

    ids: per token, the index of its word in `texts` (0, 1, ... in order of first appearance), None for a token
    of no word (structural specials; with recorded word ids, every token the tokenizer put in no word);
    texts: each word as written (the record's `words`) or, by spelling, its pieces joined without their marks.
    """

    ids: list[int | None]
    texts: list[str]


def group_words(
    tokens: Sequence[str], word_ids: Sequence[int | None] | None = None, words: Sequence[str] | None = None
) -> Words:
    """Group a record's `tokens` into words: by its `word_ids` (and `words`, the words as written) when the
    record has them, one per token; only without them by the pieces' spelling (`spelled_words`).

    A recorded word whose text is missing from `words` (a truncated or hand-made record) is spelled from its
    pieces instead.
    """
    if word_ids is None or len(word_ids) != len(tokens):
        return spelled_words(tokens)
    ids: list[int | None] = []
    pieces: list[list[str]] = []
    renumbered: dict[int, int] = {}  # recorded word id -> index in order of first appearance
    for token, word in zip(tokens, word_ids, strict=True):
        if word is None or token in STRUCTURAL_TOKENS:
            ids.append(None)
            continue
        index = renumbered.setdefault(word, len(renumbered))
        if index == len(pieces):
            pieces.append([])
        pieces[index].append(token)
        ids.append(index)
    texts = [
        words[word] if words is not None and 0 <= word < len(words) else "".join(spelled_words(pieces[index]).texts)
        for word, index in renumbered.items()
    ]
    return Words(ids, texts)


def spelled_words(tokens: Sequence[str]) -> Words:
    """Group `tokens` into words by their spelling: the fallback for records without `word_ids`.

    In a vocabulary that marks word starts (any token begins with `Ġ` or `▁`), a piece without the mark
    continues the word before; otherwise (WordPiece) a piece `##x` does. A word never continues across a
    structural special, and a lone `##` is the text "##", not a continuation (a WordPiece continuation is `##`
    and at least one more character). Where the two spelling rules attexp had disagreed, this keeps the heatmaps'
    one: the masking game's joined the first piece after a [SEP] to the word before it (it saw content tokens
    only, so a sentence pair's texts ran together in BPE vocabularies) and continued a word with a lone `##`.
    """
    marked = any(t[:1] in WORD_START_MARKS for t in tokens)
    ids: list[int | None] = []
    texts: list[str] = []
    for token in tokens:
        if token in STRUCTURAL_TOKENS:
            ids.append(None)
            continue
        after_word = bool(ids) and ids[-1] is not None
        if marked:
            continues, text = after_word and token[:1] not in WORD_START_MARKS, token.lstrip("".join(WORD_START_MARKS))
        else:
            continues = after_word and token.startswith(CONTINUATION) and len(token) > len(CONTINUATION)
            text = token[len(CONTINUATION) :] if continues else token
        if continues:
            texts[-1] += text
        else:
            texts.append(text)
        ids.append(len(texts) - 1)
    return Words(ids, texts)


def word_ids(tokens: Sequence[str], recorded: Sequence[int | None] | None = None) -> list[int | None]:
    """Per token, the index of its word (0, 1, ... in order), None for a token of no word: `group_words`'s ids,
    for callers that count words and do not show them."""
    return group_words(tokens, recorded).ids
