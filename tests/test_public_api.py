"""The public surface is deliberate: every exported name resolves, and nothing else leaks."""

from __future__ import annotations

import subprocess
import sys

import circuit_atlas


def test_all_is_sorted_and_resolves():
    assert circuit_atlas.__all__ == sorted(circuit_atlas.__all__)
    for name in circuit_atlas.__all__:
        assert getattr(circuit_atlas, name) is not None, name


def test_public_surface():
    assert set(circuit_atlas.__all__) == {
        "CircuitEvaluator",
        "CircuitResult",
        "Graph",
        "ModelSpec",
        "PatchableGPTNeoX",
        "PatchableModel",
        "ResultsStore",
        "TaskDataset",
        "attribute",
        "behaviour",
        "evaluate_circuits",
        "find_circuit",
        "ioi_algorithm",
        "list_tasks",
        "load_model",
        "load_study",
        "make_dataset",
        "resolve_schedule",
        "run_study",
        "write_report",
    }


def test_import_is_cheap_and_silent():
    code = "import sys, circuit_atlas; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert out.stderr == ""
