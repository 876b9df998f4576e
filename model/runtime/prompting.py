"""Prompt building from the model's own chat template, one code path for training and inference.

Inference gives the model exactly what its template renders with `add_generation_prompt`.
Training derives the answer's place from the same template: it renders the conversation with
and without the answer, and the difference is the target. For GLM-4 (`-hf` and 0414) the
generation prompt ends at `<|assistant|>` and an answer turn is ``<|assistant|>\\n{answer}``,
so the target is ``\\n{answer}`` followed by the end of the turn (`<|user|>`, the token that
opens the next turn, which GLM-4's generation config counts as EOS). The text a model writes
before the answer proper (that "\\n", the template's *lead*) is taken off what callers see.

A model without a chat template (a ChatGLM-6B/2/3 directory as THUDM ships it) is refused with a
clear message: `NoChatTemplate`. `secbot convert` gives ChatGLM2/3 a template that renders
exactly their own prompt layout (`model/conversion/families.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from secbot.model.conversation import History, to_messages
from secbot.model.errors import ModelError, QuestionTooLong

DEFAULT_ASSISTANT_NAME = "secbot"  # the identity the assistant keeps unless SECBOT_ASSISTANT_NAME says
DEFAULT_SYSTEM_PROMPT = (
    "You are {name}, the security team's own assistant. You are not ChatGPT and not any other "
    "assistant. Answer security questions precisely; say so when you do not know."
)
_PROBE = "\u2063secbot-answer\u2063"  # stands in for an answer when reading the template's layout


@dataclass(frozen=True)
class Layout:
    lead: str  # what the template has the model write before the answer proper ("\n" on GLM-4)
    end_of_turn: int  # the token that ends an answer: the next turn's opening (<|user|>), or EOS
    specials: frozenset[int]


class NoChatTemplate(ModelError):
    def __init__(self):
        super().__init__(
            "the model's tokenizer has no chat template. secbot builds every prompt from the "
            "template (tokenizer_config.json `chat_template`). Convert a ChatGLM2/3-6B checkpoint with "
            "`secbot convert SRC DST` (it writes one); otherwise use GLM-4 (glm-4-9b-chat-hf or the "
            "GLM-4-0414 family) or add the template your model was trained with.")


class ContextOverflow(QuestionTooLong):
    """The question alone (with system prompt and template) does not fit the context window."""


class TemplateLayoutError(ModelError):
    pass


@dataclass
class PromptBuilder:
    """Turns (query, history) into model input ids, and (query, history, answer) into training
    ids whose target is exactly what the template puts after the generation prompt."""

    tokenizer: object
    system_prompt: str | None = None

    def __post_init__(self):
        if not getattr(self.tokenizer, "chat_template", None):
            raise NoChatTemplate()

    def with_system(self, system_prompt: str | None) -> "PromptBuilder":
        """This builder with another system prompt (itself when it is the same)."""
        if system_prompt is None or system_prompt == self.system_prompt:
            return self
        return PromptBuilder(self.tokenizer, system_prompt)

    def _render(self, messages: list[dict], generation: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)

    def text(self, query: str, history: History = ()) -> str:
        return self._render(to_messages(query, history, self.system_prompt), True)

    def ids(self, query: str, history: History = ()) -> list[int]:
        # The template writes its own special tokens ([gMASK]<sop> for GLM-4).
        return self.tokenizer.encode(self.text(query, history), add_special_tokens=False)

    def target_text(self, query: str, history: History, answer: str) -> str:
        """What the template renders after the generation prompt when the answer is given."""
        prompt = self._render(to_messages(query, history, self.system_prompt), True)
        full = self._render(to_messages(query, history, self.system_prompt, answer), False)
        if not full.startswith(prompt):
            raise TemplateLayoutError(
                "the chat template does not render an answer after its generation prompt "
                f"(prompt ends {prompt[-40:]!r}, with the answer {full[len(prompt) - 40:len(prompt)]!r}); "
                "secbot cannot tell where the answer starts")
        return full[len(prompt):]

    @cached_property
    def layout(self) -> Layout:
        """Read once from the template: what it puts before an answer, and what ends an answer turn."""
        target = self.target_text("q", [], _PROBE)
        lead = target[: target.index(_PROBE)] if _PROBE in target else ""
        nxt = self._render(to_messages("q", [["q", _PROBE]], self.system_prompt), False)
        after = nxt[nxt.index(_PROBE) + len(_PROBE):]
        closing = self.tokenizer.encode(after, add_special_tokens=False) if after else []
        specials = frozenset(self.tokenizer.all_special_ids)
        end = closing[0] if closing and closing[0] in specials else self.tokenizer.eos_token_id
        return Layout(lead, end, specials)

    @property
    def lead(self) -> str:
        return self.layout.lead

    def answer_ids(self, query: str, history: History, answer: str, max_tokens: int | None = None) -> list[int]:
        """The training target: the template's text after the generation prompt, ending with the
        turn's end token (the template's own, or the next turn's opening, or EOS); cut to fit
        `max_tokens` with the end token kept."""
        ids = self.tokenizer.encode(self.target_text(query, history, answer), add_special_tokens=False)
        end = self.layout.end_of_turn
        closed = next((i for i, t in enumerate(ids) if t in self.layout.specials), None)
        if closed is not None:  # the template closes the turn itself (e.g. <|im_end|>)
            ids, end = ids[:closed], ids[closed]
        if max_tokens is not None:
            ids = ids[: max(max_tokens - 1, 0)]
        return ids + [end]

    def fit(self, query: str, history: History, max_tokens: int, truncate: bool = False) -> tuple[list[int], int]:
        """Prompt ids within `max_tokens`, dropping the oldest turns first; returns (ids, dropped).

        When the query alone is still too long: `ContextOverflow`, or with `truncate` (training,
        as THUDM's scripts cut sources) the query's tail is cut so the template stays intact.
        """
        history = list(history)
        for dropped in range(len(history) + 1):
            ids = self.ids(query, history[dropped:])
            if len(ids) <= max_tokens:
                return ids, dropped
        if not truncate:
            raise ContextOverflow(len(ids), max_tokens)
        query_ids = self.tokenizer.encode(query, add_special_tokens=False)
        overflow = len(ids) - max_tokens
        cut = self.tokenizer.decode(query_ids[: max(len(query_ids) - overflow - 1, 0)])
        return self.ids(cut, [])[:max_tokens], len(history)
