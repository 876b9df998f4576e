"""A conversation as secbot keeps it, a question with its thread's earlier (question, answer)
pairs, and the same conversation as chat `messages`, both ways, with one set of rules.

The chat template (`model.runtime.prompting`), the model server's requests
(`model.serving.protocol`), the bot's client (`model.serving.client`) and chat-format training
records (`model.training.record_formats`) all go through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

History = Sequence[Sequence[str]]
SYSTEM_ROLES = ("system", "developer")  # `developer` is OpenAI's newer name for system


class ConversationError(ValueError):
    """Messages that are not one conversation; `param` names the field at fault (as
    `messages[2].role`), `unsupported` tells a refused feature from a malformed value."""

    def __init__(self, message: str, param: str = "messages", unsupported: bool = False):
        super().__init__(message)
        self.param, self.unsupported = param, unsupported


@dataclass(frozen=True)
class Conversation:
    query: str
    history: tuple[tuple[str, str], ...] = ()
    system: str | None = None
    answer: str | None = None  # the assistant's answer to `query`, when the messages end with it


def to_messages(query: str, history: History = (), system: str | None = None,
                answer: str | None = None) -> list[dict]:
    """Chat messages: the system prompt, the earlier turns, the question and, if given, its answer."""
    messages = [{"role": "system", "content": system}] if system else []
    for q, a in history:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": query})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def text_of(content: Any, where: str) -> str:
    """A message's content as plain text: a string, or OpenAI text parts joined; other parts
    (images, audio, files) are refused."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ConversationError(f"{where}.content must be a string or a list of text parts", f"{where}.content")
    texts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            raise ConversationError(f"{where}.content[{i}]: only text parts are read, not {kind or 'this'!r}",
                                    f"{where}.content[{i}].type", unsupported=True)
        texts.append(part["text"])
    return "".join(texts)


def from_messages(messages: Sequence[tuple[str, str]], *, answered: bool = False) -> Conversation:
    """(role, text) pairs as one conversation: system and developer messages join into the system
    prompt; user and assistant turns alternate from the user and end on the user, or, when
    `answered`, on the assistant's answer to it."""
    system, turns = [], []
    for i, (role, text) in enumerate(messages):
        if role in SYSTEM_ROLES:
            system.append(text)
        elif role in ("user", "assistant"):
            turns.append((i, role, text))
        else:
            raise ConversationError(f"messages[{i}]: role '{role}' needs tool calling; a conversation here has "
                                    "only system, user and assistant turns", f"messages[{i}].role", unsupported=True)
    last = "assistant" if answered else "user"
    if not turns or turns[-1][1] != last or (answered and len(turns) < 2):
        raise ConversationError("the messages must end with an assistant answer to a user message" if answered
                                else "the last message must be from the user")
    for k, (i, role, _) in enumerate(turns):
        if role != ("user" if k % 2 == 0 else "assistant"):
            raise ConversationError(f"messages[{i}]: user and assistant messages must alternate, starting with "
                                    "the user", f"messages[{i}].role")
    texts = [text for _, _, text in turns]
    body = texts[:-2] if answered else texts[:-1]
    return Conversation(query=texts[-2] if answered else texts[-1],
                        history=tuple(zip(body[0::2], body[1::2])),
                        system="\n\n".join(system) or None,
                        answer=texts[-1] if answered else None)
