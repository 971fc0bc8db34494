"""Model sources: where a checkpoint's weights come from, and loading them.

Five kinds of source give a patchable model
(:class:`~circuit_atlas.models.patchable.PatchableTransformer`, through the adapter of the
checkpoint's ``model_type``, :mod:`circuit_atlas.models.adapters`):

* ``pythia`` — a Pythia size at a training step from the Hugging Face hub
  (``EleutherAI/pythia-70m`` at branch ``step{N}``, PAPER.md §1). The hub cache honours
  ``HF_HOME`` / ``HF_HUB_CACHE`` and ``--cache-dir``; ``HF_HUB_OFFLINE=1`` (or
  ``TRANSFORMERS_OFFLINE=1``) reads only the local cache.
* ``hub`` — a model of another registered hub suite (:data:`~circuit_atlas.models.hub_suites.
  HUB_SUITES`: OLMo, Stanford CRFM GPT-2, SmolLM2, LLM360 Amber) at a branch of its repository;
  the branch of a step comes from the repository's branch list
  (:func:`~circuit_atlas.models.revisions.list_repo_revisions`), never from a guess.
* ``local`` — a HF-format directory (``config.json`` + ``model.safetensors``), never the network.
* ``suite`` — a local training suite, ``<suite>/<size>/step{N}/`` HF directories plus an optional
  ``<suite>/suite.json`` manifest (see :func:`read_suite_manifest`).
* ``random`` — a seeded random initialisation from a config (tests, baselines).

The tokenizer comes from the source when it has one, else from the data directory
(:func:`circuit_atlas.data.load_pythia_tokenizer`), else it is None (logged).

Every load records a fingerprint of the weights (``source.weights_fingerprint``, defined in
:mod:`circuit_atlas.models.integrity`) and checks hub-cached files against the sha256 the hub
recorded. Weights are read from safetensors only: a checkpoint whose only weights are pickled
(``pytorch_model.bin``, ``*.pt``) is refused with
:class:`~circuit_atlas.errors.PickledCheckpointError` unless ``allow_pickle=True`` (unpickling can
execute code).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from safetensors import SafetensorError

from circuit_atlas.errors import (
    DataNotFoundError,
    InvalidCheckpointError,
    ModelSourceError,
    PickledCheckpointError,
    UnknownNameError,
    UnsupportedArchitectureError,
)
from circuit_atlas.models.adapters import from_hf, get_adapter, spec_from_hf_config
from circuit_atlas.models.configs import (
    DTYPES,
    neox_config,
    quiet_transformers,
    random_hf_model,
    resolve_device,
    resolve_dtype,
    save_random_checkpoint,
    tiny_config,
)
from circuit_atlas.models.finite import check_finite_weights
from circuit_atlas.models.hub_suites import HubModel, resolve_hub_model
from circuit_atlas.models.integrity import (
    PICKLE_FILES,
    fingerprint_files,
    fingerprint_state_dict,
    weight_files,
)
from circuit_atlas.models.pythia import TOKENS_PER_STEP, get_pythia, pythia_spec
from circuit_atlas.models.revisions import resolve_hub_cache
from circuit_atlas.models.steps import validate_step
from circuit_atlas.models.suite import (
    STEP_DIR,
    SUITE_MANIFEST,
    list_suite_checkpoints,
    list_suite_sizes,
    read_suite_manifest,
    scan_steps,
    suite_tokens_per_step,
)

__all__ = [
    "DTYPES",
    "SUITE_MANIFEST",
    "LoadedHF",
    "ModelSource",
    "list_suite_checkpoints",
    "list_suite_sizes",
    "load_hf_model",
    "load_model",
    "neox_config",
    "read_suite_manifest",
    "resolve_device",
    "resolve_dtype",
    "save_random_checkpoint",
    "tiny_config",
]

logger = logging.getLogger(__name__)

SourceKind = Literal["pythia", "hub", "local", "suite", "random"]
PathLike = str | os.PathLike[str]

_TRUE = frozenset({"1", "true", "yes", "on"})
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")  # a config alone gives an empty tokenizer


@dataclass(frozen=True)
class ModelSource:
    """Where a loaded model's weights came from (serialised by the study runner and the store).

    Attributes:
        kind: ``pythia`` (hub), ``hub`` (another hub suite), ``local`` (HF directory), ``suite``
            (local suite checkpoint) or ``random`` (seeded initialisation).
        name: Pythia or hub-suite model name, suite size, directory name, or the random
            config's name.
        step: Training step of the checkpoint, when known.
        path: Local directory (``local``/``suite``), else None.
        revision: Hub revision (``step{N}``, ...) for ``pythia`` and ``hub``, else None.
        repo_id: Hub repository for ``pythia`` and ``hub``, else None.
        seed: Initialisation seed for ``random``, else None.
        params: Total parameter count (embeddings included).
        tokens_per_step: Training tokens per step when known (Pythia: 2,097,152).
        weights_fingerprint: Fingerprint of the loaded weights (64 hex digits;
            :mod:`circuit_atlas.models.integrity`), None when the weight files were not found.
    """

    kind: SourceKind
    name: str | None = None
    step: int | None = None
    path: str | None = None
    revision: str | None = None
    repo_id: str | None = None
    seed: int | None = None
    params: int | None = None
    tokens_per_step: int | None = None
    weights_fingerprint: str | None = None

    @property
    def tokens(self) -> int | None:
        """Training tokens seen at :attr:`step` (``step × tokens_per_step``), when known."""
        if self.step is None or self.tokens_per_step is None:
            return None
        return self.step * self.tokens_per_step

    def to_dict(self) -> dict[str, Any]:
        """Return the fields (and ``tokens``) as a JSON-serialisable dict."""
        return {**dataclasses.asdict(self), "tokens": self.tokens}


class LoadedHF(NamedTuple):
    """A HF model with its tokenizer and source, as returned by :func:`load_hf_model`."""

    model: Any
    tokenizer: Any
    source: ModelSource


# --- planning a source -----------------------------------------------------------------------


def _plan(
    name: str | None,
    step: int | None,
    path: PathLike | None,
    config: Any,
    revision: str | None,
    seed: int,
    revisions_dir: PathLike | None = None,
    cache_dir: str | None = None,
) -> ModelSource:
    if path is not None and config is not None:
        raise ModelSourceError("pass either path= (weights on disk) or config= (random), not both")
    if path is not None:
        return _plan_path(Path(path).expanduser(), name, step)
    if config is not None:
        label = config if isinstance(config, str) else name or getattr(config, "name_or_path", "")
        return ModelSource("random", name=str(label or "random"), step=step, seed=seed)
    if name is not None:
        try:
            return _plan_pythia(name, step, revision)
        except UnknownNameError as pythia_error:
            try:
                hub = resolve_hub_model(name)
            except UnknownNameError:
                raise pythia_error from None
        return _plan_hub(hub, step, revision, revisions_dir, cache_dir)
    raise ModelSourceError("load_model needs a Pythia name, a path= or a config=")


def _plan_hub(hub: HubModel, step: int | None, revision: str | None,
              revisions_dir: PathLike | None, cache_dir: str | None) -> ModelSource:
    """A checkpoint of a non-Pythia hub suite; the step's branch comes from the branch list."""
    hub.require_adapter()
    if revision is not None:
        parsed = hub.suite.scheme.parse(revision)
        if step is None and parsed is not None:
            step = parsed[0]
    else:
        checkpoints = hub.checkpoints(revisions_dir=revisions_dir, hub_cache_dir=cache_dir)
        if not checkpoints:
            raise InvalidCheckpointError(
                f"{hub.repo_id} has no branch named like {hub.suite.scheme.example!r}")
        by_step = {c.step: c for c in checkpoints}
        step = checkpoints[-1].step if step is None else validate_step(
            step, list(by_step), model=hub.name)
        revision = by_step[step].revision
    return ModelSource("hub", name=hub.name, step=step, revision=revision, repo_id=hub.repo_id,
                       tokens_per_step=hub.tokens_per_step)


def _plan_pythia(name: str, step: int | None, revision: str | None) -> ModelSource:
    entry = get_pythia(name)
    if step is not None:
        step = validate_step(step, entry.steps, model=entry.name)
    if revision is None:
        step = entry.final_step if step is None else step
        revision = f"step{step}"
    return ModelSource(
        "pythia",
        name=entry.name,
        step=step,
        revision=revision,
        repo_id=entry.repo_id,
        params=entry.n_params,
        tokens_per_step=TOKENS_PER_STEP,
    )


def _plan_path(root: Path, name: str | None, step: int | None) -> ModelSource:
    if not root.exists():
        raise ModelSourceError(f"model path {str(root)!r} does not exist")
    if name is not None:  # suite root + size (+ step)
        steps = list_suite_checkpoints(root, name)
        step = steps[-1] if step is None else validate_step(step, steps, model=f"{name} in {root}")
        return _suite_source(root / name / f"step{step}", root, name, step)
    if step is not None and not (root / "config.json").exists():  # a suite size directory
        steps = scan_steps(root)
        if not steps:
            raise ModelSourceError(f"model path {str(root)!r} has no config.json or step dirs")
        step = validate_step(step, steps, model=f"{root}")
        return _suite_source(root / f"step{step}", root.parent, root.name, step)
    match = STEP_DIR.fullmatch(root.name)
    if match:  # <suite>/<size>/step{N}
        found = int(match.group(1))
        if step is not None and step != found:
            raise InvalidCheckpointError(f"step {step} does not match the directory {str(root)!r}")
        return _suite_source(root, root.parent.parent, root.parent.name, found)
    return ModelSource("local", name=root.name, step=step, path=str(root))


def _suite_source(ckpt: Path, suite_dir: Path, size: str, step: int) -> ModelSource:
    return ModelSource(
        "suite",
        name=size,
        step=step,
        path=str(ckpt),
        tokens_per_step=suite_tokens_per_step(suite_dir, size),
    )


# --- loaders (one per kind) ------------------------------------------------------------------


def _hub_offline() -> bool:
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(flag.strip().lower() in _TRUE for flag in flags)


def _dtype_kwarg() -> str:
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def _hub_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import EntryNotFoundError

    return (OSError, EntryNotFoundError)


def _safetensors_kwarg(allow_pickle: bool) -> dict[str, Any]:
    """``from_pretrained``'s ``use_safetensors``: True (refuse pickles) unless they are allowed."""
    return {"use_safetensors": None if allow_pickle else True}


def _cached(source: ModelSource, cache_dir: str | None, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(
        str(source.repo_id), filename, cache_dir=cache_dir, revision=source.revision
    )
    return Path(hit) if isinstance(hit, str) else None


def _hub_pickles(source: ModelSource, cache_dir: str | None, offline: bool) -> list[str]:
    """The pickled weight files the hub revision has (in the cache, or online when allowed)."""
    from huggingface_hub import file_exists
    from huggingface_hub.errors import HfHubHTTPError

    found = []
    for name in PICKLE_FILES:
        if _cached(source, cache_dir, name) is not None:
            found.append(name)
        elif not offline:
            try:
                if file_exists(str(source.repo_id), name, revision=source.revision):
                    found.append(name)
            except (OSError, ValueError, HfHubHTTPError) as err:
                logger.info("cannot list %s@%s: %s", source.repo_id, source.revision, err)
    return found


def _hub_fingerprint(source: ModelSource, cache_dir: str | None, allow_pickle: bool) -> str | None:
    """Fingerprint (and check against the hub's sha256) the snapshot the model was loaded from."""
    config_path = _cached(source, cache_dir, "config.json")
    weights = None if config_path is None else weight_files(config_path.parent,
                                                            allow_pickle=allow_pickle)
    if weights is None:
        logger.warning("no weight files of %s@%s in the hub cache; no fingerprint",
                       source.repo_id, source.revision)
        return None
    return fingerprint_files(weights)


def _load_hub(source: ModelSource, dtype: torch.dtype, cache_dir: str | None, config: Any,
              allow_pickle: bool):
    """A hub checkpoint (``pythia`` or ``hub``), through the adapter of the suite's model_type."""
    import transformers

    from circuit_atlas.models.adapters import get_adapter

    architecture = ("gpt_neox" if source.kind == "pythia"
                    else resolve_hub_model(source.name or "").suite.architecture)
    hf_class = getattr(transformers, get_adapter(architecture).hf_class)
    offline = _hub_offline()
    try:
        model = hf_class.from_pretrained(
            source.repo_id,
            revision=source.revision,
            cache_dir=cache_dir,
            local_files_only=offline,
            **_safetensors_kwarg(allow_pickle),
            **{_dtype_kwarg(): dtype},
        )
    except _hub_errors() as err:
        pickles = [] if allow_pickle else _hub_pickles(source, cache_dir, offline)
        if pickles:
            raise PickledCheckpointError(f"{source.repo_id}@{source.revision}", pickles) from err
        where = "the local hub cache (offline mode)" if offline else "the Hugging Face hub"
        raise ModelSourceError(
            f"cannot load {source.repo_id} at revision {source.revision} from {where} "
            f"(cache {cache_dir or 'default'}): {err}"
        ) from err
    if source.kind != "pythia":
        return model, _hub_fingerprint(source, cache_dir, allow_pickle)
    expected, loaded = pythia_spec(source.name or ""), spec_from_hf_config(model.config)
    if loaded != expected:
        logger.warning(
            "%s@%s does not have the registry architecture: %s != %s",
            source.repo_id,
            source.revision,
            loaded,
            expected,
        )
    return model, _hub_fingerprint(source, cache_dir, allow_pickle)


def _load_dir(source: ModelSource, dtype: torch.dtype, cache_dir: str | None, config: Any,
              allow_pickle: bool):
    import transformers
    from transformers import AutoConfig

    path = Path(source.path or "")
    if not (path / "config.json").is_file():
        raise ModelSourceError(f"model directory {str(path)!r} has no config.json")
    try:
        hf_config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise ModelSourceError(f"cannot read the config of {str(path)!r}: {err}") from err
    try:
        adapter = get_adapter(getattr(hf_config, "model_type", None))
        adapter.spec(hf_config)  # refuses options the adapter does not implement, before loading
    except UnsupportedArchitectureError as err:
        raise UnsupportedArchitectureError(f"{str(path)!r}: {err}") from err
    weights = weight_files(path, allow_pickle=allow_pickle)  # refuses a pickle-only directory
    # Fingerprinting reads every tensor's bytes: a truncated or foreign weight file is refused
    # here with its name (InvalidCheckpointError), not deep inside from_pretrained.
    fingerprint = None if weights is None else fingerprint_files(weights)
    try:
        model = getattr(transformers, adapter.hf_class).from_pretrained(
            path, local_files_only=True, **_safetensors_kwarg(allow_pickle),
            **{_dtype_kwarg(): dtype}
        )
    except (*_hub_errors(), SafetensorError) as err:
        raise ModelSourceError(f"cannot load the weights in {str(path)!r}: {err}") from err
    return model, fingerprint


def _load_random(source: ModelSource, dtype: torch.dtype, cache_dir: str | None, config: Any,
                 allow_pickle: bool):
    model = random_hf_model(config, int(source.seed or 0), dtype)
    return model, fingerprint_state_dict(model.state_dict())


_LOADERS: Mapping[str, Callable[..., Any]] = {
    "pythia": _load_hub,
    "hub": _load_hub,
    "local": _load_dir,
    "suite": _load_dir,
    "random": _load_random,
}


# --- tokenizers ------------------------------------------------------------------------------


def _with_pad(tokenizer: Any) -> Any:
    """Give a Pythia tokenizer the pad token of :func:`circuit_atlas.data.load_pythia_tokenizer`."""
    if tokenizer is not None and tokenizer.pad_token is None:
        if "<|padding|>" in tokenizer.get_vocab():
            tokenizer.pad_token = "<|padding|>"
    return tokenizer


def _auto_tokenizer(where: PathLike | str, **kwargs: Any) -> Any:
    from transformers import AutoTokenizer

    return _with_pad(AutoTokenizer.from_pretrained(str(where), **kwargs))


def _hub_tokenizer(source: ModelSource, cache_dir: str | None) -> Any:
    """The tokenizer of a hub revision, or None when the revision has no ``tokenizer.json``.

    The file is looked up first: without it ``AutoTokenizer`` would build an empty tokenizer
    from the model config alone.
    """
    from huggingface_hub import hf_hub_download

    offline = _hub_offline()
    kwargs = dict(revision=source.revision, cache_dir=cache_dir, local_files_only=offline)
    try:
        hf_hub_download(str(source.repo_id), "tokenizer.json", **kwargs)
        return _auto_tokenizer(str(source.repo_id), **kwargs)
    except (*_hub_errors(), ValueError, KeyError) as err:
        logger.info("no tokenizer for %s@%s (%s)", source.repo_id, source.revision, err)
        return None


def _source_tokenizer(source: ModelSource, cache_dir: str | None) -> Any:
    if source.kind in ("pythia", "hub"):
        return _hub_tokenizer(source, cache_dir)
    if source.path is None:
        return None
    ckpt = Path(source.path)
    candidates = [ckpt, ckpt.parent, ckpt.parent.parent] if source.kind == "suite" else [ckpt]
    for directory in candidates:
        if any((directory / f).is_file() for f in _TOKENIZER_FILES):
            return _auto_tokenizer(directory, local_files_only=True)
    return None


def _resolve_tokenizer(
    tokenizer: Any,
    source: ModelSource,
    vocab_size: int,
    data_dir: PathLike | None,
    cache_dir: str | None,
) -> Any:
    if isinstance(tokenizer, (str, os.PathLike)):
        try:
            return _auto_tokenizer(tokenizer, local_files_only=True)
        except (OSError, ValueError) as err:
            raise ModelSourceError(
                f"cannot load the tokenizer at {str(tokenizer)!r}: {err}"
            ) from err
    if tokenizer is False:
        return None
    if tokenizer is not None:
        return tokenizer
    found = _source_tokenizer(source, cache_dir)
    if found is not None:
        return found
    from circuit_atlas.data import load_pythia_tokenizer

    try:
        fallback = load_pythia_tokenizer(data_dir)
    except DataNotFoundError:
        if data_dir is not None:
            raise
        logger.warning("no tokenizer for %s and no data directory; tokenizer is None", source.name)
        return None
    if len(fallback) > vocab_size:
        logger.info(
            "vocabulary %d is smaller than the Pythia tokenizer's; tokenizer is None", vocab_size
        )
        return None
    return fallback


# --- public entry points ---------------------------------------------------------------------


def _describe_source(source: ModelSource) -> str:
    if source.path:
        return f"checkpoint {source.path!r}"
    if source.repo_id:
        return f"{source.repo_id}@{source.revision}"
    return f"{source.kind} model {source.name!r}"


def load_hf_model(
    name: str | None = None,
    *,
    step: int | None = None,
    path: PathLike | None = None,
    config: Any = None,
    seed: int = 0,
    dtype: str | torch.dtype | None = None,
    tokenizer: Any = None,
    data_dir: PathLike | None = None,
    cache_dir: PathLike | None = None,
    revision: str | None = None,
    allow_pickle: bool = False,
    revisions_dir: PathLike | None = None,
) -> LoadedHF:
    """Load a ``transformers`` causal LM (on CPU, in eval mode) with its tokenizer.

    Pythia names and random initialisation give a ``GPTNeoXForCausalLM``; a local or suite
    directory gives the class of its ``config.json``'s ``model_type`` adapter
    (:data:`circuit_atlas.models.adapters.ADAPTERS`).

    Takes the same arguments as :func:`load_model` except ``device``; see there.

    Returns:
        ``LoadedHF(model, tokenizer, source)``; ``source.params`` counts the loaded weights and
        ``source.weights_fingerprint`` identifies them.

    Raises:
        See :func:`load_model`.
    """
    cache = resolve_hub_cache(cache_dir)
    source = _plan(name, step, path, config, revision, seed, revisions_dir, cache)
    torch_dtype = resolve_dtype(dtype)
    logger.info(
        "loading %s model %s (step %s) as %s", source.kind, source.name, source.step, torch_dtype
    )
    with quiet_transformers():
        hf_model, fingerprint = _LOADERS[source.kind](source, torch_dtype, cache, config,
                                                      allow_pickle)
    hf_model.eval()
    params = sum(p.numel() for p in hf_model.parameters())
    source = dataclasses.replace(source, params=params, weights_fingerprint=fingerprint)
    tok = _resolve_tokenizer(tokenizer, source, hf_model.config.vocab_size, data_dir, cache)
    return LoadedHF(hf_model, tok, source)


def load_model(
    name: str | None = None,
    *,
    step: int | None = None,
    path: PathLike | None = None,
    config: Any = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    tokenizer: Any = None,
    data_dir: PathLike | None = None,
    cache_dir: PathLike | None = None,
    revision: str | None = None,
    allow_pickle: bool = False,
    revisions_dir: PathLike | None = None,
):
    """Load a checkpoint as a patchable model (the adapter of its HF ``model_type``).

    Exactly one source is chosen from the arguments:

    * ``path`` and ``name``: the suite checkpoint ``path/name/step{step}`` (``step`` defaults to
      the size's last checkpoint and is validated against the steps on disk);
    * ``path`` and ``step`` where ``path`` is a suite size directory: ``path/step{step}``;
    * ``path`` alone: a HF directory (``kind`` ``suite`` when it is named ``step{N}``);
    * ``config``: a random model of any supported architecture (``config`` as in
      :func:`~circuit_atlas.models.configs.hf_config`; ``name`` is a label);
    * ``name`` alone: a Pythia model from the hub at ``step`` (default 143,000) or ``revision``;
      or a model of another hub suite (``olmo-1b``, ``crfm-gpt2-small-seed49``;
      :func:`~circuit_atlas.models.hub_suites.resolve_hub_model`) at ``step`` (default: its
      last branch) or ``revision``.

    Args:
        name: Pythia name (``pythia-70m``), suite size, or a label for a random model.
        step: Training step; validated against the source's checkpoints before loading.
        path: Local HF directory, suite size directory, or suite root.
        config: Config of a random model (a HF config of a supported architecture, a dict with
            ``model_type``, a Pythia name, or a GPT-NeoX ModelSpec).
        seed: Seed of the random initialisation.
        device: Target device; ``cuda`` when available, else ``cpu``, when None.
        dtype: ``float32`` (default), ``bfloat16``/``bf16``, ``float16``, or a torch dtype.
        tokenizer: A tokenizer, a local tokenizer directory, ``False`` for none, or None (from
            the source, else the data directory's Pythia tokenizer when it fits the vocabulary).
        data_dir: Data directory for the fallback tokenizer.
        cache_dir: Hub cache directory (default ``$HF_HUB_CACHE``, ``$HF_HOME/hub``, the library
            default).
        revision: Explicit hub revision (overrides ``step{N}``; the step is then unknown unless
            also given).
        allow_pickle: Also load pickled weights (``pytorch_model.bin``) when a checkpoint has no
            safetensors. Off by default: unpickling a file can execute arbitrary code.
        revisions_dir: Cache of hub branch lists, for a non-Pythia hub suite's step
            (default :func:`~circuit_atlas.models.revisions.default_revisions_dir`).

    Returns:
        The patchable model; ``model.source`` is :meth:`ModelSource.to_dict`, with the
        ``weights_fingerprint`` of the weights read (:mod:`circuit_atlas.models.integrity`).

    Raises:
        InvalidCheckpointError: For a step that is not a checkpoint (names the nearest ones),
            or a truncated or foreign safetensors file (names the file).
        UnknownNameError: For an unknown Pythia or hub-suite name or dtype.
        RevisionListError: When a hub suite's branch list is needed and no source has it.
        ModelSourceError: For a missing path/config, a network or cache failure (names the repo
            and revision), contradictory arguments, or a device this machine does not have.
        NonFiniteError: If a weight is NaN or infinite (the message names the parameters).
        UnsupportedArchitectureError: For a checkpoint whose ``model_type`` has no adapter
            (the message lists the supported ones), or an option its adapter does not implement.
        PickledCheckpointError: For a checkpoint with only pickled weights, unless
            ``allow_pickle``.
        CheckpointIntegrityError: For a hub-cached weight file whose sha256 is not the hub's.
    """
    target = resolve_device(device)  # an unavailable device is refused before loading
    loaded = load_hf_model(
        name,
        step=step,
        path=path,
        config=config,
        seed=seed,
        dtype=dtype,
        tokenizer=tokenizer,
        data_dir=data_dir,
        cache_dir=cache_dir,
        revision=revision,
        allow_pickle=allow_pickle,
        revisions_dir=revisions_dir,
    )
    check_finite_weights(loaded.model, where=_describe_source(loaded.source))
    model = from_hf(loaded.model, tokenizer=loaded.tokenizer, source=loaded.source.to_dict())
    del loaded  # free the HF copy before moving to the device
    return model.to(target).eval()
