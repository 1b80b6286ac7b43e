"""Markov attribution against an independent dense absorbing-chain implementation, and its conventions."""

from __future__ import annotations

import numpy as np
import pytest

from core.attribution.markov import build_structure, markov_attribution
from core.pathtable import PathTable, PathTableError

from .conftest import random_table


def _dense_reference(table: PathTable, k: int):
    """Removal effects and credit written from the definition with Python loops and dense numpy algebra."""
    paths = []
    for i in range(table.n_paths):
        seq = [table.channels[c] for c in table.codes[table.offsets[i] : table.offsets[i + 1]]]
        if len(seq) <= k:
            states = [tuple(seq)]
        else:
            states = [tuple(seq[j : j + k]) for j in range(len(seq) - k + 1)]
        collapsed = [s for j, s in enumerate(states) if j == 0 or s != states[j - 1]]
        paths.append((collapsed, table.conversions[i], table.nulls[i], table.value[i]))
    labels = sorted({s for p in paths for s in p[0]})
    idx = {s: i for i, s in enumerate(labels)}
    n = len(labels)
    start, conv, null, val = n, n + 1, n + 2, n + 3  # val is a bookkeeping column, not a state
    counts = np.zeros((n + 3, n + 4))
    for states, c, nu, v in paths:
        w = c + nu
        seq = [start] + [idx[s] for s in states]
        for a, b in zip(seq[:-1], seq[1:]):
            counts[a, b] += w
        counts[seq[-1], conv] += c
        counts[seq[-1], null] += nu
        counts[seq[-1], val] += v

    def absorb(removed: str | None):
        t = counts[: n + 1, : n + 3].copy()
        if removed is not None:
            for s, i in idx.items():
                if removed in s:
                    t[:, null] += t[:, i]
                    t[:, i] = 0.0
        out = t.sum(axis=1, keepdims=True)
        p = np.divide(t, out, out=np.zeros_like(t), where=out > 0)
        q = p[: n + 1, : n + 1]
        fundamental = np.linalg.inv(np.eye(n + 1) - q)
        conv_rate = p[:, conv]
        mean_val = np.divide(counts[: n + 1, val], counts[: n + 1, conv], out=np.zeros(n + 1), where=counts[: n + 1, conv] > 0)
        return fundamental[start] @ conv_rate, fundamental[start] @ (conv_rate * mean_val)

    p, ev = absorb(None)
    re = np.array([1 - absorb(c)[0] / p for c in table.channels])
    re_v = np.array([1 - absorb(c)[1] / ev for c in table.channels])
    return p, re, re_v, re / re.sum() * table.total_conversions, re_v / re_v.sum() * table.total_value


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_dense_absorbing_chain(order, seed):
    table = random_table(seed, n_paths=50, n_channels=4, max_len=6)
    res = markov_attribution(table, order)
    p, re, re_v, credit, credit_v = _dense_reference(table, order)
    assert res.p_conversion == pytest.approx(p, rel=1e-10)
    np.testing.assert_allclose(res.removal_effects, re, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.value_removal_effects, re_v, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.conversions, credit, rtol=1e-9)
    np.testing.assert_allclose(res.value, credit_v, rtol=1e-9)
    assert res.conversions.sum() == pytest.approx(table.total_conversions, rel=1e-12)
    assert res.value.sum() == pytest.approx(table.total_value, rel=1e-12)


def test_known_answer_two_channels():
    # a always sits on the only converting path; b only on a non-converting one.
    table = PathTable.from_strings(["a", "b", "a > b"], [2, 0, 0], [10, 0, 0], [2, 4, 0])
    res = markov_attribution(table)
    assert res.p_conversion == pytest.approx(2 / 8)
    assert res.removal_effects.tolist() == pytest.approx([1.0, 0.0])
    assert res.conversions.tolist() == pytest.approx([2.0, 0.0])
    assert res.value.tolist() == pytest.approx([10.0, 0.0])


def test_order_conventions():
    table = PathTable.from_strings(["a > a > b", "c"], [1, 1], None, [1, 0])
    s1 = build_structure(table, 1)
    assert sorted(s1.state_labels()) == ["a", "b", "c"]
    # a > a > b collapses to a > b at order 1: start -> a -> b, no a -> a self loop.
    pairs = {(int(f), int(t)) for f, t in zip(s1.edge_from, s1.edge_to)}
    a, b = s1.state_labels().index("a"), s1.state_labels().index("b")
    assert (a, a) not in pairs and (a, b) in pairs
    s2 = build_structure(table, 2)
    # Order 2: windows of two touches; a path shorter than the order is a single state.
    assert sorted(s2.state_labels()) == ["a > a", "a > b", "c"]
    s3 = build_structure(PathTable.from_strings(["a > b > a > b > c"], [1]), 3)
    assert sorted(s3.state_labels()) == ["a > b > a", "a > b > c", "b > a > b"]


def test_higher_order_sees_sequence_effects():
    # b converts only after a; order 1 cannot tell, order 2 can.
    table = PathTable.from_strings(["a > b", "c > b", "a", "c"], [10, 0, 0, 0], None, [0, 10, 10, 10])
    r1, r2 = markov_attribution(table, 1), markov_attribution(table, 2)
    a, c = table.channels.index("a"), table.channels.index("c")
    assert r1.removal_effects[c] > 0
    assert r2.removal_effects[c] == pytest.approx(0.0, abs=1e-12)
    assert r2.removal_effects[a] == pytest.approx(1.0)


def test_deterministic_and_transition_rows_sum_to_one():
    table = random_table(7, n_paths=80, n_channels=6)
    r1, r2 = markov_attribution(table, 2), markov_attribution(table, 2)
    assert np.array_equal(r1.conversions, r2.conversions) and np.array_equal(r1.removal_effects, r2.removal_effects)
    tm = r1.transition_matrix()
    sums = np.bincount(tm["from"], weights=tm["probability"], minlength=len(tm["states"]))
    transient = sums[: r1.structure.n_states + 1]  # states and (start)
    np.testing.assert_allclose(transient[transient > 0], 1.0)
    assert tm["states"][-3:] == ["(start)", "(conversion)", "(null)"]


def test_bad_input():
    with pytest.raises(ValueError, match="order"):
        markov_attribution(random_table(0), 5)
    with pytest.raises(ValueError, match="order"):
        markov_attribution(random_table(0), 0)
    with pytest.raises(PathTableError, match="negative"):
        markov_attribution(PathTable.from_strings(["a"], [-1]))
    with pytest.raises(PathTableError, match="no channels"):
        markov_attribution(PathTable((), np.array([0, 0]), np.array([], dtype=np.int32), np.ones(1), np.zeros(1), np.zeros(1)))
    with pytest.raises(PathTableError, match="empty"):
        markov_attribution(PathTable((), np.array([0]), np.array([], dtype=np.int32), np.zeros(0), np.zeros(0), np.zeros(0)))


def test_iterative_solver_matches_dense_reference(monkeypatch):
    """Large chains use the residual-checked iterative solve; force it on a small table and compare."""
    import core.attribution.markov as markov_module

    table = random_table(5, n_paths=120, n_channels=5, max_len=7)
    monkeypatch.setattr(markov_module, "DIRECT_MAX_STATES", 0)
    res = markov_attribution(table, 3)
    p, re, re_v, credit, credit_v = _dense_reference(table, 3)
    assert res.p_conversion == pytest.approx(p, rel=1e-12)
    np.testing.assert_allclose(res.removal_effects, re, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(res.conversions, credit, rtol=1e-10)
    np.testing.assert_allclose(res.value, credit_v, rtol=1e-10)


def test_batched_solver_falls_back_when_it_does_not_converge(monkeypatch):
    """If the batched iteration stops short, every system is solved on its own (LU/GMRES) and still agrees."""
    import core.attribution.markov as markov_module

    table = random_table(6, n_paths=80, n_channels=4, max_len=6)
    monkeypatch.setattr(markov_module, "DIRECT_MAX_STATES", 0)
    monkeypatch.setattr(markov_module, "_MAX_SWEEPS", 1)
    res = markov_attribution(table, 2)
    assert res.solution is None  # the batched solve gave up
    p, re, _, credit, _ = _dense_reference(table, 2)
    assert res.p_conversion == pytest.approx(p, rel=1e-10)
    np.testing.assert_allclose(res.removal_effects, re, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.conversions, credit, rtol=1e-9)


def test_bootstrap_refit_reuses_structure_and_warm_start(monkeypatch):
    """A refit from the same state graph, warm-started from the fit, equals a cold exact solve."""
    import core.attribution.markov as markov_module
    from core.attribution.markov import BOOTSTRAP_RTOL, solve

    monkeypatch.setattr(markov_module, "DIRECT_MAX_STATES", 0)
    table = random_table(7, n_paths=150, n_channels=5, max_len=7)
    structure = build_structure(table, 3)
    fit = solve(structure, table.conversions, table.value, table.nulls)
    assert fit.solution is not None
    rng = np.random.default_rng(0)
    conv = rng.poisson(table.conversions).astype(float)
    conv[0] += 1
    nulls = rng.poisson(table.nulls).astype(float)
    value = conv * 3.0
    warm = solve(structure, conv, value, nulls, x0=fit.solution, rtol=BOOTSTRAP_RTOL)
    cold = markov_attribution(PathTable(table.channels, table.offsets, table.codes, conv, value, nulls), 3)
    np.testing.assert_allclose(warm.removal_effects, cold.removal_effects, rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(warm.conversions, cold.conversions, rtol=1e-8)
