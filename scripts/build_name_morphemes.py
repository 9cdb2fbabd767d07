"""Writes src/seqtune/name_morphemes.txt, the lexicon of `model.input_split` / `output_split:
morphemes`, from the token lists OPSIN parses IUPAC names with (the resources/*.xml inside the
py2opsin jar): every word of two or more lowercase letters in a token, one per line, sorted.

    .venv/bin/python scripts/build_name_morphemes.py

The lexicon is shipped, not read from the jar at run time, so that a model's tokenisation does not
change with the installed OPSIN version.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "seqtune" / "name_morphemes.txt"


def opsin_words() -> list[str]:
    """The lexicon: the words of OPSIN's tokens, from the installed py2opsin's jar, sorted."""
    import py2opsin

    jar = next(Path(py2opsin.__file__).parent.glob("*.jar"))
    tokens: set[str] = set()
    with zipfile.ZipFile(jar) as z:
        for name in z.namelist():
            if not re.fullmatch(r"uk/ac/cam/ch/wwmm/opsin/resources/\w+\.xml", name):
                continue
            try:
                root = ET.fromstring(z.read(name))
            except ET.ParseError:  # a DTD-only or non-token file
                continue
            for token in root.iter("token"):
                # "pidolic acid|pidolicacid": each alternative's words ("acid" is a token only there)
                for word in re.split(r"[|\s]+", token.text or ""):
                    if re.fullmatch(r"[a-z]{2,}", word):
                        tokens.add(word)
    return sorted(tokens)


def main() -> None:
    words = opsin_words()
    OUT.write_text("".join(f"{w}\n" for w in words), encoding="utf-8")
    print(f"{len(words)} morphemes -> {OUT}")


if __name__ == "__main__":
    main()
