"""Prompt formats, and the one place that turns a pair into (ids, mask).

The prompt and the completion are tokenised separately and concatenated, exactly
as at inference time (where only the prompt is tokenised), and the mask is built
from the same two lists, so it cannot drift from the ids. The completion always
ends with the tokenizer's EOS, which is trained: a model whose pad token is its
EOS must still learn to stop.
"""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from seqtune.errors import ConfigError

if TYPE_CHECKING:
    from seqtune.config import ModelConfig

BUILTIN = {
    # The bare form: input, newline, output.
    "plain": "{{ input }}\n",
    # Alpaca-style instruction/response, the paper's kind of instruction data.
    "instruct": "### Instruction:\n{{ instruction }}\n\n### Input:\n{{ input }}\n\n### Response:\n",
}
CHAT = "chat"

# How the text of an input or output is spelled for the model, on top of the template.
# `smiles`: one space between SMILES tokens (atoms, bonds, ring digits), so every token the
# model sees is one chemical unit instead of a BPE merge such as "(=" or "ccc".
# `chars`: one space between characters (a real space becomes "_"), the finest spelling.
# Both are undone on the model's output, so predictions and scores see plain text.
# `morphemes` (IUPAC names): the text unchanged, each morpheme tokenised on its own
# (seqtune.name_morphemes), so that one morpheme always gets the same tokens.
# `numbers`: every whole number from 10 to 31 written as one Greek letter (α = 10, β = 11, ...),
# since tokenizers such as SmolLM2's spell a number digit by digit: an InChI's atom numbers and a
# formula's counts become one token each. Text that holds one of those letters cannot be an output.
SPLITS = ("none", "smiles", "chars", "morphemes", "numbers")
# Each one token in SmolLM2's byte-level BPE (ξ and ψ are two there, and final ς would read as σ).
NUMBER_LETTERS = "αβγδεζηθικλμνοπρστυφχω"
_NUMBER = re.compile(r"[0-9]+")
_LETTER = re.compile(f"[{NUMBER_LETTERS}]")
# Characters an output spelling uses for something else, so an output must not hold them (or the
# spelling could not be undone): the split, the characters, and what the error says.
_RESERVED = {"chars": (re.compile("_"), "spells a space as '_', and this output holds a '_'"),
             "numbers": (_LETTER, "writes numbers as Greek letters, and this output holds one")}
# The SMILES tokenizer regex of Schwaller et al. (Molecular Transformer, 2019), the one
# chemistry language models use; no maintained package exposes it on its own.
SMILES_TOKEN = re.compile(
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])"
)


def split_text(text: str, how: str) -> str:
    """`text` spelled as `how` says (see SPLITS); `join_text` undoes it."""
    if how in ("none", "morphemes"):  # morphemes: cut where the text is tokenised (_text_ids)
        return text
    if how == "smiles":
        tokens = SMILES_TOKEN.findall(text)
        if "".join(tokens) != text:  # not a SMILES string: leave it as it is rather than lose characters
            return text
        return " ".join(tokens)
    if how == "chars":
        return " ".join("_" if ch == " " else ch for ch in text)
    if how == "numbers":
        return _NUMBER.sub(_number_letter, text)
    raise ConfigError(f"unknown split {how!r}; expected one of {', '.join(SPLITS)}")


def _number_letter(m: re.Match[str]) -> str:
    digits = m.group()
    value = int(digits)
    if digits[0] == "0" or not 10 <= value < 10 + len(NUMBER_LETTERS):  # "07" must come back as "07"
        return digits
    return NUMBER_LETTERS[value - 10]


def join_text(text: str, how: str) -> str:
    if how in ("none", "morphemes"):
        return text
    if how == "smiles":
        return "".join(text.split())
    if how == "numbers":
        return _LETTER.sub(lambda m: str(10 + NUMBER_LETTERS.index(m.group())), text)
    # chars: spaces separate characters, "_" stands for a real space
    return "".join(text.split(" ")).replace("_", " ")

# Sandboxed: a template comes with a model folder (seqtune.json), which may be someone else's;
# an ordinary Environment lets `{{ cycler.__init__.__globals__.os.popen(...) }}` run code.
_env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@functools.lru_cache(maxsize=32)
def _compiled(template: str) -> jinja2.Template:
    # Every prompt of a run renders the same template (twice, see prompt_parts): compile it once.
    return _env.from_string(template)


# Stand-ins for the user's text while locating it in a rendered prompt (NUL: no real text holds it).
_SENTINEL_INPUT, _SENTINEL_INSTRUCTION = "\0seqtune-input\0", "\0seqtune-instruction\0"
_SENTINELS = re.compile(f"({re.escape(_SENTINEL_INPUT)}|{re.escape(_SENTINEL_INSTRUCTION)})")


def _find_all(text: str, value: str) -> list[int]:
    starts, i = [], text.find(value)
    while i >= 0:
        starts.append(i)
        i = text.find(value, i + len(value))
    return starts


@dataclass(frozen=True)
class PromptFormat:
    """How an input becomes a prompt. `template` is None for the model's chat template."""

    name: str
    template: str | None
    input_split: str = "none"
    output_split: str = "none"
    # Outputs written as "working <marker> answer" (model.answer_marker): "" = no working.
    answer_marker: str = ""
    # Text every answer starts with (model.output_prefix): not taught or generated, put back on predictions.
    output_prefix: str = ""

    def output_text(self, generated: str) -> str:
        """A decoded completion as plain text: its answer, the output spelling undone, the prefix put back."""
        return self.output_prefix + join_text(self._split_answer(generated)[1], self.output_split).strip()

    def answer(self, output: str) -> str:
        """What an output of the data (a reference) answers: the text after its last answer
        marker; all of it where there is no marker or no working."""
        return self._split_answer(output)[1].strip()

    def completion_text(self, output: str) -> str:
        """An output of the data as the model is taught to write it: the answer in the output
        spelling, any working before it as it is (a spelling is about the answer's notation)."""
        working, answer = self._split_answer(output)
        if self.output_prefix:
            if not answer.startswith(self.output_prefix):
                raise ConfigError(f"model.output_prefix: {self.output_prefix!r} does not start this output "
                                  f"({output[:60]!r})")
            answer = answer[len(self.output_prefix):]
        return working + split_text(answer, self.output_split)

    def _split_answer(self, text: str) -> tuple[str, str]:
        """(working up to and including the last marker, answer)."""
        if not self.answer_marker:
            return "", text
        working, marker, answer = text.rpartition(self.answer_marker)  # ("", "", text) without a marker
        return working + marker, answer

    def prompt_text(self, tokenizer: Any, input: str, instruction: str) -> str:
        return self._render(tokenizer, split_text(input, self.input_split), instruction)

    def prompt_parts(self, tokenizer: Any, input: str, instruction: str) -> tuple[str, list[tuple[int, int]]]:
        """The prompt text and the character spans in it that hold the user's text (input, instruction):
        there, text that spells a special token is data, not a control token."""
        input = split_text(input, self.input_split)
        text = self._render(tokenizer, input, instruction)
        values = {_SENTINEL_INPUT: input, _SENTINEL_INSTRUCTION: instruction}
        # The template rendered with markers in place of the user's text shows where that text lands.
        marked = self._render(tokenizer, _SENTINEL_INPUT, _SENTINEL_INSTRUCTION if instruction else "")
        rebuilt, spans, pos = [], [], 0
        for piece in _SENTINELS.split(marked):
            value = values.get(piece)
            if value is None:
                rebuilt.append(piece)
                pos += len(piece)
            else:
                rebuilt.append(value)
                spans.append((pos, pos + len(value)))
                pos += len(value)
        if "".join(rebuilt) != text:
            # The template transforms the text it is given (a filter): find the values themselves.
            spans = [(i, i + len(v)) for v in (input, instruction) if v for i in _find_all(text, v)]
        return text, spans

    def _render(self, tokenizer: Any, input: str, instruction: str) -> str:
        if self.template is None:
            if not getattr(tokenizer, "chat_template", None):
                raise ConfigError("model.format: 'chat' needs a tokenizer with a chat template; use instruct or plain")
            content = f"{instruction}\n\n{input}" if instruction else input
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
            )
        try:
            return _compiled(self.template).render(input=input, instruction=instruction)
        except jinja2.TemplateError as err:
            raise ConfigError(f"model.format {self.name!r}: template error ({err})") from None

    @property
    def shows_instruction(self) -> bool:
        """Whether the prompt has a place for the instruction (chat puts it in the user turn)."""
        if self.template is None:
            return True
        from jinja2 import meta

        return "instruction" in meta.find_undeclared_variables(_env.parse(self.template))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "template": self.template, "input_split": self.input_split,
                "output_split": self.output_split, "answer_marker": self.answer_marker,
                "output_prefix": self.output_prefix}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PromptFormat:
        return cls(name=d["name"], template=d.get("template"), input_split=d.get("input_split", "none"),
                   output_split=d.get("output_split", "none"), answer_marker=d.get("answer_marker", ""),
                   output_prefix=d.get("output_prefix", ""))


def get_format(spec: str, input_split: str = "none", output_split: str = "none",
               answer_marker: str = "", output_prefix: str = "") -> PromptFormat:
    """A built-in name (plain, instruct, chat) or the path of a Jinja template for the prompt,
    with the spelling of inputs and outputs (SPLITS), the marker before an output's answer and
    the text every answer starts with."""
    for key, how in (("model.input_split", input_split), ("model.output_split", output_split)):
        if how not in SPLITS:
            raise ConfigError(f"{key}: {how!r} is not one of {', '.join(SPLITS)}")
    fmt = _template_format(spec)
    return PromptFormat(fmt.name, fmt.template, input_split, output_split, answer_marker, output_prefix)


def model_format(model: ModelConfig) -> PromptFormat:
    """The prompt format a run's model settings describe (model.format, its spellings, answer marker
    and output prefix): the one reading of them, for training and for its preflight."""
    return get_format(model.format, model.input_split, model.output_split, model.answer_marker, model.output_prefix)


def require_instruction_slot(fmt: PromptFormat, source: str | None) -> None:
    """Per-row instructions (from `source`; None = there are none) need a prompt that shows them:
    elsewhere every row would silently get the same prompt."""
    if source and not fmt.shows_instruction:
        raise ConfigError(f"model.format: {fmt.name!r} has no instruction slot for the per-row instructions of "
                          f"{source}; use instruct, chat, or a template using {{{{ instruction }}}}")


def _template_format(spec: str) -> PromptFormat:
    if spec in BUILTIN:
        return PromptFormat(spec, BUILTIN[spec])
    if spec == CHAT:
        return PromptFormat(CHAT, None)
    path = Path(spec)
    if path.suffix in (".jinja", ".j2", ".txt") or path.exists():
        if not path.is_file():
            raise ConfigError(f"model.format: template file {spec} not found")
        text = path.read_text(encoding="utf-8")
        try:
            parsed = _env.parse(text)
        except jinja2.TemplateSyntaxError as err:
            raise ConfigError(f"{spec}:{err.lineno}: Jinja syntax error ({err.message})") from None
        from jinja2 import meta

        if "input" not in meta.find_undeclared_variables(parsed):
            raise ConfigError(f"{spec}: template never uses {{{{ input }}}}")
        return PromptFormat(path.stem, text)
    raise ConfigError(f"model.format: {spec!r} is not one of plain, instruct, chat, or a .jinja file")


def eos_id(tokenizer: Any) -> int:
    if tokenizer.eos_token_id is None:
        raise ConfigError("model: the tokenizer has no EOS token, so the model could not learn to stop")
    return int(tokenizer.eos_token_id)


def encode_prompt(tokenizer: Any, fmt: PromptFormat, input: str, instruction: str) -> list[int]:
    text, spans = fmt.prompt_parts(tokenizer, input, instruction)
    # A chat template writes its own special tokens (BOS included); other formats
    # get whatever the tokenizer adds to the start of a text, but never a trailing EOS.
    add = fmt.template is not None
    specials = _special_tokens(tokenizer)
    matches = list(specials.finditer(text)) if specials is not None else []
    by_morpheme = fmt.input_split == "morphemes"
    if by_morpheme or any(_overlaps(m.span(), spans) for m in matches):
        inputs = [(a, b) for a, b in spans if text[a:b] == input] if by_morpheme else []
        ids = _encode_user_text_plain(tokenizer, text, [m for m in matches if not _overlaps(m.span(), spans)], add,
                                      inputs)
    else:
        ids = tokenizer(text, add_special_tokens=add)["input_ids"]
    eos = tokenizer.eos_token_id
    if add and ids and eos is not None and ids[-1] == eos and not text.endswith(tokenizer.eos_token or "\0"):
        ids = ids[:-1]
    return list(ids)


# Compiled per tokenizer: Gemma's has over 6,000 special tokens.
_special_cache: weakref.WeakKeyDictionary[Any, re.Pattern[str] | None] = weakref.WeakKeyDictionary()


def _special_tokens(tokenizer: Any) -> re.Pattern[str] | None:
    """A pattern matching the tokenizer's special tokens, longest first (as its own matcher does)."""

    def build() -> re.Pattern[str] | None:
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        texts = sorted({t.content for t in added.values() if getattr(t, "special", False) and t.content}
                       | {t for t in getattr(tokenizer, "all_special_tokens", []) if t}, key=len, reverse=True)
        return re.compile("|".join(map(re.escape, texts))) if texts else None

    return _per_tokenizer(_special_cache, tokenizer, build)


def _per_tokenizer(cache: weakref.WeakKeyDictionary[Any, Any], tokenizer: Any, build: Callable[[], Any]) -> Any:
    """`build()` once per tokenizer: kept in `cache` unless the tokenizer cannot be weakly referenced."""
    try:
        return cache[tokenizer]
    except (KeyError, TypeError):
        pass
    value = build()
    try:
        cache[tokenizer] = value
    except TypeError:
        pass
    return value


def _overlaps(span: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return any(span[0] < b and a < span[1] for a, b in spans)


def _encode_user_text_plain(tokenizer: Any, text: str, template_tokens: list[re.Match[str]], add: bool,
                            by_morpheme: list[tuple[int, int]] | None = None) -> list[int]:
    """`text` tokenised as the tokenizer would, except that only `template_tokens` become special
    tokens; special-token text elsewhere (the user's) is tokenised as text, as outputs are; and the
    spans `by_morpheme` (an input spelled by morphemes) are tokenised a morpheme at a time.

    The tokenizer itself cuts a text at its special tokens and tokenises the pieces between them
    on their own, so doing the same here gives the same ids wherever the user's text is ordinary.
    """
    cuts = sorted([(m.start(), m.end(), m.group()) for m in template_tokens]
                  + [(a, b, None) for a, b in by_morpheme or []])
    ids: list[int] = []
    pos = 0
    for start, end, special in cuts:
        ids += _plain_ids(tokenizer, text[pos:start])
        ids += [tokenizer.convert_tokens_to_ids(special)] if special else _text_ids(tokenizer, text[start:end],
                                                                                     "morphemes")
        pos = end
    ids += _plain_ids(tokenizer, text[pos:])
    if add:
        before, after = _added_around(tokenizer)
        # A trailing EOS is never added to a prompt (see encode_prompt); here it is known to be the tokenizer's.
        if after and after[-1] == tokenizer.eos_token_id:
            after = after[:-1]
        ids = before + ids + after
    return ids


def _plain_ids(tokenizer: Any, text: str) -> list[int]:
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def _text_ids(tokenizer: Any, text: str, split: str) -> list[int]:
    """The ids of a user's text (an output, or an input spelled by morphemes) in its spelling."""
    if split != "morphemes":
        return _plain_ids(tokenizer, text)
    from seqtune.name_morphemes import morphemes

    pieces = morphemes(text)
    if not pieces:
        return []
    _require_joinable_pieces(tokenizer)
    return [i for ids in tokenizer(pieces, add_special_tokens=False, split_special_tokens=True)["input_ids"]
            for i in ids]


_joinable_cache: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _require_joinable_pieces(tokenizer: Any) -> None:
    """Pieces tokenised one by one must decode to the text they came from: a tokenizer that marks
    the start of every text it is given (SentencePiece's "▁" prefix) would put spaces into names."""
    def joins() -> bool:
        ids = [i for piece in tokenizer(["2-", "meth", "yl"], add_special_tokens=False)["input_ids"] for i in piece]
        return tokenizer.decode(ids) == "2-methyl"

    if not _per_tokenizer(_joinable_cache, tokenizer, joins):
        raise ConfigError("model.input_split / output_split: 'morphemes' needs a tokenizer that tokenises a text "
                          "without marking its start (byte-level BPE: GPT-2, SmolLM, Llama 3); this one adds a "
                          "prefix to each piece; use none or chars")


def _added_around(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer adds before and after a text (BOS, ...), read off a probe."""
    bare = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    for i in range(len(full) - len(bare) + 1):
        if full[i:i + len(bare)] == bare:
            return full[:i], full[i + len(bare):]
    return [], []


def encode_completion(tokenizer: Any, output: str, fmt: PromptFormat) -> list[int]:
    # The output is data: text that spells a special token ("</s>", "<|endoftext|>") is
    # tokenised as text, or the model would learn to stop (or start over) inside it.
    reserved = _RESERVED.get(fmt.output_split)
    if reserved and reserved[0].search(fmt.answer(output)):
        raise ConfigError(f"model.output_split: {fmt.output_split!r} {reserved[1]} ({output[:60]!r}); "
                          "use output_split: none")
    return _text_ids(tokenizer, fmt.completion_text(output), fmt.output_split) + [eos_id(tokenizer)]


def encode_example(
    tokenizer: Any, fmt: PromptFormat, input: str, output: str, instruction: str
) -> tuple[list[int], list[bool]]:
    """(ids, mask): mask is True exactly on the completion tokens and the final EOS."""
    prompt = encode_prompt(tokenizer, fmt, input, instruction)
    completion = encode_completion(tokenizer, output, fmt)
    return prompt + completion, [False] * len(prompt) + [True] * len(completion)
