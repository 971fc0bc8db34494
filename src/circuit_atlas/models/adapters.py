"""The registry of architecture adapters, keyed by HF ``model_type``.

An :class:`Adapter` is a value: how to read a ``transformers`` config into a
:class:`~circuit_atlas.models.spec.ModelSpec`, which ``transformers`` class loads the weights, and
which :class:`~circuit_atlas.models.patchable.PatchableTransformer` subclass copies them.
:func:`~circuit_atlas.models.sources.load_model` and :func:`spec_from_hf_config` consult
:data:`ADAPTERS`; adding an
architecture is one new module and one entry here (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from torch import nn

from circuit_atlas.errors import UnsupportedArchitectureError
from circuit_atlas.models.gpt2 import PatchableGPT2, gpt2_spec
from circuit_atlas.models.llama import PatchableLlama, llama_spec
from circuit_atlas.models.neox import PatchableGPTNeoX, neox_spec
from circuit_atlas.models.patchable import PatchableTransformer
from circuit_atlas.models.spec import ModelSpec

__all__ = [
    "ADAPTERS",
    "Adapter",
    "from_hf",
    "get_adapter",
    "spec_from_hf_config",
    "supported_model_types",
]


@dataclass(frozen=True)
class Adapter:
    """How one HF architecture becomes a patchable model.

    Attributes:
        model_type: The HF ``config.model_type`` it reads.
        hf_class: Name of the ``transformers`` causal-LM class that loads its weights.
        spec: ``spec(config) -> ModelSpec``; raises ``UnsupportedArchitectureError`` for options
            it does not implement.
        model_class: The patchable class; its ``from_hf(hf_model, tokenizer, source)`` copies the
            weights.
    """

    model_type: str
    hf_class: str
    spec: Callable[[Any], ModelSpec]
    model_class: type[PatchableTransformer]


ADAPTERS: Mapping[str, Adapter] = MappingProxyType({
    a.model_type: a
    for a in (
        Adapter("gpt_neox", "GPTNeoXForCausalLM", neox_spec, PatchableGPTNeoX),
        Adapter("gpt2", "GPT2LMHeadModel", gpt2_spec, PatchableGPT2),
        Adapter("llama", "LlamaForCausalLM", llama_spec, PatchableLlama),
        Adapter("qwen2", "Qwen2ForCausalLM", llama_spec, PatchableLlama),
        Adapter("olmo", "OlmoForCausalLM", llama_spec, PatchableLlama),
    )
})
"""Every built-in adapter by HF ``model_type``."""


def supported_model_types() -> list[str]:
    """The HF ``model_type`` values with an adapter, sorted."""
    return sorted(ADAPTERS)


def get_adapter(model_type: str | None) -> Adapter:
    """The adapter of a HF ``model_type``.

    Raises:
        UnsupportedArchitectureError: For a model type with no adapter; the message names it
            and lists the supported ones.
    """
    adapter = ADAPTERS.get(model_type) if isinstance(model_type, str) else None
    if adapter is None:
        supported = ", ".join(repr(t) for t in supported_model_types())
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} has no architecture adapter; supported: {supported}"
        )
    return adapter


def spec_from_hf_config(config: Any) -> ModelSpec:
    """The :class:`ModelSpec` of a ``transformers`` config, read by its ``model_type``'s adapter.

    No weights are needed, so a graph can be built from a config alone:
    ``Graph.from_spec(spec_from_hf_config(GPT2Config()))``.

    Raises:
        UnsupportedArchitectureError: For a ``model_type`` with no adapter (names it and lists
            the supported ones), or a configuration option the adapter does not implement.
    """
    return get_adapter(getattr(config, "model_type", None)).spec(config)


def from_hf(hf_model: nn.Module, tokenizer: Any = None, source: dict | None = None):
    """A patchable model with the weights of a HF causal LM of any supported architecture.

    Raises:
        UnsupportedArchitectureError: For an architecture with no adapter.
    """
    adapter = get_adapter(getattr(hf_model.config, "model_type", None))
    return adapter.model_class.from_hf(hf_model, tokenizer=tokenizer, source=source)
