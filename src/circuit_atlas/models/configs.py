"""Model configs, devices and dtypes; seeded random models of any adapter's architecture.

``tiny_config`` is the shared tiny GPT-NeoX architecture of the test suite; :func:`hf_config`
reads a config description of any architecture with an adapter (GPT-NeoX, GPT-2, Llama, Qwen2,
OLMo); ``random_hf_model`` and ``save_random_checkpoint`` build and write a seeded random model of
it, a HF directory that :func:`circuit_atlas.models.sources.load_model` (and the CLI's
``--model-path``) can load back.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from circuit_atlas.errors import ModelSourceError, UnknownNameError, UnsupportedArchitectureError
from circuit_atlas.models.adapters import get_adapter
from circuit_atlas.models.pythia import pythia_config
from circuit_atlas.models.spec import ModelSpec

__all__ = [
    "DTYPES",
    "hf_config",
    "neox_config",
    "quiet_transformers",
    "random_hf_model",
    "resolve_device",
    "resolve_dtype",
    "save_random_checkpoint",
    "tiny_config",
]

PathLike = str | os.PathLike[str]

DTYPES: Mapping[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
"""Accepted dtype names (the paper runs in ``bfloat16``, PAPER.md §3.1)."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device``, or ``cuda`` when available and ``cpu`` otherwise.

    Raises:
        ModelSourceError: For a device name torch does not know, or a CUDA / MPS device this
            machine does not have (the message names the device and what is available).
    """
    from circuit_atlas.errors import ModelSourceError

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ModelSourceError(f"unknown device {str(device)!r}: {err}") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ModelSourceError(f"device {str(device)!r} requested but CUDA is not available "
                                   f"(torch {torch.__version__}, built for CUDA "
                                   f"{torch.version.cuda}); use --device cpu")
        if resolved.index is not None and resolved.index >= count:
            raise ModelSourceError(f"device {str(device)!r} requested but this machine has "
                                   f"{count} CUDA device(s)")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ModelSourceError(f"device {str(device)!r} requested but MPS is not available")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None = None) -> torch.dtype:
    """Return a torch dtype from a name in :data:`DTYPES`, a dtype, or None (``float32``).

    Raises:
        UnknownNameError: For an unknown dtype name (the message lists the valid names).
    """
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in DTYPES:
        raise UnknownNameError(f"unknown dtype {dtype!r}; valid names: {', '.join(DTYPES)}")
    return DTYPES[key]


def tiny_config(**overrides: Any) -> Any:
    """Return a tiny Pythia-like ``GPTNeoXConfig`` for tests.

    Defaults: 2 layers, 4 heads, ``d_model`` 32, ``d_mlp`` 128, the Pythia vocabulary (50,304
    rows, so the real tokenizer fits), rotary on 25% of head dims, parallel residual, untied
    embeddings. Any ``GPTNeoXConfig`` keyword overrides a default.
    """
    from transformers import GPTNeoXConfig

    defaults: dict[str, Any] = dict(
        vocab_size=50304,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        hidden_act="gelu",
        max_position_embeddings=2048,
        rotary_pct=0.25,
        rotary_emb_base=10000,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPTNeoXConfig(**{**defaults, **overrides})


def neox_config(config: Any) -> Any:
    """Turn a config description into a ``transformers.GPTNeoXConfig``.

    Args:
        config: A ``GPTNeoXConfig`` (returned as is), a dict of ``GPTNeoXConfig`` keywords (a
            ``model_type`` key, if present, must be ``gpt_neox``), a Pythia name
            (:func:`~circuit_atlas.models.pythia.pythia_config`), or a
            :class:`~circuit_atlas.models.spec.ModelSpec`.

    Raises:
        UnsupportedArchitectureError: For another architecture's config.
        UnknownNameError: For an unknown Pythia name.
        ModelSourceError: For any other type.
    """
    from transformers import GPTNeoXConfig

    if isinstance(config, str):
        return pythia_config(config)
    if isinstance(config, ModelSpec):
        return tiny_config(**_spec_kwargs(config))
    if isinstance(config, Mapping):
        kwargs = dict(config)
        model_type = kwargs.pop("model_type", "gpt_neox")
        if model_type != "gpt_neox":
            raise UnsupportedArchitectureError(
                f"config model_type {model_type!r} is not supported; supported: 'gpt_neox'"
            )
        return GPTNeoXConfig(**kwargs)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise ModelSourceError(f"cannot build a GPT-NeoX config from {type(config).__name__}")
    if model_type != "gpt_neox":
        raise UnsupportedArchitectureError(
            f"config model_type {model_type!r} is not supported; supported: 'gpt_neox'"
        )
    return config


def hf_config(config: Any) -> Any:
    """Turn a config description of any supported architecture into a ``transformers`` config.

    Args:
        config: A ``transformers`` config whose ``model_type`` has an adapter (returned as is);
            a dict of its keywords with a ``model_type`` key (``gpt_neox`` when absent), e.g.
            ``{"model_type": "gpt2", "n_layer": 2, "n_head": 4, "n_embd": 32}``; a Pythia name;
            or a GPT-NeoX :class:`~circuit_atlas.models.spec.ModelSpec` (as :func:`neox_config`).

    Raises:
        UnsupportedArchitectureError: For a ``model_type`` with no adapter (the message lists the
            supported ones) or an option its adapter does not implement.
        UnknownNameError: For an unknown Pythia name.
        ModelSourceError: For any other type.
    """
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(config, (str, ModelSpec)):
        return neox_config(config)
    if isinstance(config, Mapping):
        kwargs = dict(config)
        model_type = kwargs.pop("model_type", "gpt_neox")
        adapter = get_adapter(model_type)
        built = AutoConfig.for_model(adapter.model_type, **kwargs)
    elif isinstance(config, PretrainedConfig):
        built = config
    else:
        raise ModelSourceError(f"cannot build a model config from {type(config).__name__}")
    get_adapter(getattr(built, "model_type", None)).spec(built)  # refuse unsupported options
    return built


def _spec_kwargs(spec: ModelSpec) -> dict[str, Any]:
    return dict(
        vocab_size=spec.vocab_size,
        hidden_size=spec.d_model,
        num_hidden_layers=spec.n_layers,
        num_attention_heads=spec.n_heads,
        intermediate_size=spec.d_mlp,
        hidden_act=spec.hidden_act,
        max_position_embeddings=spec.max_positions,
        rotary_pct=spec.rotary_pct,
        rotary_emb_base=spec.rotary_base,
        use_parallel_residual=spec.parallel_residual,
        layer_norm_eps=spec.layer_norm_eps,
        attention_bias=spec.attention_bias,
    )


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence ``transformers``' progress bars inside the block (the library never prints)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def random_hf_model(config: Any, seed: int = 0, dtype: str | torch.dtype | None = None) -> Any:
    """Build a seeded random HF causal LM of the config's architecture (eval mode, on CPU).

    The class is the adapter's (``GPTNeoXForCausalLM``, ``GPT2LMHeadModel``, ``LlamaForCausalLM``,
    ...), initialised by ``transformers`` as that class initialises itself.

    Args:
        config: Anything :func:`hf_config` accepts.
        seed: ``torch.manual_seed`` of the initialisation; the global RNG state is restored.
        dtype: Weight dtype (see :func:`resolve_dtype`); the weights are drawn in float32 and
            cast, so one seed gives the same model up to rounding in every dtype.
    """
    import transformers

    built = hf_config(config)
    model_class = getattr(transformers, get_adapter(built.model_type).hf_class)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(built)
    return model.to(resolve_dtype(dtype)).eval()


def save_random_checkpoint(
    directory: PathLike,
    config: Any = None,
    seed: int = 0,
    *,
    tokenizer: Any = None,
    dtype: str | torch.dtype | None = None,
) -> Path:
    """Write a seeded random model of any supported architecture as a HF directory.

    The directory holds ``config.json`` and ``model.safetensors`` (and the tokenizer, if given).

    Args:
        directory: Target directory (created; e.g. ``<suite>/<size>/step100``).
        config: Anything :func:`hf_config` accepts; :func:`tiny_config` when None.
        seed: Initialisation seed (``torch.manual_seed``); the global RNG is left untouched.
        tokenizer: A HF tokenizer to save alongside, or None.
        dtype: Weight dtype (``float32`` default).

    Returns:
        The directory, as a ``Path``.
    """
    path = Path(directory)
    model = random_hf_model(tiny_config() if config is None else config, seed, dtype)
    with quiet_transformers():
        model.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path
