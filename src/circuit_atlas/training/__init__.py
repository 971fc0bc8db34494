"""Train your own checkpoint suites ("model organisms"): Pythia's architecture, GPT-2's or Llama's.

Pythia checkpoints cannot always be downloaded, and controlled runs (seeds, data, sizes; cf.
PolyPythias) need training anyway. This sub-package trains small GPT-NeoX (default), GPT-2 or
Llama models (``TrainConfig.arch``) in several sizes on a text corpus and saves them as a local
suite (``<suite>/<size>/step{N}/`` HF directories and a ``suite.json`` manifest) that
:func:`circuit_atlas.models.sources.load_model` and the study runner read like Pythia on the hub.

Modules, in data-flow order: :mod:`.config` (sizes, run config), :mod:`.tokenizer` (corpus BPE or
Pythia's), :mod:`.curriculum` (templated task sentences), :mod:`.data` (token stream, batches),
:mod:`.schedule` (checkpoint steps, learning rate), :mod:`.trainer` (the loop),
:mod:`.manifest` (``suite.json``); :mod:`.progress` (tqdm bars) and :mod:`.memory` (an allocator
setting) serve the entry points.
"""

from circuit_atlas.training.config import (
    ARCHITECTURES,
    SIZES,
    Architecture,
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
    "ARCHITECTURES",
    "CURRICULA",
    "SIZES",
    "Architecture",
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
