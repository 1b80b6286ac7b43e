"""Shapley attribution against full enumeration, plus symmetry, dummy, efficiency and the channel limit."""

from __future__ import annotations

import itertools
from math import factorial

import numpy as np
import pytest

from core.attribution.shapley import MAX_SHAPLEY_CHANNELS, shapley_rate, shapley_zhao
from core.pathtable import PathTable, PathTableError

from .conftest import random_table


def _sets(table: PathTable):
    """(frozenset of channel names, conversions, nulls, value) per path."""
    out = []
    for i in range(table.n_paths):
        names = frozenset(table.channels[c] for c in table.codes[table.offsets[i] : table.offsets[i + 1]])
        out.append((names, table.conversions[i], table.nulls[i], table.value[i]))
    return out


def _shapley(players, v):
    """Textbook Shapley values by enumerating every coalition without the player."""
    n = len(players)
    phi = {}
    for p in players:
        others = [q for q in players if q != p]
        total = 0.0
        for r in range(n):
            for s in itertools.combinations(others, r):
                s = frozenset(s)
                weight = factorial(len(s)) * factorial(n - len(s) - 1) / factorial(n)
                total += weight * (v(s | {p}) - v(s))
        phi[p] = total
    return phi


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_zhao_matches_enumeration(seed):
    table = random_table(seed, n_paths=30, n_channels=5)
    rows = _sets(table)
    phi = _shapley(list(table.channels), lambda s: sum(c for t, c, _, _ in rows if t <= s))
    phi_v = _shapley(list(table.channels), lambda s: sum(v for t, _, _, v in rows if t <= s))
    res = shapley_zhao(table)
    np.testing.assert_allclose(res.conversions, [phi[c] for c in table.channels], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(res.value, [phi_v[c] for c in table.channels], rtol=1e-10, atol=1e-10)


def _rate_reference(table: PathTable):
    rows = _sets(table)
    conv, jour, val = {}, {}, {}
    for t, c, nu, v in rows:
        conv[t] = conv.get(t, 0) + c
        jour[t] = jour.get(t, 0) + c + nu
        val[t] = val.get(t, 0) + v

    def v(s):
        if not s:
            return 0.0
        if jour.get(s, 0) > 0:
            return conv[s] / jour[s]
        c = sum(conv[t] for t in conv if t <= s)
        j = sum(jour[t] for t in jour if t <= s)
        return c / j if j > 0 else 0.0

    credit = dict.fromkeys(table.channels, 0.0)
    credit_v = dict.fromkeys(table.channels, 0.0)
    for t in conv:
        if conv[t] <= 0:
            continue
        phi = _shapley(sorted(t), v)
        # no channel earns negative credit: negative values count as 0, the positive ones scaled to add up to v(t)
        positive = {p: max(x, 0.0) for p, x in phi.items()}
        scale = min(1.0, v(t) / sum(positive.values())) if sum(positive.values()) > 0 else 1.0
        for p, x in positive.items():
            credit[p] += conv[t] * x * scale / v(t)
            credit_v[p] += val[t] * x * scale / v(t)
    return credit, credit_v, _shapley(list(table.channels), v)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_rate_matches_enumeration(seed):
    # Few paths over 5 channels: many coalitions are unobserved, so the documented rule is exercised.
    table = random_table(seed, n_paths=12, n_channels=5, max_len=4)
    credit, credit_v, phi = _rate_reference(table)
    res = shapley_rate(table)
    assert (~res.observed[1:]).sum() > 0
    assert np.all(res.conversions >= 0) and res.conversions.sum() == pytest.approx(table.total_conversions, rel=1e-12)
    np.testing.assert_allclose(res.conversions, [credit[c] for c in table.channels], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(res.value, [credit_v[c] for c in table.channels], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(res.shapley_values, [phi[c] for c in table.channels], rtol=1e-9, atol=1e-12)


def test_rate_split_sums_to_game_value():
    table = random_table(3, n_paths=60, n_channels=6)
    res = shapley_rate(table)
    for mask in (0b1, 0b101, 0b111011, 0b111111):
        assert res.split(mask).sum() == pytest.approx(res.game[mask], abs=1e-12)


def test_symmetric_channels_get_equal_credit():
    # Swapping a and b maps the data onto itself.
    table = PathTable.from_strings(
        ["a > c", "b > c", "a > b", "b > a", "a", "b", "c"], [3, 3, 5, 5, 1, 1, 2], [30, 30, 50, 50, 10, 10, 20], [7, 7, 5, 5, 9, 9, 8]
    )
    a, b = table.channels.index("a"), table.channels.index("b")
    for res in (shapley_zhao(table), shapley_rate(table)):
        assert res.conversions[a] == pytest.approx(res.conversions[b], rel=1e-12)
        assert res.value[a] == pytest.approx(res.value[b], rel=1e-12)


def test_dummy_channel_gets_zero_incremental_credit():
    # Every channel set over {a, b, c} appears with and without d at exactly the same conversion rate.
    rng = np.random.default_rng(5)
    paths, conv, nulls = [], [], []
    for r in range(1, 4):
        for s in itertools.combinations("abc", r):
            rate_conv, rate_null = int(rng.integers(1, 6)), int(rng.integers(1, 9))
            for extra, scale in (((), 1), (("d",), 3)):
                paths.append(" > ".join(s + extra))
                conv.append(rate_conv * scale)
                nulls.append(rate_null * scale)
    paths.append("d")
    conv.append(0)
    nulls.append(12)  # d alone never converts: v({d}) = 0 = v(empty)
    table = PathTable.from_strings(paths, conv, np.array(conv) * 2.5, nulls)
    d = table.channels.index("d")
    res = shapley_rate(table)
    assert res.conversions[d] == pytest.approx(0.0, abs=1e-9)
    assert res.value[d] == pytest.approx(0.0, abs=1e-9)
    assert res.shapley_values[d] == pytest.approx(0.0, abs=1e-12)
    assert res.conversions.sum() == pytest.approx(table.total_conversions, rel=1e-12)
    # The coalition-conversions game does reward d for being on converting journeys.
    assert shapley_zhao(table).conversions[d] > 0


@pytest.mark.parametrize("n_channels", [12, 16])
def test_efficiency(n_channels):
    table = random_table(11, n_paths=3000, n_channels=n_channels, max_len=8)
    for res in (shapley_zhao(table), shapley_rate(table)):
        assert abs(res.conversions.sum() - table.total_conversions) <= 1e-9 * table.total_conversions
        assert abs(res.value.sum() - table.total_value) <= 1e-9 * table.total_value


def test_channel_limit():
    names = [f"ch{i:02d}" for i in range(MAX_SHAPLEY_CHANNELS + 1)]
    too_many = PathTable.from_strings([" > ".join(names), names[0]], [1, 1])
    with pytest.raises(PathTableError, match=f"at most {MAX_SHAPLEY_CHANNELS} channels"):
        shapley_rate(too_many)
    with pytest.raises(PathTableError, match="at most"):
        shapley_zhao(too_many)
    ok = PathTable.from_strings([" > ".join(names[:-1]), names[0]], [1, 1], None, [1, 1])
    res = shapley_rate(ok)
    assert res.conversions.sum() == pytest.approx(2.0, rel=1e-9)


def test_deterministic():
    table = random_table(9, n_paths=200, n_channels=8)
    assert np.array_equal(shapley_rate(table).conversions, shapley_rate(table).conversions)
