"""Answer extraction and normalisation, one set of rules per answer format.

The output of `extract` is an answer *key*: equivalent answers must share a
key so they vote together ("1,000", "1000" and "1000.0"; "(B)" and "b";
"Yes." and "yes"). None means no answer could be read; such a candidate is
kept without a vote, never dropped.
"""

from __future__ import annotations

import functools
import json
import re
import string
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from manyminds.types import OPTION_LETTERS, AnswerFormat, Result, Task
from manyminds.answers.blocksworld import parse_plan
from manyminds.answers.equivalence import keys_equal

_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+(?!\w|\.\d))?(?:\s*/\s*\d+)?|-?\.\d+"
NUMBER_RE = re.compile(rf"(?<![\w.])(?:{_NUMBER})")
NUMBER_ONLY = re.compile(rf"\s*(?:{_NUMBER})\s*")
"""A string that is one number and nothing else (as recorded, already extracted answers are)."""
GSM8K_RE = re.compile(r"####\s*\$?\s*(" + _NUMBER + ")")
ANSWER_IS_RE = re.compile(
    r"(?:answer\s*(?:is|:|=)|final answer\s*(?:is|:)?|answer\s*would be)\s*:?\s*(.*)", re.IGNORECASE
)
_BOXED_START = re.compile(r"\\(?:boxed|fbox)\s*\{")


def boxed_contents(text: str) -> list[str]:
    """The contents of every \\boxed{...} in `text`, braces balanced to any depth."""
    found = []
    for match in _BOXED_START.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                found.append(text[start:i])
                break
    return found


def extract(task: Task, text: str) -> str | None:
    """The answer key that `text` gives for `task`, or None when there is none."""
    return _extract(task.format, task.choices, text)


@functools.lru_cache(maxsize=1 << 16)
def _extract(format: AnswerFormat, choices: tuple[str, ...] | None, text: str) -> str | None:
    # Memoised: samples often repeat a text verbatim (short answers, warm reruns).
    return FORMATS[format].extract(text, choices)


def normalise_gold(task: Task) -> str | None:
    """The gold answer as a key, by the same rules as the samples, so they compare equal.

    A math gold is usually the bare answer ('3x+2'): it is read whole, as if boxed,
    rather than by its last number as an unmarked solution would be."""
    if task.gold is None:
        return None
    gold = task.gold
    if FORMATS[task.format].merge_by_value and not boxed_contents(gold) and not ANSWER_IS_RE.search(gold):
        gold = f"\\boxed{{{gold}}}"
    return extract(task, gold)


# -- numbers -----------------------------------------------------------------


def normalise_number(raw: str) -> str | None:
    """'1,000', '1000.0', '$1000' -> '1000'; '1/2' -> '0.5'; '-3.50' -> '-3.5'."""
    cleaned = raw.replace(",", "").replace("$", "").replace(" ", "").replace("\u2212", "-")
    try:
        if "/" in cleaned:
            value = Fraction(cleaned)
            decimal = Decimal(value.numerator) / Decimal(value.denominator)
            if Fraction(decimal) != value:  # not a terminating decimal: keep the reduced fraction
                return f"{value.numerator}/{value.denominator}"
        else:
            decimal = Decimal(cleaned)
    except (InvalidOperation, ValueError, ZeroDivisionError):
        return None
    if decimal == decimal.to_integral_value():
        return str(int(decimal))
    return format(decimal.normalize(), "f")


_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(-?[\d.]+)\s*\}\s*\{\s*(-?[\d.]+)\s*\}")
_LATEX_FRAC_SHORT = re.compile(r"\\[dt]?frac\s*(\d)\s*(\d)")
_LATEX_NOISE = re.compile(r"\\(?:left|right|,|!|;|quad|displaystyle)|\$|\^\{?\\circ\}?|\\%")
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")


def delatex(span: str) -> str:
    """Plain text for the numbers in LaTeX: \\frac{1}{2} and \\dfrac12 -> 1/2; $, \\left, \\% dropped."""
    span = _LATEX_TEXT.sub(r" \1 ", span).replace("{,}", ",")
    span = _LATEX_FRAC.sub(r" \1/\2 ", span)
    span = _LATEX_FRAC_SHORT.sub(r" \1/\2 ", span)
    return _LATEX_NOISE.sub(" ", span).replace("\u2212", "-")


def _first_number(span: str) -> str | None:
    match = NUMBER_RE.search(delatex(span))
    return normalise_number(match.group(0)) if match else None


def _last_number(span: str) -> str | None:
    matches = NUMBER_RE.findall(delatex(span))
    return normalise_number(matches[-1]) if matches else None


def extract_number(text: str) -> str | None:
    """GSM8K '#### 18', then \\boxed{...}, then 'the answer is ...', then the last number."""
    if match := GSM8K_RE.search(text):
        return normalise_number(match.group(1))
    boxed = boxed_contents(text)
    if boxed and (value := _last_number(boxed[-1])) is not None:
        return value
    phrases = ANSWER_IS_RE.findall(text)
    if phrases:
        span = phrases[-1].split("\n")[0]
        # "The answer is 4 + 9 = 13." states the result after the last '='.
        if "=" in span:
            span = span.rsplit("=", 1)[1]
        if (value := _first_number(span)) is not None:
            return value
    return _last_number(text)


# -- competition math -----------------------------------------------------------

_LATEX_SPACING = re.compile(r"\\(?:left|right|!|,|;|quad|displaystyle)|\s+|\$")


def extract_math(text: str) -> str | None:
    """The final answer of a math solution as a key: a number key when it is a number, else
    compact LaTeX (\\dfrac -> \\frac, no spacing, no "x =" in front).

    Keys that differ in form but not in value (\\sqrt{2}/2 and \\frac{\\sqrt2}{2}) are merged
    later with math-verify, which needs a process pool (see agents' extract node).
    """
    boxed = boxed_contents(text)
    if boxed:
        span = boxed[-1]
    else:
        phrases = ANSWER_IS_RE.findall(text)
        if not phrases:
            return extract_number(text)
        span = phrases[-1].split("\n")[0].rstrip(". ")
    span = re.sub(r"^\s*[a-zA-Z]\s*=\s*", "", span.strip())
    plain = delatex(span).strip().rstrip(".")
    if re.fullmatch(rf"\s*(?:{_NUMBER})\s*", plain):
        return normalise_number(plain)
    key = _LATEX_SPACING.sub("", span).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").rstrip(".")
    return key or None


# -- multiple choice ----------------------------------------------------------

LETTERS = OPTION_LETTERS


_MARKDOWN = re.compile(r"\*\*|__|`")
_CHOICE_PHRASE = re.compile(
    r"(?:correct|right|best|final)\s+(?:answer|option|choice)\s*(?:is|:|would be)?\s*:?\s*(.*)"
    r"|(?:i\s+(?:choose|pick|select)|my\s+(?:answer|choice)\s+is)\s*:?\s*(.*)",
    re.IGNORECASE,
)


def extract_choice(text: str, choices: tuple[str, ...] | None = None) -> str | None:
    """'(B)', 'B.', '**B**', 'the answer is b', 'Answer: B) 21', 'The correct choice is E.',
    'option D' -> the letter; an option's text maps to its letter."""
    letters = LETTERS[: len(choices)] if choices else "ABCDE"
    letter = rf"[{letters}{letters.lower()}]"
    text = _MARKDOWN.sub("", text)
    lead = rf"\s*(?:(?:option|choice)\s*)?[\(\[]?({letter})(?![\w])"
    phrases = ANSWER_IS_RE.findall(text)
    stated = [a or b for a, b in _CHOICE_PHRASE.findall(text)] + phrases
    for span in reversed(stated):
        if match := re.match(lead, span, re.IGNORECASE):
            return match.group(1).upper()
    if match := re.fullmatch(rf"\s*[\(\[]?({letter})[\)\]\.:]?\s*", text):
        return match.group(1).upper()
    if match := re.match(rf"\s*[\(\[]?([{letters}])[\)\]\.:](?:\s|$)", text):
        return match.group(1)
    parenthesised = re.findall(rf"\(([{letters}])\)", text)
    if parenthesised:
        return parenthesised[-1]
    named = re.findall(rf"\b(?:option|choice)\s*[\(\[]?([{letters}])(?![\w])", text, re.IGNORECASE)
    if named:
        return named[-1].upper()
    if choices:
        said = normalise_text(phrases[-1] if phrases else text)
        hits = [LETTERS[i] for i, c in enumerate(choices) if normalise_text(c) and normalise_text(c) == said]
        if len(hits) == 1:
            return hits[0]
    return None


# -- yes / no -----------------------------------------------------------------

_YES_NO = {"yes": "yes", "no": "no", "true": "yes", "false": "no"}
_YES_NO_RE = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)


def extract_yes_no(text: str) -> str | None:
    """'Yes.', 'the answer is no', 'True' -> 'yes' / 'no'."""
    phrases = ANSWER_IS_RE.findall(text)
    for span in reversed(phrases):
        if match := _YES_NO_RE.match(span.strip(" *\"'")):
            return _YES_NO[match.group(1).lower()]
    if match := _YES_NO_RE.match(text.strip(" *\"'")):
        return _YES_NO[match.group(1).lower()]
    found = _YES_NO_RE.findall(text)
    return _YES_NO[found[-1].lower()] if found else None


# -- free text ----------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise_text(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the SQuAD rule), except that
    numbers keep their sign and decimal point: "-10" stays "-10", "3.5" stays "3.5"."""
    parts = []
    last = 0
    for match in NUMBER_RE.finditer(text.replace("\u2212", "-")):
        parts.append(text[last:match.start()].lower().translate(_PUNCTUATION))
        number = normalise_number(match.group(0))
        parts.append(f" {number if number is not None else match.group(0)} ")
        last = match.end()
    parts.append(text[last:].lower().translate(_PUNCTUATION))
    return " ".join(_ARTICLES.sub(" ", "".join(parts)).split())


def extract_text(text: str) -> str | None:
    """The phrase after 'the answer is' (to the end of its line), else the first line."""
    phrases = ANSWER_IS_RE.findall(text)
    span = phrases[-1] if phrases else text.strip()
    span = span.strip().split("\n")[0]
    key = normalise_text(span)
    return key or None


# -- code ------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(text: str) -> str:
    """The code in a completion: its fenced blocks (Python ones first), else the text itself.

    Several Python blocks are joined in order (a helper, then the solution).
    """
    blocks = _FENCE.findall(text)
    if not blocks:
        return text
    python = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3", "")]
    return "\n".join(python or [body for _, body in blocks])


def code_key(code: str) -> str | None:
    """Code compared by its lines, ignoring blank lines, comments-only lines and trailing spaces.

    Two programs that behave alike but read differently still get different
    keys; voting by behaviour on tests needs a verifier.
    """
    lines = [line.rstrip() for line in code.splitlines()]
    kept = [line for line in lines if line.strip() and not line.strip().startswith("#")]
    return "\n".join(kept) or None


# -- one table: every format's rules -------------------------------------------------


@dataclass(frozen=True)
class FormatRules:
    """Everything a format needs, in one place, so no format ships half-supported."""

    extract: Callable[[str, "tuple[str, ...] | None"], "str | None"]
    """Completion text (and the options, for choices) -> answer key, or None."""
    form: str
    """How a chain-of-thought prompt names the answer: 'The answer is X.', where X is <form>."""
    direct: str
    """The instruction of an answer-only prompt."""
    merge_by_value: bool = False
    """Keys that differ in form but not in value are merged with math-verify before voting."""


FORMATS: dict[AnswerFormat, FormatRules] = {
    AnswerFormat.NUMBER: FormatRules(
        lambda text, _: extract_number(text), "a number", "Reply with just the number."),
    AnswerFormat.CHOICE: FormatRules(
        extract_choice, "the letter of one option", "Reply with just the letter of the correct option."),
    AnswerFormat.YES_NO: FormatRules(lambda text, _: extract_yes_no(text), "yes or no", "Reply with just yes or no."),
    AnswerFormat.TEXT: FormatRules(
        lambda text, _: extract_text(text), "a short phrase", "Reply with just the answer, in a few words."),
    AnswerFormat.CODE: FormatRules(
        lambda text, _: code_key(extract_code(text)), "the complete code in one ```python block",
        "Reply with the complete code in one ```python block."),
    AnswerFormat.MATH: FormatRules(
        lambda text, _: extract_math(text), "the final answer in LaTeX, inside \\boxed{}",
        "Reply with just the final answer in LaTeX, inside \\boxed{}.", merge_by_value=True),
    AnswerFormat.PLAN: FormatRules(
        lambda text, _: plan_key(text), "the plan, one action per line, followed by [PLAN END]",
        "Reply with just the plan, one action per line, followed by [PLAN END]."),
    AnswerFormat.JSON: FormatRules(
        lambda text, _: json_key(text), "a JSON object", "Reply with just the JSON object, nothing else."),
    AnswerFormat.TOOL: FormatRules(
        lambda text, _: tool_key(text), "a tool call or a reply", "Call a tool or reply."),
}


TOOL_CALL = "call:"
TOOL_TEXT = "text:"


def tool_call(text: str) -> dict[str, Any] | None:
    """The tool call a reply makes: a JSON object {"tool_call": {"name": ..., "arguments": {...}}} (or
    {"name": ..., "arguments": ...}) in it; None for a plain reply."""
    try:
        value = json_value(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, dict) and isinstance(value.get("tool_call"), dict):
        value = value["tool_call"]
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or set(value) - {"name", "arguments"}:
        return None
    arguments = value.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return {"name": value["name"], "arguments": arguments}


def tool_key(text: str) -> str | None:
    """`call:` + the call as canonical JSON, or `text:` + the normalised reply (None when empty)."""
    call = tool_call(text)
    if call is not None:
        return TOOL_CALL + json.dumps(call, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    plain = " ".join(text.split())
    return TOOL_TEXT + plain if plain else None


def json_value(text: str) -> Any:
    """The JSON value a completion gives: a fenced ```json block, else the whole text, else the first
    balanced {...} or [...] in it. Raises ValueError when there is none."""
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("json", "")]
    candidates = blocks + [text.strip()]
    for opening, closing in (("{", "}"), ("[", "]")):
        start = text.find(opening)
        if start >= 0:
            depth, in_string, escaped = 0, False, False
            for i in range(start, len(text)):
                ch = text[i]
                if in_string:
                    if escaped:
                        escaped = False
                    elif ch == "\\":
                        escaped = True
                    elif ch == '"':
                        in_string = False
                    continue
                if ch == '"':
                    in_string = True
                elif ch == opening:
                    depth += 1
                elif ch == closing:
                    depth -= 1
                    if depth == 0:
                        candidates.append(text[start:i + 1])
                        break
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    raise ValueError("no JSON value in the text")


def json_key(text: str) -> str | None:
    """A JSON answer as canonical JSON (sorted keys, no spaces), so equal data votes together."""
    try:
        value = json_value(text)
    except (ValueError, RecursionError):
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def plan_key(text: str) -> str | None:
    """A plan's actions as one canonical line, '(unstack d c) (put-down d) ...', read from the
    text after its last '[PLAN]' (or the whole text); None when no action can be read."""
    head, marker, tail = text.rpartition("[PLAN]")
    actions = parse_plan(tail if marker else text)
    return " ".join(f"({' '.join(a)})" for a in actions) or None


def same_answer(task: Task, answer: str | None, gold_key: str | None) -> bool:
    """Whether an answer key equals the gold key: as strings, or by value where the format
    merges by value (math), so '2+3x' scores right against a gold of '3x+2'."""
    if answer is None or gold_key is None:
        return False
    if answer == gold_key:
        return True
    if FORMATS[task.format].merge_by_value:
        return keys_equal(answer, gold_key)
    return False


def is_correct(result: Result) -> bool | None:
    """Whether a result's answer matches its task's gold answer (None when there is no gold)."""
    if result.task.gold is None:
        return None
    return same_answer(result.task, result.answer, normalise_gold(result.task))


def false_positives(result: Result) -> int | None:
    """Ballots that passed the verifier with a wrong answer (None without gold or verdicts).

    Imperfect verifiers let wrong answers through; this is how many did.
    """
    if result.task.gold is None or not any(c.verdict for c in result.candidates):
        return None
    gold = normalise_gold(result.task)
    return sum(1 for c in result.candidates
               if c.verdict and c.verdict.passed and not same_answer(result.task, c.answer, gold))
