"""LoRA adapters as vLLM 0.32 serves them with `--enable-lora --lora-modules`.

An adapter is served beside the base model under its own name: /v1/models lists it after the
base model(s) with `root` (its path) and `parent` (its base model), a request naming it as
`model` is answered by it (the answer's `model` is the adapter's name), and an unknown name is
a 404 whose message lists the base models only. The simulator loads no weights: an adapter's
answer is told from the base model's by its generated text, drawn from a seed that includes
the adapter's name (same prompt and seed, same adapter: same text), and its KV blocks are
hashed apart from the base model's, as vLLM hashes blocks with their adapter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from zlib import crc32


@dataclass(frozen=True)
class LoraModule:
    name: str
    path: str
    base_model_name: str | None = None

    @property
    def salt(self) -> int:
        """Starts its requests' KV hash chains, apart from the base model's (which start at 0)."""
        return crc32(b"lora:" + self.name.encode()) + 1

    def generation_key(self, prompt: str) -> str:
        """What seeds its generated text: the prompt, set apart by the adapter's name."""
        return f"<lora:{self.name}>{prompt}"


def parse_modules(items: list[str] | None) -> list[LoraModule]:
    """vLLM's LoRAParserAction: `name=path`, or JSON {"name", "path", "base_model_name"?}."""
    modules = []
    for item in items or []:
        if not item:
            continue
        if "=" in item and "," not in item:
            name, path = item.split("=", 1)
            modules.append(LoraModule(name, path))
            continue
        try:
            fields = json.loads(item)
            modules.append(LoraModule(**fields))
        except json.JSONDecodeError:
            raise SystemExit(f"error: Invalid JSON format for --lora-modules: {item}") from None
        except TypeError as exc:
            raise SystemExit(f"error: Invalid fields for --lora-modules: {item} - {exc}") from None
    return modules


def check_modules(modules: list[LoraModule], enabled: bool, served: tuple[str, ...]) -> tuple:
    """vLLM's start-up: every static adapter must load, which needs --enable-lora, a name and a
    path, a name no served model has, and a name loaded once. A `base_model_name` that is no
    served name is dropped (the listing then names the first served model as parent)."""
    if modules and not enabled:
        raise SystemExit("--lora-modules needs --enable-lora (LoRA is not enabled)")
    seen: set[str] = set()
    for module in modules:
        if not module.name or not module.path:
            raise SystemExit("Both 'lora_name' and 'lora_path' must be provided.")
        if module.name in served:
            raise SystemExit(f"The lora adapter '{module.name}' conflicts with a served base model.")
        if module.name in seen:
            raise SystemExit(f"The lora adapter '{module.name}' has already been loaded.")
        seen.add(module.name)
    return tuple(LoraModule(m.name, m.path, m.base_model_name if m.base_model_name in served else None)
                 for m in modules)


def adapter_named(name: object, modules: tuple[LoraModule, ...]) -> LoraModule | None:
    """The adapter a request's `model` names, or None (the base model)."""
    return next((m for m in modules if m.name == name), None)


def listed(modules: tuple[LoraModule, ...], served: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(id, root, parent) of each adapter's /v1/models entry, in loading order."""
    return [(m.name, m.path, m.base_model_name or served[0]) for m in modules]
