"""IUPAC names cut into the morphemes a name is built from (model.input_split / output_split:
morphemes): "1,1-difluorononane" -> 1 , 1 - di fluoro non ane.

A byte-pair tokenizer cuts a name by the frequency of letter pairs in web text, so one morpheme
gets different tokens in different names: SmolLM2 writes "d|if|lu|or|on|on|ane" for
1,1-difluorononane and "flu|or|ophen|yl" for 3-fluorophenyl. Tokenising each morpheme on its own
gives it the same tokens wherever it occurs, as spelling SMILES atom by atom does for SMILES; the
text itself is unchanged. The lexicon is OPSIN's (scripts/build_name_morphemes.py), the one
parser of IUPAC names; no maintained package exposes a name tokenizer to Python, so the cut is
here: each run of lowercase letters in the fewest lexicon words and single letters;
every other character (locants, punctuation, capitals, spaces) on its own.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

_PIECE = re.compile(r"[a-z]+|.", re.S)


@functools.lru_cache(maxsize=1)
def lexicon() -> tuple[frozenset[str], int]:
    """The lexicon's words and the length of the longest."""
    words = frozenset((Path(__file__).parent / "name_morphemes.txt").read_text(encoding="utf-8").split())
    return words, max(map(len, words))


@functools.lru_cache(maxsize=8192)
def _word(run: str) -> tuple[str, ...]:
    """A run of letters cut into the fewest pieces, each a lexicon word or one letter (the longest
    word first at a tie): "nonane" -> non ane, where taking the longest word first gives nona n e."""
    words, longest = lexicon()
    # fewest[i]: (pieces, first piece's length) of the best cut of run[i:]
    fewest: list[tuple[int, int]] = [(0, 0)] * (len(run) + 1)
    for i in range(len(run) - 1, -1, -1):
        sizes = [n for n in range(2, min(longest, len(run) - i) + 1) if run[i:i + n] in words] + [1]
        size = min(sizes, key=lambda n: (fewest[i + n][0], -n))
        fewest[i] = (fewest[i + size][0] + 1, size)
    out, i = [], 0
    while i < len(run):
        out.append(run[i:i + fewest[i][1]])
        i += fewest[i][1]
    return tuple(out)


def morphemes(name: str) -> list[str]:
    """`name` cut into morphemes; "".join(morphemes(name)) == name for every text."""
    return [m for piece in _PIECE.findall(name) for m in (_word(piece) if piece.islower() else (piece,))]
