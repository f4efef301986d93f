"""Assembling a streamed answer, chunk by chunk, into the non-streaming shape the cache keeps."""

from __future__ import annotations

from collections import defaultdict

# Delta fields that are pieces of text and simply concatenate. Anything else (tool calls,
# whose arguments arrive in fragments; logprobs) is not assembled: such a stream is not kept.
TEXT_DELTAS = ("content", "reasoning_content", "reasoning")


class StreamCollector:
    """Fed every data chunk of a stream (public model name already set) by the StreamMeter."""

    __slots__ = ("_chat", "_head", "_parts", "_finish", "spoiled")

    def __init__(self, *, chat: bool) -> None:
        self._chat = chat
        self._head: dict | None = None
        self._parts: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        self._finish: dict[int, str | None] = {}
        self.spoiled = False

    def add(self, chunk: dict) -> None:
        if self.spoiled:
            return
        if self._head is None:
            self._head = {"id": chunk.get("id"), "created": chunk.get("created"),
                          "model": chunk.get("model")}
        if chunk.get("system_fingerprint") is not None:
            self._head["system_fingerprint"] = chunk["system_fingerprint"]
        for choice in chunk.get("choices") or ():
            self._choice(choice)

    def _choice(self, choice: dict) -> None:
        i = choice.get("index", 0)
        if choice.get("logprobs") is not None:
            self.spoiled = True
            return
        pieces = self._parts[i]
        if self._chat:
            for name, value in (choice.get("delta") or {}).items():
                if name == "role" or value is None:
                    continue
                if name not in TEXT_DELTAS or not isinstance(value, str):
                    self.spoiled = True
                    return
                pieces[name].append(value)
        elif isinstance(choice.get("text"), str):
            pieces["text"].append(choice["text"])
        if choice.get("finish_reason") is not None:
            self._finish[i] = choice["finish_reason"]

    def answer(self, usage: dict | None) -> dict | None:
        """The non-streaming answer, or None if the stream cannot be kept (unfinished choice,
        or parts the collector does not assemble)."""
        if self.spoiled or self._head is None or not self._parts:
            return None
        if set(self._finish) != set(self._parts):
            return None
        choices = [self._assembled(i) for i in sorted(self._parts)]
        head = {k: v for k, v in self._head.items() if k != "system_fingerprint"}
        obj = "chat.completion" if self._chat else "text_completion"
        answer = {**head, "object": obj, "choices": choices, "usage": usage}
        if "system_fingerprint" in self._head:
            answer["system_fingerprint"] = self._head["system_fingerprint"]
        return answer

    def _assembled(self, i: int) -> dict:
        pieces = self._parts[i]
        if not self._chat:
            return {"index": i, "text": "".join(pieces["text"]), "logprobs": None,
                    "finish_reason": self._finish[i]}
        message = {"role": "assistant", "content": "".join(pieces["content"])}
        for name in TEXT_DELTAS[1:]:
            if name in pieces:
                message[name] = "".join(pieces[name])
        return {"index": i, "message": message, "logprobs": None, "finish_reason": self._finish[i]}
