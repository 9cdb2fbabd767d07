"""Prompt formats, and the one place that turns a pair into (ids, mask).

The prompt and the completion are tokenised separately and concatenated, exactly
as at inference time (where only the prompt is tokenised), and the mask is built
from the same two lists, so it cannot drift from the ids. The completion always
ends with the tokenizer's EOS, which is trained: a model whose pad token is its
EOS must still learn to stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from seqtune.errors import ConfigError

BUILTIN = {
    # The bare form: input, newline, output.
    "plain": "{{ input }}\n",
    # Alpaca-style instruction/response, the paper's kind of instruction data.
    "instruct": "### Instruction:\n{{ instruction }}\n\n### Input:\n{{ input }}\n\n### Response:\n",
}
CHAT = "chat"

_env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@dataclass(frozen=True)
class PromptFormat:
    """How an input becomes a prompt. `template` is None for the model's chat template."""

    name: str
    template: str | None

    def prompt_text(self, tokenizer: Any, input: str, instruction: str) -> str:
        if self.template is None:
            if not getattr(tokenizer, "chat_template", None):
                raise ConfigError("model.format: 'chat' needs a tokenizer with a chat template; use instruct or plain")
            content = f"{instruction}\n\n{input}" if instruction else input
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
            )
        try:
            return _env.from_string(self.template).render(input=input, instruction=instruction)
        except jinja2.TemplateError as err:
            raise ConfigError(f"model.format {self.name!r}: template error ({err})") from None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "template": self.template}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PromptFormat:
        return cls(name=d["name"], template=d.get("template"))


def get_format(spec: str) -> PromptFormat:
    """A built-in name (plain, instruct, chat) or the path of a Jinja template for the prompt."""
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
    text = fmt.prompt_text(tokenizer, input, instruction)
    # A chat template writes its own special tokens (BOS included); other formats
    # get whatever the tokenizer adds to the start of a text, but never a trailing EOS.
    ids = tokenizer(text, add_special_tokens=fmt.template is not None)["input_ids"]
    eos = tokenizer.eos_token_id
    if fmt.template is not None and ids and eos is not None and ids[-1] == eos and not text.endswith(
        tokenizer.eos_token or "\0"
    ):
        ids = ids[:-1]
    return list(ids)


def encode_completion(tokenizer: Any, output: str) -> list[int]:
    return list(tokenizer(output, add_special_tokens=False)["input_ids"]) + [eos_id(tokenizer)]


def encode_example(
    tokenizer: Any, fmt: PromptFormat, input: str, output: str, instruction: str
) -> tuple[list[int], list[bool]]:
    """(ids, mask): mask is True exactly on the completion tokens and the final EOS."""
    prompt = encode_prompt(tokenizer, fmt, input, instruction)
    completion = encode_completion(tokenizer, output)
    return prompt + completion, [False] * len(prompt) + [True] * len(completion)
