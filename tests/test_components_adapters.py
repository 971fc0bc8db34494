"""Every component score runs on every adapter and gives finite values (issue 13, part 2).

The GPT-NeoX values are pinned by the per-score tests; here each score family (induction,
duplicate and previous token, successor, copy and negative copy, copy suppression (CSPA),
S-inhibition) runs through :func:`circuit_atlas.components.score_heads` on a tiny random
GPT-NeoX, GPT-2, Llama, Qwen2 and OLMo with Pythia's tokenizer.
"""

from __future__ import annotations

import math

import pytest
import torch

from circuit_atlas.components import COMPONENTS, ComponentSettings, score_heads
from tests.tiny import ARCHS, arch_model, patchable

# Every head is a name mover (copy score > -1), so that S-inhibition has receivers.
SETTINGS = ComponentSettings(induction_seq_len=12, ioi_n=6, cspa_sequences=2,
                             cspa_mean_sequences=3, cspa_seq_len=12, cspa_min_layer=1,
                             name_mover_threshold=-1.0,
                             batch_size=8)  # fmt: skip


@pytest.mark.parametrize("arch", ARCHS)
def test_every_component_score_runs_and_is_finite(arch, pythia_tokenizer, data_dir):
    hf = arch_model(arch, layers=2, heads=4, d_model=32, vocab=50_304, scale=10.0,
                    dtype=torch.float32)  # fmt: skip
    model = patchable(hf)
    model.tokenizer = pythia_tokenizer
    # Weights scaled up: at initialisation scale a head's effect on 50k logits underflows
    # float32 and CSPA's 0/0 gives NaN.
    rows = score_heads(model, SETTINGS, data_dir=data_dir)
    assert {r["component"] for r in rows} == set(COMPONENTS)
    for component in COMPONENTS:
        mine = [r for r in rows if r["component"] == component]
        assert len(mine) == 2 * 4, component  # one row per head
        values = [r["score"] for r in mine if r["score"] is not None]
        assert values and all(math.isfinite(v) for v in values), (component, values)
