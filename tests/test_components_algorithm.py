"""The IOI algorithm decomposition on heads whose roles are planted by hand (tests/ioi_toy.py),
pct_effect's properties, the role rules, fingerprints and self-repair."""

from __future__ import annotations

import math

import pytest
import torch

from circuit_atlas.components.algorithm import (
    FINGERPRINT_ROLES,
    ROLES,
    AlgorithmSettings,
    Fingerprint,
    HeadScores,
    algorithm_tables,
    direct_roles,
    fingerprint,
    fingerprint_similarity,
    greater_than_node_roles,
    ioi_algorithm,
    ioi_node_roles,
    node_attributions,
    pct_effect,
    primary_roles,
    self_repair,
    tertiary_heads,
)
from circuit_atlas.components.copy_score import copy_scores
from circuit_atlas.components.hooked import trace
from circuit_atlas.errors import AlgorithmError, TaskDataError, UnknownNameError
from tests import ioi_toy as toy

NMH, ANTI, S2I, DECOY = (2, 0), (2, 1), (1, 0), (0, 1)


def _scores(model, data) -> HeadScores:
    """Real copy scores of the hand-built heads; no CSPA (NaN), flat induction scores."""
    shape = (model.spec.n_layers, model.spec.n_heads)
    return HeadScores(copy=copy_scores(model, data).double(),
                      negative_copy=copy_scores(model, data, negative=True).double(),
                      cspa=torch.full(shape, math.nan), induction=torch.zeros(shape),
                      duplicate_token=torch.zeros(shape))  # fmt: skip


@pytest.fixture(scope="module")
def planted():
    model, data = toy.model(), toy.data()
    scores = _scores(model, data)
    algo = ioi_algorithm(model, data, scores=scores, settings=AlgorithmSettings(denominator="all"))
    return model, data, scores, algo


def _ld(logits, data):
    rows = torch.arange(len(data))
    end = logits[rows, data.metric_positions]
    return (end[rows, data.answer] - end[rows, data.wrong]).mean()


def test_planted_name_mover_is_found_and_carries_its_share(planted):
    model, data, scores, algo = planted
    assert algo.gap_defined and algo.clean_logit_diff > 0 > algo.corrupted_logit_diff
    # Independent direct effect of the last-layer name mover: its output at END replaced by the
    # corrupted run's, everything else clean (for a last-layer head that is the path patch).
    clean = trace(model, data.clean, record=("resid", "heads", "logits"))
    corrupt = trace(model, data.corrupted, record=("heads", "logits"))
    rows, ends = torch.arange(len(data)), data.metric_positions
    final = clean.resid[-1].clone()
    final[rows, ends] += (corrupt.heads[NMH][rows, ends] - clean.heads[NMH][rows, ends])
    gap = _ld(clean.logits, data) - _ld(corrupt.logits, data)
    expected = (_ld(model.unembed(final), data) - _ld(clean.logits, data)) / gap
    torch.testing.assert_close(algo.direct_effect[NMH], expected.double(), rtol=1e-9, atol=1e-12)
    assert scores.copy[NMH] == 1.0 and algo.direct_effect[NMH] < -1.0
    assert algo.heads("name_mover") == (NMH,)
    # Its share of the summed direct effect of every head (the anti-mover pulls the other way,
    # so the name mover carries more than 100 %).
    panel = algo.panels["direct"]
    total = float(algo.direct_effect.sum())
    assert panel.heads == (NMH,) and panel.reason is None
    assert panel.value == pytest.approx(100 * float(algo.direct_effect[NMH]) / total)
    assert panel.value > 100
    # With the circuit {name mover, S2I head} as denominator the share is relative to those.
    circuit = ioi_algorithm(model, data, scores=scores, circuit=[NMH, S2I], run_self_repair=False)
    expected = 100 * float(algo.direct_effect[NMH]) / float(algo.direct_effect[NMH]
                                                           + algo.direct_effect[S2I])
    assert circuit.panels["direct"].value == pytest.approx(expected)
    assert circuit.panels["direct"].n_denominator == 2


def test_head_with_positive_effect_is_not_a_name_mover(planted):
    _, _, scores, algo = planted
    assert scores.copy[ANTI] == 1.0  # it copies names as well as the name mover does ...
    assert algo.direct_effect[ANTI] > 0.1  # ... but its direct effect helps the corruption
    assert not algo.roles["name_mover"][ANTI]
    assert not algo.roles["negative_name_mover"][ANTI]  # negative copy score 0
    assert algo.primary_roles()[2] == ["name_mover", None]


def test_planted_s_inhibition_head_found_and_decoy_rejected(planted):
    _, _, _, algo = planted
    s2i = algo.s_inhibition
    assert s2i.name_movers == (NMH,)
    # Both write the inhibition signal that the name mover's query reads: both are candidates.
    assert algo.s_inhibition_effect[S2I] < -0.5 and algo.s_inhibition_effect[DECOY] < -0.5
    assert s2i.candidate[S2I] and s2i.candidate[DECOY]
    # The planted head's signal depends on where the names stand: swapping IO and S1 moves it.
    assert s2i.logit_diff_delta[S2I] < -0.05 and s2i.io_attention_delta[S2I] < -0.05
    assert s2i.s1_attention_delta[S2I] > 0.01
    # The decoy only counts name tokens: the swap cannot change it.
    assert abs(float(s2i.logit_diff_delta[DECOY])) < 1e-12
    assert algo.heads("s_inhibition") == (S2I,)
    panel = algo.panels["s_inhibition"]
    assert panel.value == pytest.approx(100 * float(algo.s_inhibition_effect[S2I])
                                        / float(algo.s_inhibition_effect.sum()))  # fmt: skip
    # Panel D reads the pure S2I head's values; flat induction scores: no tertiary head.
    assert not algo.roles["tertiary"].any()
    assert torch.isfinite(algo.tertiary_effect).all()
    assert algo.tertiary_effect[2:].eq(0).all()  # heads at or after the receiver: exactly 0


def test_reused_s_inhibition_result_is_not_recomputed(planted, monkeypatch):
    model, data, scores, algo = planted
    import circuit_atlas.components.algorithm.decompose as decompose

    def fail(*args, **kwargs):
        raise AssertionError("s_inhibition_heads should not run")

    monkeypatch.setattr(decompose, "s_inhibition_heads", fail)
    again = ioi_algorithm(model, data, scores=scores, s_inhibition=algo.s_inhibition,
                          settings=AlgorithmSettings(denominator="all"), run_self_repair=False)
    assert again.panels["s_inhibition"].value == algo.panels["s_inhibition"].value


def test_undefined_without_gap_circuit_or_name_movers(planted):
    model, data, scores, _ = planted
    same = toy.data()
    same = type(same)(**{**same.__dict__, "corrupted": same.clean.clone()})
    flat = ioi_algorithm(model, same, scores=scores, run_self_repair=False)
    assert not flat.gap_defined
    assert {p.reason for p in flat.panels.values()} == {"gap_too_small"}
    assert all(p.value is None for p in flat.panels.values())
    assert torch.isnan(flat.direct_effect).all() and not flat.roles["name_mover"].any()
    # Circuit denominator without a faithful circuit: undefined, not a number.
    no_circuit = ioi_algorithm(model, data, scores=scores, run_self_repair=False)
    assert no_circuit.panels["direct"].reason == "no_faithful_circuit"
    assert no_circuit.panels["direct"].value is None
    assert no_circuit.heads("name_mover") == (NMH,)  # the roles are still found
    # No name mover: panels C and D have no receiver.
    none = HeadScores(**{**scores.__dict__, "copy": torch.zeros_like(scores.copy)})
    movers = ioi_algorithm(model, data, scores=none, settings=AlgorithmSettings(denominator="all"),
                           run_self_repair=False)  # fmt: skip
    assert movers.panels["s_inhibition"].reason == "no_name_movers"
    assert movers.panels["tertiary"].reason == "no_name_movers"
    assert movers.panels["direct"].value == 0.0  # nothing identified: 0 %
    rows = algorithm_tables(movers, [])
    assert [r["reason"] for r in rows["algorithm"]] == [None, "no_name_movers", "no_name_movers"]
    assert all(r["pct_effect"] is None for r in rows["algorithm"][1:])


def test_non_ioi_data_and_bad_scores_raise(planted):
    model, data, scores, _ = planted
    bad = type(data)(**{**data.__dict__, "wrong": data.answer.clone()})
    with pytest.raises(TaskDataError, match="must contain the IO token"):
        ioi_algorithm(model, bad, scores=scores)
    small = HeadScores(*(torch.zeros(2, 2) for _ in range(5)))
    with pytest.raises(AlgorithmError, match=r"scores have shape \(2, 2\)"):
        ioi_algorithm(model, data, scores=small)
    with pytest.raises(AlgorithmError, match="HeadScores.cspa has shape"):
        HeadScores(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(3, 2), torch.zeros(2, 2),
                   torch.zeros(2, 2))  # fmt: skip


# --------------------------------------------------------------------------- pct_effect
EFFECTS = torch.tensor([[-0.5, -0.2, 0.1], [-0.3, 0.0, float("nan")]], dtype=torch.float64)
CIRCUIT = [(0, 0), (0, 1), (1, 0)]


def test_pct_effect_properties():
    empty = pct_effect([], EFFECTS, circuit=CIRCUIT)
    assert empty.value == 0.0 and empty.reason is None and empty.heads == ()
    whole = pct_effect(CIRCUIT, EFFECTS, circuit=CIRCUIT)
    assert whole.value == pytest.approx(100.0) and whole.n_denominator == 3
    assert whole.total == pytest.approx(-1.0)
    part = pct_effect([(0, 0)], EFFECTS, circuit=CIRCUIT)
    assert part.value == pytest.approx(50.0)
    # Identified heads outside the denominator are not counted; a mask works as well.
    mask = torch.zeros(2, 3, dtype=torch.bool)
    mask[0, 0] = mask[0, 2] = True
    assert pct_effect(mask, EFFECTS, circuit=CIRCUIT).value == pytest.approx(50.0)
    # Signs: a head with a positive effect lowers the % of the others under "all".
    everything = pct_effect([(0, 0), (0, 2)], EFFECTS, denominator="all")
    assert everything.value == pytest.approx(100 * (-0.5 + 0.1) / (-0.9))  # NaN counts 0
    assert pct_effect([(0, 0)], EFFECTS, denominator="all").value == pytest.approx(100 * 5 / 9)
    # Undefined rather than a number.
    assert pct_effect([(0, 0)], EFFECTS).reason == "no_faithful_circuit"
    tiny = pct_effect([(0, 0)], EFFECTS * 1e-4, circuit=CIRCUIT)
    assert tiny.value is None and tiny.reason == "total_effect_too_small"
    assert pct_effect([(0, 0)], EFFECTS * 1e-4, circuit=CIRCUIT, min_total=1e-6).value == \
        pytest.approx(50.0)  # fmt: skip
    with pytest.raises(UnknownNameError, match="unknown denominator 'nodes'"):
        pct_effect([], EFFECTS, denominator="nodes")
    with pytest.raises(AlgorithmError, match=r"identified head \(2, 0\) is outside"):
        pct_effect([(2, 0)], EFFECTS, denominator="all")
    with pytest.raises(AlgorithmError, match="mask must be a bool tensor of shape"):
        pct_effect(torch.zeros(2, 2, dtype=torch.bool), EFFECTS, denominator="all")


def test_direct_role_rules_and_thresholds():
    # one row per case: (copy, negative copy, CSPA, effect)
    cases = torch.tensor([
        [0.11, 0.0, math.nan, -0.1],   # name mover
        [0.09, 0.0, math.nan, -0.1],   # copy below 10 %
        [0.90, 0.0, math.nan, 0.2],    # positive effect: not a name mover
        [0.0, 0.2, math.nan, 0.05],    # negative name mover (effect != 0) ...
        [0.0, 0.2, math.nan, 0.0],     # ... but not with no effect at all
        [0.0, 0.0, 0.20, -0.02],       # copy suppression
        [0.0, 0.0, 0.20, -0.005],      # effect < 0 but above the -0.01 CSPA gate
        [0.0, 0.0, 0.20, 0.3],         # negative copy suppression
        [0.0, 0.0, 0.05, -0.5],        # CSPA below 0.10
    ], dtype=torch.float64)  # fmt: skip
    grid = lambda i: cases[:, i].view(-1, 1)  # noqa: E731
    scores = HeadScores(grid(0), grid(1), grid(2), grid(0) * 0, grid(0) * 0)
    roles = direct_roles(grid(3), scores)
    got = {r: roles[r].flatten().nonzero().flatten().tolist() for r in roles}
    assert got == {"name_mover": [0], "negative_name_mover": [3], "copy_suppression": [5],
                   "negative_copy_suppression": [7]}  # fmt: skip
    ungated = direct_roles(grid(3), scores, AlgorithmSettings(cspa_gate=None))
    assert ungated["copy_suppression"].flatten().nonzero().flatten().tolist() == [5, 6]
    strict = direct_roles(grid(3), scores, AlgorithmSettings(name_mover_threshold=0.5))
    assert not strict["name_mover"].any()


def test_tertiary_rule_and_primary_roles():
    effect = torch.tensor([[-0.01, -0.01, -0.0005, 0.2]], dtype=torch.float64)
    induction = torch.tensor([[0.9, 0.1, 0.9, 0.9]], dtype=torch.float64)
    duplicate = torch.tensor([[0.0, 0.8, 0.0, 0.0]], dtype=torch.float64)
    scores = HeadScores(effect * 0, effect * 0, effect * 0, induction, duplicate)
    assert tertiary_heads(effect, scores).tolist() == [[True, True, False, False]]
    masks = {r: torch.zeros(1, 4, dtype=torch.bool) for r in ROLES}
    masks["s_inhibition"][0, :2] = True
    masks["copy_suppression"][0, 1] = True
    masks["tertiary"][0, 3] = True
    assert primary_roles(masks) == [["s_inhibition", "copy_suppression", None, "tertiary"]]


def test_settings_are_validated():
    with pytest.raises(UnknownNameError, match="unknown denominator"):
        AlgorithmSettings(denominator="nodes")
    with pytest.raises(AlgorithmError, match="s_inhibition_threshold must be finite"):
        AlgorithmSettings(s_inhibition_threshold=math.nan)
    with pytest.raises(AlgorithmError, match="min_total must be > 0"):
        AlgorithmSettings(min_total=0.0)


# --------------------------------------------------------------------------- fingerprints
def test_fingerprint_shares_and_similarity_properties(planted):
    _, _, _, algo = planted
    nodes = ["input", "a0.h0", "a0.h1", "a1.h0", "a1.h1", "a2.h0", "a2.h1", "m0", "m1", "m2",
             "logits"]  # fmt: skip
    roles = ioi_node_roles(algo.primary_roles(), nodes)
    assert roles["a2.h0"] == "name_mover" and roles["a1.h0"] == "s_inhibition"
    assert roles["m1"] == "mlp" and roles["a2.h1"] == "other" and "input" not in roles
    parents = ["input", "a2.h0", "a2.h0", "a1.h0", "a2.h1", "m0"]
    attr = node_attributions(parents, torch.tensor([5.0, -1.0, -2.0, 1.0, 0.5, -0.5]))
    assert attr == {"input": 5.0, "a2.h0": -3.0, "a1.h0": 1.0, "a2.h1": 0.5, "m0": -0.5}
    fp = fingerprint("ioi", roles, attr)
    shares = fp.as_dict()
    assert fp.roles == FINGERPRINT_ROLES["ioi"] and sum(fp.shares) == pytest.approx(1.0)
    assert shares["name_mover"] == pytest.approx(3 / 5) and shares["s_inhibition"] == 0.2
    assert shares["mlp"] == pytest.approx(0.1) and shares["other"] == pytest.approx(0.1)
    # similarity: 1 with itself, symmetric, drops when the roles swap their shares
    swapped = fingerprint("ioi", {**roles, "a2.h0": "s_inhibition", "a1.h0": "name_mover"}, attr)
    assert fingerprint_similarity(fp, fp) == pytest.approx(1.0)
    assert fingerprint_similarity(fp, swapped) == fingerprint_similarity(swapped, fp)
    assert fingerprint_similarity(fp, swapped) == pytest.approx(1 - 0.4)
    disjoint = {"mlp": 1.0}
    assert fingerprint_similarity({"name_mover": 1.0}, disjoint) == 0.0
    assert fingerprint_similarity(fp, Fingerprint.undefined("ioi", "gap_too_small")) is None
    zero = fingerprint("ioi", roles, {})
    assert zero.shares is None and zero.reason == "zero_attribution"
    with pytest.raises(UnknownNameError, match="not 'greater-than' fingerprint roles"):
        fingerprint("greater-than", roles, attr)
    with pytest.raises(AlgorithmError, match="2 edge parents but 1 edge scores"):
        node_attributions(["a", "b"], [1.0])


def test_greater_than_roles():
    successor = torch.tensor([[0.9, 0.0], [0.0, 0.05]], dtype=torch.float64)
    induction = torch.tensor([[0.9, 0.8], [0.0, 0.0]], dtype=torch.float64)
    zero = torch.zeros(2, 2, dtype=torch.float64)
    scores = HeadScores(zero, zero, zero, induction, zero, successor)
    roles = greater_than_node_roles(scores, ["input", "a0.h0", "a0.h1", "a1.h0", "a1.h1", "m0"])
    assert roles == {"a0.h0": "successor", "a0.h1": "induction", "a1.h0": "other",
                     "a1.h1": "other", "m0": "mlp"}  # fmt: skip
    high = greater_than_node_roles(scores, ["a0.h0"], successor_threshold=0.95)
    assert high == {"a0.h0": "induction"}
    with pytest.raises(AlgorithmError, match="needs successor scores"):
        greater_than_node_roles(HeadScores(zero, zero, zero, zero, zero), ["a0.h0"])


# --------------------------------------------------------------------------- self-repair
def test_self_repair_finds_the_planted_backup_head():
    model, data = toy.model(backup=True), toy.data()
    copy = torch.zeros(4, 2)
    copy[NMH] = 0.8  # only the planted name mover has copy score >= 75 %
    result = self_repair(model, data, copy)
    assert result.ablated == (NMH,) and result.reason is None
    assert result.ablated_dla[NMH] == 0.0 and result.dla_change[NMH] == 0.0
    # The backup head attended to S while the name mover worked, and takes over without it.
    assert result.clean_dla[3, 0] < 0.05 < 0.3 < result.ablated_dla[3, 0]
    assert result.backup_heads == ((3, 0),)
    assert result.clean_logit_diff > result.ablated_logit_diff > 0  # partial repair
    assert result.logit_diff_change_pct == pytest.approx(
        100 * (result.ablated_logit_diff - result.clean_logit_diff) / result.clean_logit_diff)
    # The direct logit attributions add up to the logit difference (no MLPs or biases here
    # reach the answer logits: the embedding and LayerNorm biases write nothing a name reads).
    assert float(result.clean_dla.sum()) == pytest.approx(result.clean_logit_diff, rel=1e-9)
    assert float(result.ablated_dla.sum()) == pytest.approx(result.ablated_logit_diff, rel=1e-9)
    rows = algorithm_tables(None, [])
    assert rows["self_repair"] == []


def test_self_repair_without_strong_name_movers_says_so(planted):
    model, data, scores, algo = planted
    weak = self_repair(model, data, scores.copy * 0.5)
    assert weak.ablated == () and weak.reason == "no_name_movers" and weak.logit_diff_change == 0
    assert not weak.backup.any()
    rows = algorithm_tables(algo, [])
    assert len(rows["self_repair"]) == 1
    assert rows["self_repair"][0]["n_ablated"] == 2  # both copying heads score 1.0 >= 0.75
    assert len(rows["self_repair_heads"]) == 6
    with pytest.raises(AlgorithmError, match=r"copy scores have shape \(2, 2\)"):
        self_repair(model, data, torch.zeros(2, 2))


def test_self_repair_reuses_the_direct_effect_sweeps_clean_run(planted):
    model, data, scores, algo = planted
    alone = self_repair(model, data, scores.copy)
    for name in ("clean_dla", "ablated_dla", "dla_change"):
        torch.testing.assert_close(getattr(algo.self_repair, name), getattr(alone, name),
                                   rtol=1e-10, atol=1e-12)  # fmt: skip
    assert algo.self_repair.clean_logit_diff == pytest.approx(alone.clean_logit_diff, rel=1e-12)


def test_sweeps_share_one_run_cache(planted):
    from circuit_atlas.components.path_sweep import RunCache

    model, data, scores, algo = planted
    cache = RunCache()
    settings = AlgorithmSettings(denominator="all")
    shared = ioi_algorithm(model, data, scores=scores, settings=settings, cache=cache)
    assert len(cache) == 3  # clean, corrupted and the IO/S1-swapped prompts, each run once
    for name in ("direct_effect", "s_inhibition_effect", "tertiary_effect"):
        torch.testing.assert_close(getattr(shared, name), getattr(algo, name), rtol=1e-12,
                                   atol=1e-14)  # fmt: skip
    ioi_algorithm(model, data, scores=scores, settings=settings, cache=cache,
                  s_inhibition=shared.s_inhibition)  # fmt: skip
    assert len(cache) == 3  # nothing new to run
