"""The study file: one typed, validated TOML or YAML file describing a whole experiment.

A study names model sources (Pythia sizes, a local suite directory, or explicit local
checkpoints), a checkpoint schedule per source (optionally per task), the tasks with their sizes
and seeds, the attribution and circuit settings (method, IG steps, ablation, faithfulness
threshold, search), the precision and device, and which per-unit analyses to run. Example
(``examples/local_suite.toml``)::

    name = "tiny-suite"

    [[models]]
    kind = "suite"
    path = "suites/tiny"          # relative to the study file
    schedule = "all"

    [[tasks]]
    name = "ioi"
    n = 70
    seed = 42

    [circuit]
    threshold = 0.8

A source of another hub suite (docs/suites.md) names it by ``suite`` — the ``kind = "hub"`` may
be left out — and any suite or hub source may list training ``seeds``, each seed a model of its
own in the store whose curves are also averaged across seeds (docs/study.md, "Seeds")::

    models = [{suite = "pythia-160m", seeds = [0, 1, 2]}]   # PolyPythias; 0 is the original

Unknown keys and bad values raise :class:`~circuit_atlas.errors.ConfigError` naming the key and
the file line (``study.toml:12: models[0].schedul: Extra inputs are not permitted``). Checkpoint
schedules and task names are checked against the registries when the file is loaded
(:func:`circuit_atlas.study.load.load_study`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from circuit_atlas.components import COMPONENTS, Component
from circuit_atlas.errors import ConfigError
from circuit_atlas.study._locate import locate_line

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "AlgorithmConfig",
    "AttributionConfig",
    "CircuitConfig",
    "ComponentsConfig",
    "HubSource",
    "LocalCheckpoint",
    "LocalSource",
    "ModelSource",
    "PythiaSource",
    "RunConfig",
    "StudyConfig",
    "SuiteSource",
    "TaskConfig",
    "UNIT_ANALYSES",
    "located_error",
    "parse_study",
    "results_root",
]

RESULTS_ENV_VAR = "CIRCUIT_ATLAS_RESULTS"
"""Environment variable overriding a study's results directory."""

Analysis = Literal["behaviour", "circuit", "components", "algorithm"]
"""A per-unit analysis (see :data:`UNIT_ANALYSES`)."""

UNIT_ANALYSES: tuple[str, ...] = get_args(Analysis)
"""Per-unit analyses: ``behaviour`` (task metrics, clean and corrupted), ``circuit`` (attribution,
minimal faithful circuit, faithfulness curve), ``components`` (attention-head component scores,
PAPER.md §4, linked to the circuits), ``algorithm`` (the IOI algorithm decomposition of Figure 4,
the fingerprints of IOI and Greater-Than, self-repair; PAPER.md §5, docs/algorithm.md).
Study-level analyses read the store afterwards."""

Schedule = str | list[int] | int | dict[str, Any]
"""A checkpoint schedule: a name (``exp_plus_detail``), explicit steps, or a ``{kind: ...}`` dict
(see :func:`circuit_atlas.models.schedules.resolve_schedule`)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Scheduled(_Strict):
    schedule: Schedule = Field(
        default="all", description="Checkpoint schedule of this source (named or explicit)."
    )
    task_schedules: dict[str, Schedule] = Field(
        default_factory=dict,
        description="Per-task overrides of `schedule`; a unit runs the tasks whose schedule "
        "contains its step.",
    )


class PythiaSource(_Scheduled):
    """Pythia models from the Hugging Face hub (``EleutherAI/pythia-<size>``)."""

    kind: Literal["pythia"] = "pythia"
    sizes: list[str] = Field(min_length=1, description="Pythia sizes, e.g. ['70m', '1.4b'].")
    variant: str = Field(
        default="standard",
        description="'standard', 'deduped', or a 160m seed/dropout variant such as 'seed1'.",
    )

    def model_names(self) -> list[str]:
        """Return the registry names, e.g. ``pythia-70m`` or ``pythia-160m-seed1``."""
        suffix = "" if self.variant == "standard" else f"-{self.variant}"
        return [f"pythia-{size}{suffix}" for size in self.sizes]


def _unique_seeds(seeds: list[int] | None) -> list[int] | None:
    if seeds is not None and len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {seeds} list a seed twice")
    return seeds


class SuiteSource(_Scheduled):
    """A local suite directory ``<path>/<size>/step{N}/`` with a ``suite.json``.

    With ``seeds``, ``<path>/seed<N>/`` is one such suite per seed (as ``circuit-atlas train
    --seeds`` writes them).
    """

    kind: Literal["suite"] = "suite"
    path: Path = Field(description="Suite directory (relative paths: to the study file).")
    sizes: list[str] | None = Field(default=None, description="Sizes to run (default: all).")
    name: str | None = Field(default=None, description="Display prefix (default: dir name).")
    seeds: list[int] | None = Field(default=None, min_length=1,
                                    description="Training seeds: the suites <path>/seed<N>/.")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int] | None) -> list[int] | None:
        return _unique_seeds(value)


class HubSource(_Scheduled):
    """Models of a registered hub suite (:data:`circuit_atlas.models.hub_suites.HUB_SUITES`)."""

    kind: Literal["hub"] = "hub"
    suite: str = Field(min_length=1, description="A suite ('olmo', with sizes) or one of its "
                       "models ('pythia-160m', 'olmo-1b').")
    sizes: list[str] | None = Field(default=None, min_length=1,
                                    description="Sizes, when `suite` names a whole suite.")
    seeds: list[int] | None = Field(default=None, min_length=1,
                                    description="Training runs (default: the original one; "
                                    "PolyPythias: 0 = the original, 1-9).")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int] | None) -> list[int] | None:
        return _unique_seeds(value)


class LocalCheckpoint(_Strict):
    """One explicit local checkpoint (a Hugging Face model directory)."""

    path: Path = Field(description="Model directory (relative paths: to the study file).")
    step: int | None = Field(default=None, ge=0, description="Training step, if known.")
    tokens_seen: int | None = Field(default=None, ge=0, description="Training tokens, if known.")


class LocalSource(_Strict):
    """Explicit local checkpoints of one model."""

    kind: Literal["local"] = "local"
    name: str = Field(min_length=1, description="Display name of the model.")
    checkpoints: list[LocalCheckpoint] = Field(min_length=1)


ModelSource = Annotated[PythiaSource | SuiteSource | LocalSource | HubSource,
                       Field(discriminator="kind")]
"""Any model source; the ``kind`` key selects which."""


class TaskConfig(_Strict):
    """One task of the study."""

    name: str = Field(description="Registered task name (ioi, greater-than, gender-pronoun, sva).")
    n: int | None = Field(default=None, gt=0, description="Examples (default: the task's).")
    seed: int | None = Field(default=None, description="Dataset seed (default: the task's).")
    options: dict[str, Any] = Field(default_factory=dict, description="Task-specific options.")


class AttributionConfig(_Strict):
    """How edges are scored (PAPER.md §3.2)."""

    method: Literal["EAP", "EAP-IG-inputs", "EAP-IG-activations", "clean-corrupted", "exact"] = (
        "EAP-IG-inputs"
    )
    ig_steps: int = Field(default=30, gt=0, description="Integrated-gradients steps.")
    ablation: Literal["patching", "mean", "zero"] = "patching"


class CircuitConfig(_Strict):
    """How the minimal faithful circuit is found (PAPER.md §3.3–3.4)."""

    threshold: float = Field(default=0.8, gt=0, le=1, description="Faithfulness to reach.")
    search: Literal["fast", "paper", "exhaustive"] = Field(
        default="fast",
        description="'paper': the paper's adaptive 25 -> 1600 scan; 'fast': the same answer in a "
        "few batched rounds; 'exhaustive': the smallest passing size.",
    )
    mib: bool = Field(
        default=False,
        description="Also store the MIB circuit track's CPR and CMD and their faithfulness "
        "curves (docs/mib.md): up to 19 more circuits per task, measured at 20-28 % of the "
        "circuit analysis' time on the demo's models, hence off by default.",
    )


class ComponentsConfig(_Strict):
    """Attention-head component scores (PAPER.md §4); defaults are the paper's settings."""

    scores: list[Component] = Field(default_factory=lambda: list(COMPONENTS), min_length=1,
              description="Which component scores to compute (default: all).")  # fmt: skip
    seed: int = Field(default=0, description="Seed of the random sequences and corpus sample.")
    induction_seq_len: int = Field(default=100, gt=1, description="Repeated sequence length.")
    induction_batch: int = Field(default=2, gt=0, description="Repeated random sequences.")
    ioi_n: int = Field(default=70, gt=0, description="IOI prompts for copy score/S-inhibition.")
    ioi_seed: int = Field(default=42, description="Seed of those IOI prompts.")
    copy_top_k: int = Field(default=5, gt=0, description="Top-k test of the copy score.")
    name_mover_threshold: float = Field(default=0.10, ge=0, le=1,
                                        description="Copy score above which a head is an NMH.")
    copy_suppression_threshold: float = Field(default=0.10,
                                              description="CSPA above which a head is CS.")
    cspa_corpus: Path | None = Field(default=None,
                                     description="CSPA text (default: the data registry corpus).")
    cspa_sequences: int = Field(default=17, gt=0, description="CSPA corpus windows.")
    cspa_mean_sequences: int = Field(default=100, gt=0,
                                     description="Windows of CSPA's mean-ablation value.")
    cspa_seq_len: int = Field(default=61, gt=1, description="Tokens per CSPA window.")
    cspa_min_layer: int = Field(default=2, ge=0,
                                description="Layers below this get no CSPA score (paper: 2).")
    s_inhibition_threshold: float = Field(default=-0.001,
                                          description="Path-patching effect of S2I candidates.")


class AlgorithmConfig(_Strict):
    """The IOI algorithm decomposition, fingerprints and self-repair (PAPER.md §5).

    Defaults are the paper's; the fields are those of
    :class:`circuit_atlas.components.algorithm.AlgorithmSettings`.
    """

    name_mover_threshold: float = Field(default=0.10, ge=0, le=1,
                                        description="Copy score above which a head copies names.")
    copy_suppression_threshold: float = Field(default=0.10, description="CSPA of a CS head.")
    cspa_gate: float | None = Field(default=-0.01,
                                    description="CS heads need a direct effect below this.")
    s_inhibition_threshold: float = Field(default=-0.001,
                                          description="Effect through the NMH queries of S2I.")
    s_inhibition_positions: Literal["end", "all"] = Field(
        default="end", description="Where the NMH queries are patched ('all': the script).")
    tertiary_threshold: float = Field(default=-0.001,
                                      description="Effect through the S2I values of tertiary.")
    denominator: Literal["circuit", "all"] = Field(
        default="circuit", description="Heads whose summed effect is 100%: circuit or all.")
    min_total: float = Field(default=1e-3, gt=0,
                             description="Smallest |summed denominator effect| (gap units).")
    gap_abs_tol: float = Field(default=1e-3, ge=0,
                               description="Smallest clean-corrupted logit-diff gap (logits).")
    gap_n_se: float = Field(default=2.0, ge=0,
                            description="... and standard errors of the clean logit diff.")
    self_repair_threshold: float = Field(default=0.75, ge=0, le=1,
                                         description="Copy score of the heads ablated.")
    backup_fraction: float = Field(default=0.10, ge=0,
                                   description="DLA rise (of the ablated DLA) of a backup head.")
    successor_threshold: float | None = Field(
        default=None, description="Greater-Than fingerprint: successor score above this "
        "(default: above the mean over heads).")


class RunConfig(_Strict):
    """Execution settings; they do not change results, so they are not part of a unit's id."""

    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    precision: Literal["float32", "bfloat16", "float16"] = Field(
        default="float32", description="Weights and activations dtype (the paper used bfloat16)."
    )
    batch_size: int = Field(default=32, gt=0)
    threads: int | None = Field(default=None, gt=0, description="torch threads per unit.")
    allow_pickle: bool = Field(
        default=False, description="Load checkpoints whose only weights are pickled "
        "(pytorch_model.bin); unpickling can execute code, so only for files you trust."
    )

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError(f"device {value!r} is not 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'")
        return value


class StudyConfig(_Strict):
    """A whole study: models × checkpoint schedule × tasks × analyses."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    results: Path | None = Field(default=None, description="Results directory (rel. to file).")
    data_dir: Path | None = Field(default=None, description="Data directory (rel. to file).")
    cache_dir: Path | None = Field(default=None, description="Hugging Face cache directory.")
    models: list[ModelSource] = Field(min_length=1)
    tasks: list[TaskConfig] = Field(min_length=1)
    attribution: AttributionConfig = AttributionConfig()
    circuit: CircuitConfig = CircuitConfig()
    components: ComponentsConfig = ComponentsConfig()
    algorithm: AlgorithmConfig = AlgorithmConfig()
    run: RunConfig = RunConfig()
    analyses: list[Analysis] = Field(
        default_factory=lambda: list(UNIT_ANALYSES), min_length=1
    )
    base_dir: Path = Field(default=Path("."), exclude=True, description="Set by the loader.")

    @model_validator(mode="before")
    @classmethod
    def _hub_kind(cls, data: Any) -> Any:
        """A model source with a ``suite`` key and no ``kind`` is a hub source."""
        if isinstance(data, dict) and isinstance(data.get("models"), list):
            data = {**data, "models": [
                {**m, "kind": "hub"} if isinstance(m, dict) and "suite" in m and "kind" not in m
                else m for m in data["models"]]}
        return data

    @model_validator(mode="after")
    def _unique_tasks(self) -> StudyConfig:
        names = [t.name for t in self.tasks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"task(s) {duplicates} listed twice")
        return self

    def resolve_path(self, path: Path | None) -> Path | None:
        """Return ``path`` made absolute relative to the study file's directory."""
        if path is None:
            return None
        path = Path(os.path.expandvars(str(path))).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()


def results_root(study: StudyConfig, override: str | os.PathLike[str] | None = None) -> Path:
    """The results directory of a study.

    ``override`` (``--results``), else ``$CIRCUIT_ATLAS_RESULTS``, else the study's ``results``
    key, else ``./results/<name>``.
    """
    if override is not None:
        return Path(override)
    if os.environ.get(RESULTS_ENV_VAR):
        return Path(os.environ[RESULTS_ENV_VAR])
    return study.resolve_path(study.results) or Path("results") / study.name


def _read(path: Path) -> tuple[str, str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read study file {str(path)!r}: {exc}") from exc
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            return text, "toml", tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            return text, "yaml", yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            if mark is None:
                raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
            context = getattr(exc, "context", None)
            what = f"{context}, {exc.problem}" if context else exc.problem
            raise ConfigError(
                f"{path}: invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
            ) from exc
    raise ConfigError(f"study file {str(path)!r} must end in .toml, .yaml or .yml")


def _format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _where(path: Path, text: str, fmt: str, loc: Sequence[int | str]) -> str:
    line = locate_line(text, loc, fmt=fmt)
    return f"{path}:{line}" if line is not None else f"{path}"


def located_error(path: str | os.PathLike[str], loc: Sequence[int | str], message: str
                  ) -> ConfigError:
    """A :class:`ConfigError` naming the study file's line of ``loc`` and the key.

    Example message: ``study.toml:12: models[0].schedule: unknown checkpoint schedule 'x'``.

    Args:
        path: The study file (TOML or YAML).
        loc: The key's location, e.g. ``["models", 0, "schedule"]``.
        message: What is wrong.

    Raises:
        ConfigError: If the file cannot be read.
    """
    path = Path(path)
    text, fmt, _ = _read(path)
    return ConfigError(f"{_where(path, text, fmt, loc)}: {_format_loc(loc)}: {message}")


def parse_study(path: str | os.PathLike[str]) -> StudyConfig:
    """Parse and type-check a study file without touching registries or the file system.

    Raises:
        ConfigError: For a syntax error, an unknown key or a bad value; the message names each
            key (``models[0].schedul``) and its file line.
    """
    path = Path(path)
    text, fmt, raw = _read(path)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the study file must be a table/mapping, got {type(raw).__name__}"
        )
    try:
        study = StudyConfig.model_validate({**raw, "base_dir": path.resolve().parent})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = [p for p in error["loc"] if p not in ("pythia", "suite", "local", "hub")]
            got = repr(error.get("input"))
            got = got if len(got) <= 80 else got[:77] + "..."
            message = ("required key is missing" if error["type"] == "missing"
                       else f"{error['msg']} (got {got})")
            tagged = error["type"].startswith("union_tag")
            where = _where(path, text, fmt, [*error["loc"], "kind"] if tagged else error["loc"])
            problems.append(f"{where}: {_format_loc(loc)}: {message}")
        raise ConfigError("invalid study file:\n  " + "\n  ".join(problems)) from None
    if "base_dir" in raw:
        raise ConfigError(f"{_where(path, text, fmt, ['base_dir'])}: base_dir: not a study key")
    return study
