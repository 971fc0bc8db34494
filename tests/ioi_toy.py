"""A hand-built IOI circuit whose heads have known roles (shared by the algorithm tests).

Prompts are ``BOS IO f S1 f f S2 f END`` (ABBA only; names are tokens 2..9, fillers 10..47) and
the corruption puts the IO name at S2. Three layers of two heads, no MLPs; d_model = 64 split
into blocks (see ``_DIMS``). Every embedding and head output sums to zero over d_model, so each
LayerNorm only rescales.

- ``a0.h0`` *position head*: uniform attention, reads the BOS flag: writes 1/(i + 1) into POS.
- ``a0.h1`` *decoy*: uniform attention over every position, copies the name tokens into the
  inhibition block: a token-count S-inhibition signal that no position swap can change, so it
  is an S-inhibition candidate that fails the "token same, position opposite" test.
- ``a1.h0`` *planted S-inhibition head*: attends to the names, later positions more (it reads
  POS), and copies them into the inhibition block: S2 and S1 carry most weight, so the signal
  depends on which name stands where.
- ``a1.h1``: does nothing.
- ``a2.h0`` *planted name mover*: at END attends to the names the inhibition block does not
  inhibit and copies them onto their unembedding (copy score 1, negative direct effect).
- ``a2.h1`` *anti-mover*: the same OV map, but attends to the inhibited name: copy score 1 and
  a positive direct effect, so not a name mover.
"""

from __future__ import annotations

import torch

from circuit_atlas.models.neox import PatchableGPTNeoX
from circuit_atlas.models.spec import ModelSpec
from circuit_atlas.tasks.base import TaskDataset

V = 48
NAMES = tuple(range(2, 10))
FILLERS = tuple(range(10, V))
P = 9
END = P - 1
# d_model blocks
TOK = 0  # 8 dims: name identity
INH = 8  # 8 dims: inhibition signal
OUT = 16  # 8 dims: name-mover output, read by the unembedding
FILL = 24  # 38 dims: filler identity
NAME, BOS, POS, P1, P2 = 62, 63, 64, 65, 66
D = 68  # (one spare dim; d_head = 34)
BETA = 3.0
ALPHA = 20.0


def model(*, backup: bool = False) -> PatchableGPTNeoX:
    """The hand-built model (float64): 3 layers, or 4 with ``backup``.

    Args:
        backup: Add layer 3 whose head ``a3.h0`` is a *backup name mover*: it attends like the
            name mover but away from the names the residual stream already predicts (its query
            also reads the OUT block), so while ``a2.h0`` works it attends to S, and when
            ``a2.h0`` is ablated it takes over and attends to IO. ``a3.h1`` does nothing.
    """
    spec = ModelSpec(architecture="gpt_neox", n_layers=4 if backup else 3, n_heads=2, d_model=D,
                     d_mlp=4,
                     vocab_size=V, rotary_pct=0.0)  # fmt: skip
    m = PatchableGPTNeoX(spec).double()  # (zero weights: no MLP, no biases)
    e = spec.d_head
    with torch.no_grad():
        # Embeddings: one identity dim + one flag dim, P1 = +10, P2 balances to a zero sum.
        for t in range(V):
            m.W_E[t, P1] = 10.0
            m.W_E[t, P2] = -12.0
        m.W_E[0, BOS] = 2.0
        for i, t in enumerate(NAMES):
            m.W_E[t, TOK + i] = 1.0
            m.W_E[t, NAME] = 1.0
        for i, t in enumerate(FILLERS):
            m.W_E[t, FILL + i] = 2.0
        m.W_E[1, FILL + len(FILLERS) - 1] = 2.0
        # Unembedding: names read OUT; P2 pushes half the fillers up and half down, so that a
        # head writing nothing a name can read ranks the names in the middle, for either sign.
        for i, t in enumerate(NAMES):
            m.W_U[OUT + i, t] = 2.0
        half = len(FILLERS) // 2
        for t in FILLERS[:half]:
            m.W_U[P2, t] = -1.0
        for t in FILLERS[half:]:
            m.W_U[P2, t] = 1.0
        l0, l1, l2 = m.layers[:3]

        def write(lw, head, src_dim, dst_dim, scale, value_slot):
            lw.W_qkv[2, head, src_dim, value_slot] = 1.0
            lw.W_O[head, value_slot, dst_dim] += scale
            lw.W_O[head, value_slot, P2] -= scale

        # a0.h0: position head (uniform attention, value = BOS flag)
        write(l0, 0, BOS, POS, 20.0, 0)
        l0.b_qkv[2, 0, 0, 0] = 0.5  # a value everywhere: the OV output is never exactly 0
        # a0.h1: decoy, uniform attention, value = name identity -> INH
        for i in range(len(NAMES)):
            write(l0, 1, TOK + i, INH + i, 24.0, i)
        # a1.h0: planted S2I; query constant (from P1), key = 12*NAME - beta*POS
        l1.W_qkv[0, 0, P1, e - 1] = 1.0
        l1.W_qkv[1, 0, NAME, e - 1] = 60.0
        l1.W_qkv[1, 0, POS, e - 1] = -BETA
        for i in range(len(NAMES)):
            write(l1, 0, TOK + i, INH + i, 8.0, i)
        # a1.h1: a constant output (P1 - P2), the same on every prompt
        l1.b_qkv[2, 1, 0, 0] = 1.0
        l1.W_O[1, 0, P1] = 1.0
        l1.W_O[1, 0, P2] = -1.0
        # a2.h0 name mover: score = 10*NAME - alpha * <INH_end, TOK_key>
        # a2.h1 anti-mover: score = 10*NAME + alpha * <INH_end, TOK_key>
        for head, sign in ((0, -1.0), (1, 1.0)):
            l2.W_qkv[0, head, P1, e - 1] = 1.0
            l2.W_qkv[1, head, NAME, e - 1] = 60.0
            for i in range(len(NAMES)):
                l2.W_qkv[0, head, INH + i, i] = sign * ALPHA
                l2.W_qkv[1, head, TOK + i, i] = 8.0
                write(l2, head, TOK + i, OUT + i, 12.0 if head == 0 else 3.0, i)
        if backup:
            l3 = m.layers[3]
            l3.W_qkv[0, 0, P1, e - 1] = 1.0
            l3.W_qkv[1, 0, NAME, e - 1] = 60.0
            for i in range(len(NAMES)):
                l3.W_qkv[0, 0, INH + i, i] = -ALPHA
                l3.W_qkv[0, 0, OUT + i, i] = -3 * ALPHA
                l3.W_qkv[1, 0, TOK + i, i] = 8.0
                write(l3, 0, TOK + i, OUT + i, 6.0, i)
    return m


def data(n: int = 12, seed: int = 0) -> TaskDataset:
    """ABBA prompts ``BOS IO f S1 f f S2 f END``; the corruption puts IO at S2."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.tensor(FILLERS)[torch.randint(0, len(FILLERS), (n, P), generator=g)]
    clean[:, 0] = 0
    pairs = torch.stack([torch.randperm(len(NAMES), generator=g)[:2] for _ in range(n)])
    io, s = torch.tensor(NAMES)[pairs[:, 0]], torch.tensor(NAMES)[pairs[:, 1]]
    clean[:, 1], clean[:, 3], clean[:, 6] = io, s, s
    corrupted = clean.clone()
    corrupted[:, 6] = io
    info = {"io_pos": (1,) * n, "s1_pos": (3,) * n, "s2_pos": (6,) * n, "end_pos": (END,) * n}
    return TaskDataset("ioi", clean, corrupted, torch.full((n,), P), io, s, "logit_diff",
                       info=info)  # fmt: skip
