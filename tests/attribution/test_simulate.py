"""The known-truth simulator: its truth is the textbook Shapley split of each journey's true probability."""

from __future__ import annotations

import itertools
from math import factorial

import numpy as np
import pytest

from core.attribution.simulate import simulate


def _p(path, keep, effects, roles, baseline, variant):
    seq = [c for c in path if c in keep]
    if not seq:
        return baseline
    fail = 1 - baseline
    if variant == "order_free":
        for c in set(seq):
            for j in range(seq.count(c)):
                fail *= 1 - effects[c] / 2**j
        return 1 - fail
    active = [c for c in seq if effects[c] > 0]
    first, last = (active[0], active[-1]) if active else (None, None)
    for c in set(seq):
        m = 1.0
        if roles[c] == "introducer":
            m = 2.0 if c == first else 0.4
        elif roles[c] == "closer":
            m = 2.0 if c == last else 0.4
        fail *= 1 - min(effects[c] * m, 0.95)
    return 1 - fail


def _truth_of_path(path, sim, variant):
    players = sorted(set(path))
    n = len(players)
    out = {}
    for p in players:
        others = [q for q in players if q != p]
        tot = 0.0
        for r in range(n):
            for s in itertools.combinations(others, r):
                w = factorial(r) * factorial(n - r - 1) / factorial(n)
                args = (sim.effects, sim.roles, sim.baseline, variant)
                tot += w * (_p(path, set(s) | {p}, *args) - _p(path, set(s), *args))
        out[p] = tot
    return out


@pytest.mark.parametrize("variant", ["order_free", "order_dependent"])
def test_truth_is_the_textbook_shapley_split(variant):
    sim = simulate(5, 3_000, variant=variant, seed=6)
    t = sim.paths
    truth = np.zeros(5)
    expected = np.zeros(5)
    for i in range(t.n_paths):
        path = t.codes[t.offsets[i] : t.offsets[i + 1]].tolist()
        p = _p(path, set(path), sim.effects, sim.roles, sim.baseline, variant)
        for c, phi in _truth_of_path(path, sim, variant).items():
            truth[c] += phi * t.conversions[i] / p
            expected[c] += phi * (t.conversions[i] + t.nulls[i])
    np.testing.assert_allclose(sim.truth, truth, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sim.expected_truth, expected, rtol=1e-9, atol=1e-9)
    zero = t.channels.index(sim.zero_channel)
    assert sim.truth[zero] == 0.0 and sim.effects[zero] == 0.0
    assert sim.truth.sum() < t.total_conversions  # the baseline's conversions belong to no channel


def test_variants_and_seeds():
    a, b = simulate(8, 20_000, seed=1), simulate(8, 20_000, seed=1)
    np.testing.assert_array_equal(a.paths.conversions, b.paths.conversions)
    assert (a.paths.conversions + a.paths.nulls).sum() == 20_000
    dep = simulate(8, 20_000, variant="order_dependent", seed=1)
    assert {"introducer", "closer"} <= set(dep.roles)
    with pytest.raises(ValueError, match="variant"):
        simulate(8, 100, variant="sideways")
