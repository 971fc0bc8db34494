"""Helpers shared by the runner tests: a tiny local suite, a study file, stored-row snapshots."""

import json
import textwrap
from pathlib import Path

import pandas as pd

from circuit_atlas.store import TABLES, ResultsStore

SUITE_STEPS = (0, 10, 20)

# Columns that legitimately differ between two runs of the same unit.
RUN_SPECIFIC = {"units": ["timings", "duration_s", "finished_at", "host"], "mib": ["seconds"]}


def make_suite(root: Path) -> Path:
    """Write a local suite ``root/suite/a/step{0,10,20}`` of tiny random GPT-NeoX checkpoints."""
    from circuit_atlas.models.configs import save_random_checkpoint, tiny_config

    suite = root / "suite"
    for step in SUITE_STEPS:
        save_random_checkpoint(suite / "a" / f"step{step}", tiny_config(), seed=step)
    (suite / "suite.json").write_text(json.dumps({"name": "tiny", "tokens_per_step": 1000}))
    return suite


STUDY = """\
name = "tiny-study"
data_dir = "{data_dir}"
analyses = {analyses}

[[models]]
kind = "suite"
path = "suite"
schedule = "all"

[[tasks]]
name = "ioi"
n = 6

[[tasks]]
name = "gender-pronoun"
n = 6

[attribution]
method = "EAP-IG-inputs"
ig_steps = 3

[circuit]
threshold = 0.8
search = "fast"
mib = true

[run]
device = "cpu"
batch_size = 6
threads = 1
"""


COMPONENTS = """
[components]
induction_seq_len = 12
ioi_n = 6
cspa_sequences = 2
cspa_mean_sequences = 4
cspa_seq_len = 16
cspa_min_layer = 1
"""
"""Small component-score settings for the tiny suite."""


def write_study(root: Path, data_dir: Path, analyses=("behaviour", "circuit"),
                name: str = "study.toml") -> Path:
    """Write ``root/<name>`` over the suite ``root/suite`` (with :data:`COMPONENTS` settings)."""
    path = root / name
    text = STUDY.format(data_dir=data_dir, analyses=json.dumps(list(analyses))) + COMPONENTS
    path.write_text(textwrap.dedent(text))
    return path


def stored_rows(root: Path) -> dict[str, pd.DataFrame]:
    """Every table of a store, sorted, without the run-specific columns."""
    store = ResultsStore(root)
    out = {}
    for name in TABLES:
        frame = store.table(name).drop(columns=RUN_SPECIFIC.get(name, []))
        keys = [c for c in ("unit_id", "task", "edge", "node", "absolute", "fraction",
                            "n_requested", "component",
                            "layer", "head") if c in frame]
        out[name] = frame.sort_values(keys).reset_index(drop=True)
    return out


def assert_same_rows(left: Path, right: Path) -> None:
    """Assert that two stores hold exactly the same rows (run-specific columns aside)."""
    a, b = stored_rows(left), stored_rows(right)
    for name in TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)
