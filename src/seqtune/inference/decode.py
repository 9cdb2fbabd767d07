"""Decode, verify and score: the one path behind `seqtune run`'s predictions and `seqtune
predict` / `evaluate`, so the two answer the same for the same model, inputs and settings.

Verified decoding (verify: opsin) decodes max(num_beams, candidates) beams and keeps, per
input, the first beam that round-trips to the input molecule (else the top beam); verify:
round_trip the first that a rules tool reads back to the input itself; verify: well_formed the
first beam that is a well-formed output, judged without the input; verify: vote a well-formed
spelling of the answer the beams agree on most (chem.verify). With retry_beams, the inputs none
of whose beams verified are searched again, wider (retry_rounds times, doubling the beams). Rows and
scores then carry what verification added: per row `verified` and the plain `top_beam`; in
the summary `verified_pct` and the top beam's scores as `top_beam_<score>`. Scored against
references, the summary also holds `ci95`: each score's 95 % bootstrap interval (seqtune.stats).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from seqtune.inference.generate import generate
from seqtune.metrics import score
from seqtune.prompts import PromptFormat, encode_prompt
from seqtune.stats import CI_KEY, intervals


@dataclass(frozen=True)
class DecodeSettings:
    num_beams: int = 1
    candidates: int = 1
    verify: str = "none"
    max_new_tokens: int = 128
    batch_size: int = 32
    precision: str = "auto"
    spellings: int = 1
    rerank_model: str = ""
    # SMILES outputs rewritten canonical (chem.tasks.canonical_forms) before verify and scores.
    canonical: bool = False
    # Beams whose output so far cannot be the input molecule's are dropped during the search
    # (chem.tasks.prefix_checks), so their places go to beams that still can be.
    guide: bool = False
    # Inputs none of whose beams verify are decoded again with this many beams (0: never), in
    # retry_rounds searches, each twice as wide as the last, for the inputs still without one.
    retry_beams: int = 0
    retry_rounds: int = 1

    def __post_init__(self) -> None:
        from seqtune.errors import ConfigError

        if self.retry_beams and (not self.verifying or self.retry_beams <= self.beams):
            raise ConfigError(f"retry_beams: {self.retry_beams} needs verify (to know which inputs found nothing) "
                              f"and more beams than the first search's {self.beams}")
        if self.retry_rounds < 1:
            raise ConfigError(f"retry_rounds: must be >= 1, got {self.retry_rounds}")
        if self.spellings > 1 and not self.verifying:
            raise ConfigError(f"spellings: {self.spellings} needs verify (vote, opsin or well_formed) to choose "
                              "among the spellings' beams")
        if self.reranking and self.beams < 2:
            raise ConfigError("rerank_model: needs beams to rerank (num_beams or candidates of 2 or more)")

    @property
    def verifying(self) -> bool:
        return self.verify != "none"

    @property
    def reranking(self) -> bool:
        return bool(self.rerank_model)

    @property
    def beams(self) -> int:
        return max(self.num_beams, self.candidates)

    @property
    def returned(self) -> int:
        """Beams kept per input: all of them when verifying or reranking (each is a candidate), else the best."""
        return self.beams if self.verifying or self.reranking else 1


def decode_rows(model: Any, tokenizer: Any, fmt: PromptFormat, task: str, inputs: list[str],
                instructions: list[str], refs: list[str] | None, settings: DecodeSettings,
                progress: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Decode `inputs` (each with its instruction), verify if asked, score against `refs` when
    given. Returns the summary ({"n", scores...}) and one row per input: input, reference,
    prediction, per-example scores, and (verifying or reranking) verified and top_beam. Reranking
    (`rerank_model`: inference.rerank) orders each input's candidates before verify picks."""
    s = settings
    refs = [fmt.answer(r) for r in refs] if refs is not None else None  # a reference's working is not scored
    reverse = None
    _refuse(task, fmt, s)  # here, not after minutes of decoding
    if s.reranking:  # loaded first: a wrong folder fails before minutes of decoding, not after
        from seqtune.inference.rerank import load_reverse

        reverse = load_reverse(s.rerank_model, str(next(model.parameters()).device))
    preds, tops, verified = _picks(model, tokenizer, fmt, task, inputs, instructions, s, reverse, progress)
    if s.retry_beams and verified is not None:
        for round_ in range(s.retry_rounds):  # each round twice as wide, for the inputs still without a pick
            if all(verified):
                break
            _retry(model, tokenizer, fmt, task, inputs, instructions, s.retry_beams * 2**round_, s, reverse,
                   progress, preds, verified)
    chosen = s.verifying or s.reranking  # the prediction may differ from the top beam
    summary: dict[str, Any] = {"n": len(inputs)}
    per: list[dict[str, Any]] = [{} for _ in inputs]
    if refs is not None:
        scores, per = score(task, inputs, preds, refs)
        summary.update(scores)
    top_cis: dict[str, list[float]] = {}
    if chosen and refs is not None:
        top_scores, top_per = score(task, inputs, tops, refs)
        summary.update({f"top_beam_{k}": v for k, v in top_scores.items() if k != "n"})
        top_cis = {f"top_beam_{k}": ci for k, ci in intervals(top_scores, top_per).items()}
    if verified is not None:
        summary["verified_pct"] = 100.0 * sum(verified) / max(len(verified), 1)
    rows = []
    for i, (x, p) in enumerate(zip(inputs, preds)):
        row: dict[str, Any] = {"input": x, **({"reference": refs[i]} if refs is not None else {}), "prediction": p,
                               **per[i]}
        if chosen:
            row.update(**({"verified": verified[i]} if verified is not None else {}), top_beam=tops[i])
        rows.append(row)
    if refs is not None:  # scores against references: each with its 95 % interval (seqtune.stats)
        summary[CI_KEY] = {**intervals(summary, rows), **top_cis}
    return summary, rows


def _refuse(task: str, fmt: PromptFormat, s: DecodeSettings) -> None:
    """Settings this model's task or format cannot decode with, refused before any decoding."""
    from seqtune.errors import ConfigError

    if s.verify == "round_trip":
        from seqtune.chem import round_trip_refusal

        if why := round_trip_refusal(task or "this model"):
            raise ConfigError(f"verify: {why}")
    if s.guide:
        from seqtune.chem import guide_refusal

        if why := guide_refusal(task or "this model"):
            raise ConfigError(f"guide: {why}")
    if s.reranking and fmt.answer_marker:
        raise ConfigError("rerank_model: scores whole outputs, and this model writes its working before "
                          f"{fmt.answer_marker!r}; decode without rerank_model")


def _retry(model: Any, tokenizer: Any, fmt: PromptFormat, task: str, inputs: list[str], instructions: list[str],
           beams: int, s: DecodeSettings, reverse: Any, progress: bool, preds: list[str], verified: list[bool]) -> None:
    """The inputs none of whose beams verified, decoded again with `beams` beams: where one of
    those verifies, it replaces the prediction (in place); elsewhere the first search's pick stands.
    Fewer inputs go together, so that a pass holds as many sequences as the first search's did."""
    again = [i for i, ok in enumerate(verified) if not ok]
    wide = replace(s, num_beams=beams, candidates=beams, retry_beams=0, retry_rounds=1,
                   batch_size=max(1, s.batch_size * s.beams // beams))
    found, _, checked = _picks(model, tokenizer, fmt, task, [inputs[i] for i in again],
                               [instructions[i] for i in again], wide, reverse, progress)
    assert checked is not None  # the retry is only asked for with verify (DecodeSettings)
    for i, pred, ok in zip(again, found, checked, strict=True):
        if ok:
            preds[i], verified[i] = pred, True


def _picks(model: Any, tokenizer: Any, fmt: PromptFormat, task: str, inputs: list[str], instructions: list[str],
           s: DecodeSettings, reverse: Any, progress: bool) -> tuple[list[str], list[str], list[bool] | None]:
    """Each input's prediction, its top beam, and (verifying) whether a beam verified: the beams
    made canonical and reranked where asked, then picked by verify."""
    outs, ranks, tops = _candidates(model, tokenizer, fmt, task, inputs, instructions, s, progress)
    canonical: dict[str, str] | None = None
    if s.canonical:  # each beam as the model wrote it -> its canonical form
        from seqtune.chem.tasks import canonical_forms

        canonical = canonical_forms([*tops, *(c for cands in outs for c in cands)])
        tops = [canonical[t] for t in tops]
    if reverse is not None:
        from seqtune.inference.rerank import channel_rerank

        outs = channel_rerank(model, tokenizer, fmt, inputs, instructions, outs, reverse, s.batch_size, s.precision,
                              reverse_text=canonical)
        ranks = None
    if canonical is not None:  # after reranking, which scores each beam as its model wrote it
        outs = [[canonical[c] for c in cands] for cands in outs]
    preds = [c[0] if c else top for c, top in zip(outs, tops)] if reverse is not None else tops
    if not s.verifying:
        return preds, tops, None
    from seqtune.chem.verify import pick

    picks = pick(task, s.verify, inputs, outs, ranks)
    preds = [c[k] if k is not None else pred for c, k, pred in zip(outs, picks, preds)]
    return preds, tops, [k is not None for k in picks]


def _candidates(model: Any, tokenizer: Any, fmt: PromptFormat, task: str, inputs: list[str], instructions: list[str],
                s: DecodeSettings, progress: bool) -> tuple[list[list[str]], list[list[int]] | None, list[str]]:
    """Each input's candidates, their beam ranks (None: their positions) and its own top beam. With
    `spellings` > 1, the beams of every spelling of the input's molecule, interleaved rank by rank."""
    per_input = spelled_beams(model, tokenizer, fmt, task, inputs, instructions, s, progress)
    tops = [spellings[0][0] if spellings[0] else "" for spellings in per_input]
    if s.spellings == 1:
        return [spellings[0] for spellings in per_input], None, tops
    merged = [interleave(spellings, s.returned) for spellings in per_input]
    return [texts for texts, _ in merged], [ranks for _, ranks in merged], tops


def spelled_beams(model: Any, tokenizer: Any, fmt: PromptFormat, task: str, inputs: list[str], instructions: list[str],
                  s: DecodeSettings, progress: bool = False) -> list[list[list[str]]]:
    """For each input, the beams of each of its spellings (chem.tasks.input_spellings when
    `spellings` > 1; the input's own first), all decoded in one pass."""
    spelled = [[x] for x in inputs]
    if s.spellings > 1:
        from seqtune.chem.tasks import input_spellings

        spelled = input_spellings(task, inputs, s.spellings)
    flat = [(i, x) for i, variants in enumerate(spelled) for x in variants]
    prompts = [encode_prompt(tokenizer, fmt, x, instructions[i]) for i, x in flat]
    keep = None
    if s.guide:
        from seqtune.chem.tasks import prefix_checks

        keep = prefix_checks(task, [x for _, x in flat])
    beams = generate(model, tokenizer, prompts, num_beams=s.beams, num_return=s.returned,
                     max_new_tokens=s.max_new_tokens, batch_size=s.batch_size, precision=s.precision,
                     progress=progress, text_of=fmt.output_text, keep=keep)
    per_input: list[list[list[str]]] = [[] for _ in inputs]
    for (i, _), out in zip(flat, beams, strict=True):
        per_input[i].append(out)
    return per_input


def interleave(spellings: list[list[str]], k: int) -> tuple[list[str], list[int]]:
    """The first `k` beams of each spelling, rank by rank (the input's own spelling first at each
    rank), and each one's rank: the candidates and ranks that verify chooses among."""
    pairs = [(rank, out[rank]) for rank in range(k) for out in spellings if rank < len(out)]
    return [text for _, text in pairs], [rank for rank, _ in pairs]
