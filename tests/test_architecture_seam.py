"""The architecture seam: nothing outside ``models/`` touches an adapter's private parts.

An AST scan of ``src/circuit_atlas``: outside ``circuit_atlas/models/`` no module imports a
private name (leading underscore) from ``circuit_atlas.models``, and no attribute access on an
object other than ``self``/``cls`` uses a private name of a patchable model class (its own
private methods and attributes, ``torch.nn.Module``'s, and the GPT-NeoX-only blocks that
components used to call) or a raw weight of the patchable layout (``W_qkv``, ``W_O``, ``lnf_w``,
``W_U``, ...). Components read the model through
:class:`circuit_atlas.models.protocol.PatchableModel` only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import circuit_atlas
from circuit_atlas.models.adapters import ADAPTERS
from circuit_atlas.models.patchable import PatchableTransformer
from circuit_atlas.models.protocol import PatchableModel

SRC = Path(circuit_atlas.__file__).parent
MODELS = SRC / "models"


def _private_model_names() -> set[str]:
    classes = {PatchableTransformer, *(a.model_class for a in ADAPTERS.values())}
    names = {n for cls in classes for n in dir(cls) if n.startswith("_") and not n.startswith("__")}
    # Instance attributes set in __init__ and the layer's weights are public by role only.
    names |= {"_rms", "_act", "_modules", "_parameters", "_buffers"}
    # The GPT-NeoX-only building blocks that components used to call (issue 13).
    names |= {"_qkv", "_attention", "_attend", "_mlp", "_rotary", "_rotate", "_ln"}
    return names


PRIVATE = _private_model_names()

RAW_WEIGHTS = frozenset({
    "W_E", "W_pos", "W_U", "W_qkv", "b_qkv", "W_O", "b_O", "W_in", "b_in", "W_gate", "b_gate",
    "W_out", "b_out", "ln1_w", "ln1_b", "ln2_w", "ln2_b", "lnf_w", "lnf_b", "inv_freq",
})
"""Weight attributes of the patchable layout: read through the protocol's accessors by role."""


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "circuit_atlas.models"
        ):
            found += [
                f"{path.name}:{node.lineno} imports {a.name} from {node.module}"
                for a in node.names
                if a.name.startswith("_")
            ]
        if isinstance(node, ast.Attribute) and (node.attr in PRIVATE or node.attr in RAW_WEIGHTS):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append(f"{path.name}:{node.lineno} uses .{node.attr}")
    return found


def test_the_scan_knows_the_private_names():
    assert {"_norm", "_run_patched", "_rms", "_parameters"} <= PRIVATE


def test_detector_flags_private_accesses(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from circuit_atlas.models.patchable import _Layer\n"
        "def f(model, x):\n    return model._norm(x, 1, 0) + model._run_patched\n"
        "def g(model, x):\n    return model._qkv(0, x) @ model.layers[0].W_O + model.lnf_w\n"
    )
    found = _violations(bad)
    assert len(found) == 6, found
    good = tmp_path / "good.py"
    good.write_text("def f(self, model, x):\n    return self._norm(x) + model.final_norm(x)\n")
    assert _violations(good) == []


@pytest.mark.parametrize(
    "path",
    sorted(p for p in SRC.rglob("*.py") if MODELS not in p.parents),
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_no_module_outside_models_touches_private_model_names(path):
    assert _violations(path) == []


def test_protocol_lists_only_public_names():
    members = [n for n in vars(PatchableModel) if not n.startswith("_")]
    assert {"qkv", "attention", "mlp", "final_norm", "unembed", "ov", "qk", "embed", "walk"} <= set(
        members
    )
    for name in members:
        assert hasattr(PatchableTransformer, name) or name in PatchableModel.__annotations__, name
