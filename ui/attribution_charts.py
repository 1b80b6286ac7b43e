"""Altair charts of the Attribution page's accuracy sections (pure functions of core's frames; no Streamlit)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from core.attribution.explorer import sankey_geometry


def calibration_chart(calibration: pd.DataFrame) -> alt.LayerChart:
    """Predicted vs observed conversion rate per decile of prediction, one line per model, with the diagonal."""
    frame = calibration.assign(label=calibration["model"] + " · " + calibration["variant"].str.replace(" — chosen", ""))
    top = float(max(frame["predicted"].max(), frame["observed"].max(), 1e-6)) * 1.05
    diagonal = alt.Chart(pd.DataFrame({"x": [0.0, top], "y": [0.0, top]})).mark_line(strokeDash=[4, 4], color="gray").encode(
        x="x:Q", y="y:Q")
    lines = alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("predicted:Q", title="Predicted conversion rate", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, top])),
        y=alt.Y("observed:Q", title="Observed conversion rate (held out)", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, top])),
        color=alt.Color("label:N", title="Model"),
        tooltip=["label", "bin", alt.Tooltip("predicted:Q", format=".2%"), alt.Tooltip("observed:Q", format=".2%"),
                 alt.Tooltip("journeys:Q", format=",.0f")],
    )
    return alt.layer(diagonal, lines)


def sankey_chart(graph: dict) -> alt.LayerChart:
    """The first steps of the journeys as ribbons between stacked channel nodes."""
    nodes, bands = sankey_geometry(graph)
    if nodes.empty:
        return alt.layer(alt.Chart(pd.DataFrame({"x": []})).mark_point())
    x_axis = alt.Axis(title="Step (touch number; then how the journey ended)", tickMinStep=1, format="d", grid=False)
    ribbons = alt.Chart(bands).mark_area(opacity=0.35, interpolate="monotone").encode(
        x=alt.X("x:Q", axis=x_axis, scale=alt.Scale(nice=False)),
        y=alt.Y("y_low:Q", axis=None), y2="y_high:Q", detail="link:N",
        color=alt.Color("source:N", title="From", legend=None),
        tooltip=["source", "target", alt.Tooltip("weight:Q", title="journeys", format=",.0f")],
    )
    nodes = nodes.assign(x0=nodes["step"] - 0.03, x1=nodes["step"] + 0.03, mid=(nodes["y0"] + nodes["y1"]) / 2)
    rects = alt.Chart(nodes).mark_rect(color="#444").encode(
        x="x0:Q", x2="x1:Q", y="y0:Q", y2="y1:Q",
        tooltip=["label", "step", alt.Tooltip("weight:Q", title="journeys", format=",.0f")])
    labels = alt.Chart(nodes[nodes["y1"] - nodes["y0"] > 0.015]).mark_text(align="left", dx=6, fontSize=11).encode(
        x="x1:Q", y="mid:Q", text="label:N")
    return alt.layer(ribbons, rects, labels).properties(height=420)


def bar_chart(frame: pd.DataFrame, x: str, y: str, x_title: str, y_title: str, sort=None) -> alt.Chart:
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X(f"{x}:N", title=x_title, sort=sort), y=alt.Y(f"{y}:Q", title=y_title),
        tooltip=[x, alt.Tooltip(f"{y}:Q", format=",.2f"), alt.Tooltip("share:Q", format=".1%")] if "share" in frame else [x, y],
    )


def roles_chart(roles: pd.DataFrame) -> alt.Chart:
    """Stacked conversions per channel by role (introducer, assister, closer, solo)."""
    long = roles.melt(id_vars=["channel"], value_vars=["introducer", "assister", "closer", "solo"], var_name="role",
                      value_name="conversions")
    return alt.Chart(long).mark_bar().encode(
        y=alt.Y("channel:N", title="Channel", sort="-x"), x=alt.X("conversions:Q", title="Converting journeys", stack="normalize",
                                                              axis=alt.Axis(format="%")),
        color=alt.Color("role:N", sort=["introducer", "assister", "closer", "solo"], title="Role"),
        tooltip=["channel", "role", alt.Tooltip("conversions:Q", format=",.1f")],
    )


def lift_chart(comparison: pd.DataFrame) -> alt.FacetChart:
    """Each model's credit in the test period against the test's interval, one panel row per test."""
    base = comparison.assign(test_label="#" + comparison["test"].astype(str) + " " + comparison["channel"] + " · " + comparison["period"])
    band = alt.Chart().mark_rect(opacity=0.15, color="#2a9d55").encode(x="min(low):Q", x2="max(high):Q")
    rule = alt.Chart().mark_rule(color="#2a9d55").encode(x="mean(test_result):Q")
    points = alt.Chart().mark_point(filled=True, size=70).encode(
        x=alt.X("credit_in_period:Q", title="Incremental conversions in the test period"),
        y=alt.Y("model:N", title=None), color=alt.Color("within_interval:N", title="Within the test's interval",
                                                        scale=alt.Scale(domain=[True, False], range=["#2a9d55", "#d1495b"])),
        tooltip=["model", alt.Tooltip("credit_in_period:Q", format=",.1f"), alt.Tooltip("test_result:Q", format=",.1f"),
                 alt.Tooltip("low:Q", format=",.1f"), alt.Tooltip("high:Q", format=",.1f")],
    )
    return alt.layer(band, rule, points, data=base).facet(
        row=alt.Row("test_label:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left")))


def calibrated_chart(frame: pd.DataFrame, model: str) -> alt.Chart:
    long = frame.melt(id_vars=["channel", "tested"], value_vars=["model_conversions", "calibrated_conversions"],
                      var_name="credit", value_name="conversions")
    long["credit"] = long["credit"].map({"model_conversions": model, "calibrated_conversions": "calibrated"})
    return alt.Chart(long).mark_bar().encode(
        x=alt.X("channel:N", title="Channel"), xOffset="credit:N", y=alt.Y("conversions:Q", title="Credited conversions"),
        color=alt.Color("credit:N", title="Credit"), tooltip=["channel", "credit", "tested", alt.Tooltip("conversions:Q", format=",.2f")],
    )
