"""Train your own Pythia-architecture checkpoint suites ("model organisms").

Pythia checkpoints cannot always be downloaded, and controlled runs (seeds, data, sizes; cf.
PolyPythias) need training anyway. This sub-package trains small GPT-NeoX models in several sizes
on a text corpus and saves them as a local suite (``<suite>/<size>/step{N}/`` HF directories and a
``suite.json`` manifest) that :func:`circuit_atlas.models.sources.load_model` and the study
runner read like Pythia on the hub.

Modules, in data-flow order: :mod:`.config` (sizes, run config), :mod:`.tokenizer` (corpus BPE or
Pythia's), :mod:`.curriculum` (templated task sentences), :mod:`.data` (token stream, batches),
:mod:`.schedule` (checkpoint steps, learning rate), :mod:`.trainer` (the loop),
:mod:`.manifest` (``suite.json``).
"""

from circuit_atlas.training.config import (
    SIZES,
    CurriculumConfig,
    ModelSize,
    TrainConfig,
    get_size,
)
from circuit_atlas.training.curriculum import CURRICULA, CurriculumVocabulary, build_vocabulary
from circuit_atlas.training.manifest import SizeRecord, SuiteManifest
from circuit_atlas.training.schedule import checkpoint_steps, learning_rate
from circuit_atlas.training.tokenizer import build_tokenizer, load_tokenizer
from circuit_atlas.training.trainer import TrainProgress, train_suite

__all__ = [
    "CURRICULA",
    "SIZES",
    "CurriculumConfig",
    "CurriculumVocabulary",
    "ModelSize",
    "SizeRecord",
    "SuiteManifest",
    "TrainConfig",
    "TrainProgress",
    "build_tokenizer",
    "build_vocabulary",
    "checkpoint_steps",
    "get_size",
    "learning_rate",
    "load_tokenizer",
    "train_suite",
]
