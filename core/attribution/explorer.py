"""Seeing the journeys: common paths, a Sankey of the first steps, time and touches to convert, roles.

Everything is computed from the PathTable (and the Journeys for times) with numpy, once per run, and
stored with it as small JSON-ready tables, so the page only draws.

Roles, per channel, over converting journeys (weighted by their conversions): *solo* when the journey
has one touch; otherwise *introducer* (holds the first touch), *closer* (holds the last touch) and
*assister* (appears between them; once per journey).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.pathtable import DISPLAY_SEPARATOR, Journeys, PathTable

TOP_PATHS = 25
SANKEY_STEPS = 4
SANKEY_NODES = 8  # channels per step; the rest are grouped as "other"
OTHER, CONVERTED, NOT_CONVERTED = "(other)", "(converted)", "(no conversion)"
_DAY_NS = 86_400 * 10**9
TIME_BINS = [(0, 1, "under 1 day"), (1, 2, "1 day"), (2, 4, "2-3 days"), (4, 8, "4-7 days"), (8, 15, "8-14 days"),
             (15, 31, "15-30 days"), (31, 10**9, "31+ days")]


def top_paths(paths: PathTable, n: int = TOP_PATHS, converting: bool = True) -> pd.DataFrame:
    """The ``n`` paths with the most conversions (or, ``converting=False``, the most non-converting journeys)."""
    weight = paths.conversions if converting else paths.nulls
    idx = np.flatnonzero(weight > 0)
    idx = idx[np.lexsort((idx, -weight[idx]))][:n]
    names = np.asarray(paths.channels, dtype=object)
    text = [DISPLAY_SEPARATOR.join(names[paths.codes[paths.offsets[i] : paths.offsets[i + 1]]]) for i in idx.tolist()]
    journeys = paths.conversions[idx] + paths.nulls[idx]
    return pd.DataFrame({"path": text, "touches": paths.lengths[idx], "conversions": paths.conversions[idx],
                         "non_converting": paths.nulls[idx], "journeys": journeys,
                         "conversion_rate": np.divide(paths.conversions[idx], journeys, out=np.zeros(idx.shape[0]), where=journeys > 0),
                         "value": paths.value[idx]})


def sankey(paths: PathTable, steps: int = SANKEY_STEPS, nodes_per_step: int = SANKEY_NODES) -> dict:
    """Nodes and links of the journeys' first ``steps`` touches, then how they ended.

    Step ``s`` holds the channel of each journey's touch ``s`` (its ``nodes_per_step`` busiest channels,
    the rest as "(other)"); a journey with fewer touches moves on to "(converted)" / "(no conversion)"
    after its last touch (its conversions to one, its non-converting journeys to the other). Weights are
    journeys. Returns JSON-ready ``{"nodes": [...], "links": [...], "steps": steps}``.
    """
    n, n_ch = paths.n_paths, paths.n_channels
    other, conv_node, null_node = n_ch, n_ch + 1, n_ch + 2
    k = n_ch + 3
    names = [*paths.channels, OTHER, CONVERTED, NOT_CONVERTED]
    conv, nulls = paths.conversions, paths.nulls
    weight = conv + nulls
    padded = paths.padded(-1)
    links: dict[tuple[int, int, int], float] = {}

    def label(s: int) -> np.ndarray:
        """Channel node of every path at step s (-1 when the path has no touch s)."""
        if s >= padded.shape[1]:
            return np.full(n, -1, dtype=np.int64)
        codes = padded[:, s].astype(np.int64)
        on = codes >= 0
        w = np.bincount(codes[on], weights=weight[on], minlength=n_ch)
        top = np.argsort(-w, kind="stable")[:nodes_per_step]
        keep = np.zeros(n_ch, dtype=bool)
        keep[top[w[top] > 0]] = True
        return np.where(on, np.where(keep[np.clip(codes, 0, None)], codes, other), -1)

    src = label(0)
    for s in range(steps):
        nxt = label(s + 1) if s + 1 < steps else np.full(n, -1, dtype=np.int64)
        live = src >= 0
        cont = live & (nxt >= 0)
        ends = live & (nxt < 0)
        for mask, dst, w in ((cont, nxt, weight), (ends, np.full(n, conv_node), conv), (ends, np.full(n, null_node), nulls)):
            sel = mask & (w > 0)
            if not sel.any():
                continue
            sums = np.bincount(src[sel] * k + dst[sel], weights=w[sel], minlength=k * k)
            for key in np.flatnonzero(sums > 0).tolist():
                links[(s, key // k, key % k)] = links.get((s, key // k, key % k), 0.0) + float(sums[key])
        src = np.where(cont, nxt, -1)
    node_w: dict[tuple[int, int], float] = {}
    for (s, a, b), w in links.items():
        if s == 0:
            node_w[(0, a)] = node_w.get((0, a), 0.0) + w
        node_w[(s + 1, b)] = node_w.get((s + 1, b), 0.0) + w
    nodes = [{"step": s, "label": names[a], "weight": w} for (s, a), w in sorted(node_w.items(), key=lambda kv: (kv[0][0], -kv[1]))]
    link_rows = [{"step": s, "source": names[a], "target": names[b], "weight": w} for (s, a, b), w in sorted(links.items())]
    return {"nodes": nodes, "links": link_rows, "steps": steps}


def sankey_geometry(graph: dict, gap: float = 0.02, points: int = 24) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drawing coordinates for `sankey`: node rectangles and link bands (x, y_low, y_high per point).

    Nodes of a step are stacked top-down by weight on a 0..1 axis (with ``gap`` between them); each link
    is a band from its share of the source node to its share of the target node, eased with a smooth
    step so an Altair area per link draws the familiar ribbons.
    """
    nodes = pd.DataFrame(graph.get("nodes", []), columns=["step", "label", "weight"])
    links = pd.DataFrame(graph.get("links", []), columns=["step", "source", "target", "weight"])
    if nodes.empty:
        return (pd.DataFrame(columns=["step", "label", "weight", "y0", "y1"]),
                pd.DataFrame(columns=["link", "source", "target", "weight", "x", "y_low", "y_high"]))
    total = max(nodes.groupby("step")["weight"].sum().max(), 1e-12)
    pos: dict[tuple[int, str], list[float]] = {}
    rows = []
    for step, grp in nodes.groupby("step", sort=True):
        y = 1.0
        for r in grp.sort_values("weight", ascending=False).itertuples(index=False):
            h = (1 - gap * max(len(grp) - 1, 0)) * r.weight / total
            rows.append({"step": int(step), "label": r.label, "weight": float(r.weight), "y0": y - h, "y1": y})
            pos[(int(step), r.label)] = [y, y]  # running top for outgoing and incoming bands
            y -= h + gap
    node_frame = pd.DataFrame(rows)
    scale = {(r["step"], r["label"]): (1 - gap * max((node_frame["step"] == r["step"]).sum() - 1, 0)) / total for r in rows}
    t = np.linspace(0.0, 1.0, points)
    ease = t * t * (3 - 2 * t)
    ordered = links.sort_values(["step", "weight"], ascending=[True, False], ignore_index=True)
    n_links = len(ordered)
    src_top, dst_top = np.zeros(n_links), np.zeros(n_links)
    h_src, h_dst = np.zeros(n_links), np.zeros(n_links)
    for i, (s, a, b, w) in enumerate(ordered[["step", "source", "target", "weight"]].itertuples(index=False, name=None)):
        s = int(s)
        h_src[i], h_dst[i] = w * scale[(s, a)], w * scale[(s + 1, b)]
        src_top[i], dst_top[i] = pos[(s, a)][0], pos[(s + 1, b)][1]
        pos[(s, a)][0] -= h_src[i]
        pos[(s + 1, b)][1] -= h_dst[i]
    top = src_top[:, None] + (dst_top - src_top)[:, None] * ease[None, :]
    bottom = (src_top - h_src)[:, None] + ((dst_top - h_dst) - (src_top - h_src))[:, None] * ease[None, :]
    rep = np.repeat(np.arange(n_links), points)
    bands = pd.DataFrame({"link": rep, "source": ordered["source"].to_numpy()[rep], "target": ordered["target"].to_numpy()[rep],
                          "weight": ordered["weight"].to_numpy(dtype=float)[rep],
                          "x": (ordered["step"].to_numpy(dtype=float)[:, None] + t[None, :]).ravel(),
                          "y_low": bottom.ravel(), "y_high": top.ravel()})
    return node_frame, bands


def touches_to_convert(paths: PathTable) -> pd.DataFrame:
    """Conversions by the number of touches of their journey (12+ grouped)."""
    conv = paths.conversions
    t = np.minimum(paths.lengths, 12)
    c = np.bincount(t, weights=conv, minlength=13)[1:]
    out = pd.DataFrame({"touches": [str(i) for i in range(1, 12)] + ["12+"], "conversions": c})
    out["share"] = out["conversions"] / max(conv.sum(), 1e-12)
    return out


def time_to_convert(journeys: Journeys) -> pd.DataFrame:
    """Conversions by the time from a journey's first touch to its conversion (event-level data only)."""
    conv = journeys.conversions > 0
    lengths = journeys.lengths
    has = conv & (lengths > 0)
    first = journeys.touch_ts[journeys.offsets[:-1][has]]
    days = (journeys.end_ts[has] - first) / _DAY_NS
    w = journeys.conversions[has]
    out = []
    for lo, hi, label in TIME_BINS:
        sel = (days >= lo) & (days < hi)
        out.append({"time_to_convert": label, "conversions": float(w[sel].sum())})
    frame = pd.DataFrame(out)
    frame["share"] = frame["conversions"] / max(float(w.sum()), 1e-12)
    return frame


def time_to_convert_summary(journeys: Journeys) -> dict:
    """Median and 90th percentile days from first touch to conversion."""
    conv = (journeys.conversions > 0) & (journeys.lengths > 0)
    if not conv.any():
        return {"median_days": None, "p90_days": None}
    days = (journeys.end_ts[conv] - journeys.touch_ts[journeys.offsets[:-1][conv]]) / _DAY_NS
    return {"median_days": float(np.median(days)), "p90_days": float(np.percentile(days, 90))}


def roles(paths: PathTable) -> pd.DataFrame:
    """Per channel: conversions where it was introducer, assister, closer or the only touch (module docstring)."""
    n_ch = paths.n_channels
    conv = paths.conversions
    lengths = paths.lengths
    multi = lengths >= 2
    first = paths.codes[paths.offsets[:-1]]
    last = paths.codes[paths.offsets[1:] - 1]
    solo = np.bincount(first[~multi], weights=conv[~multi], minlength=n_ch)
    intro = np.bincount(first[multi], weights=conv[multi], minlength=n_ch)
    closer = np.bincount(last[multi], weights=conv[multi], minlength=n_ch)
    path = paths.path_index
    pos = np.arange(paths.codes.shape[0]) - paths.offsets[:-1][path]
    middle = (pos > 0) & (pos < lengths[path] - 1)
    key = np.unique(path[middle].astype(np.int64) * n_ch + paths.codes[middle])  # once per journey and channel
    assist = np.bincount(key % n_ch, weights=conv[key // n_ch], minlength=n_ch)
    frame = pd.DataFrame({"channel": list(paths.channels), "introducer": intro, "assister": assist, "closer": closer,
                          "solo": solo})
    involved = frame[["introducer", "assister", "closer", "solo"]].sum(axis=1)
    frame["main_role"] = frame[["introducer", "assister", "closer", "solo"]].idxmax(axis=1).where(involved > 0, "")
    return frame.sort_values(["introducer", "channel"], ascending=[False, True], ignore_index=True)


def explore(paths: PathTable, journeys: Journeys | None) -> dict:
    """Everything the path explorer shows, JSON-ready (stored with a run)."""
    out = {
        "top_converting": top_paths(paths, converting=True).to_dict(orient="list"),
        "top_non_converting": top_paths(paths, converting=False).to_dict(orient="list"),
        "sankey": sankey(paths),
        "touches_to_convert": touches_to_convert(paths).to_dict(orient="list"),
        "roles": roles(paths).to_dict(orient="list"),
    }
    if journeys is not None:
        out["time_to_convert"] = time_to_convert(journeys).to_dict(orient="list")
        out["time_to_convert_summary"] = time_to_convert_summary(journeys)
    return out
