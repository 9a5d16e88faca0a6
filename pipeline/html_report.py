"""The standalone HTML journey report: one file, readable offline, built from the marts.

`write_report(con, path)` reads an open warehouse (select queries only) and writes
one HTML file with plotly's JavaScript and every number inlined, so it can be
mailed, archived with a run, or opened on a machine without network access: the
page loads nothing from anywhere (no CDN, no web font, no image).

What it shows, for everyone (`all=all`) and for every segment, switched by the
segment picker at the top:

- the run summary (meta.runs, meta.ingest_files, staging.quarantine);
- the segment's journeys by status (marts.segment_summary);
- a journey map: stages across, channels down, each cell with the journeys that
  reached the stage on the channel, the median wait before entering the stage and
  the drop-offs there (sql/report/journey_map.sql, from core.steps, core.journeys and
  core.customer_segments, within DuckDB's memory limit);
- the flow of journeys between nodes (a Sankey of marts.transitions: START and the
  terminals included, self-loops shown as repeat counts in the node labels);
- the top bottlenecks (marts.bottlenecks) and drop-offs (marts.drop_offs) with
  journeys behind them (via pipeline.report.summarize, as `journeys report`);
- the funnel (marts.funnel) and the segment comparison (marts.segment_comparison).

Charts are drawn when their segment is first shown (hidden plotly charts size
badly). The numbers a browser test compares with the warehouse are also in
`<script type="application/json" id="report-data">`.
"""

from __future__ import annotations

import glob
import html
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import duckdb
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from pipeline import lock, warehouse
from pipeline.report import duration, summarize, trim_findings

START = "START"
TERMINALS = ("CONVERTED", "DROPPED", "OPEN")
UNLABELLED = "unlabelled"
JOURNEY = "(journey)"  # segment_comparison's stage for the whole journey
TEMPLATE = "plotly_white"
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
COLOURS = {
    START: "#7b8794",
    "CONVERTED": "#2e7d32",
    "DROPPED": "#c62828",
    "OPEN": "#ef8f00",
    "node": "#1f6fb2",
}
LINK_COLOURS = {
    "CONVERTED": "rgba(46,125,50,0.40)",
    "DROPPED": "rgba(198,40,40,0.45)",
    "OPEN": "rgba(239,143,0,0.40)",
    "node": "rgba(31,111,178,0.25)",
}

# --- reading the warehouse -----------------------------------------------------------------------


def _rows(con: duckdb.DuckDBPyConnection, query: str, params: list | None = None) -> list[dict]:
    """A query's rows as dicts (fully fetched)."""
    result = con.execute(query, params or [])
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def _settings(con: duckdb.DuckDBPyConnection) -> dict[str, str | None]:
    return {r["key"]: r["value"] for r in _rows(con, "select key, value from meta.settings")}


def _level(con: duckdb.DuckDBPyConnection, settings: dict) -> str:
    """The graph level the marts were built at (meta.settings, else the one in marts.transitions)."""
    if settings.get("level"):
        return str(settings["level"])
    found = con.execute("select min(level) from marts.transitions").fetchall()
    return found[0][0] or "stage"


def _run_summary(con: duckdb.DuckDBPyConnection) -> dict:
    """The latest succeeded run, and the input rows of the latest succeeded run that read files."""
    runs = _rows(
        con,
        "select run_id, command, started_at, finished_at, as_of, package_version, config_hash, counts "
        "from meta.runs where status = 'succeeded' order by started_at desc limit 1",
    )
    run = runs[0] if runs else None
    if run is not None:
        run["counts"] = json.loads(run["counts"]) if isinstance(run["counts"], str) else (run["counts"] or {})
    ingest_runs = _rows(
        con,
        """
        select f.run_id, count(*) as files, sum(f.rows_read) as rows_read, sum(f.loaded) as loaded,
               sum(f.duplicates) as duplicates, sum(f.quarantined) as quarantined
        from meta.ingest_files as f
        join meta.runs as r using (run_id)
        where r.status = 'succeeded'
        group by f.run_id, r.started_at
        order by r.started_at desc
        limit 1
        """,
    )
    ingest = ingest_runs[0] if ingest_runs else None
    reasons = _rows(
        con,
        "select reason, count(*) as rows from staging.quarantine "
        "where ? is null or batch_id = ? group by reason order by rows desc, reason",
        [ingest["run_id"] if ingest else None] * 2,
    )
    return {"run": run, "ingest": ingest, "quarantine_by_reason": {r["reason"]: r["rows"] for r in reasons}}


def _journey_map_cells(con: duckdb.DuckDBPyConnection, scratch_dir: Path) -> list[dict]:
    """The journey map's cells (sql/report/journey_map.sql): per segment, stage and channel
    (and per segment and stage, channel None), the journeys reaching it, the entries into the
    stage with their median wait, and the drop-offs.

    The query keeps its intermediate tables (the window pass that finds the entries into each
    stage, and the journeys' cells it counts in two passes) in a scratch database file made in
    `scratch_dir` and deleted after, so it stays within DuckDB's memory limit on a read-only
    warehouse too."""
    scratch = Path(scratch_dir) / "report_scratch.duckdb"
    for name in warehouse.MACROS:  # exact_quantiles (temp macros: allowed on a read-only connection)
        warehouse.run_sql_file(con, name)
    con.execute("attach ? as report_scratch (read_only false)", [str(scratch)])
    try:
        with warehouse.unordered_writes(con):  # no row order to keep: less memory held while spilling
            warehouse.run_sql_file(con, "report/journey_map.sql")
        return _rows(con, "select * from _journey_map")
    finally:
        con.execute("drop table if exists _journey_map")
        con.execute("detach report_scratch")


def _collect(con: duckdb.DuckDBPyConnection, top: int, scratch_dir: Path, say: Callable[[str], None],
             findings: dict | None = None) -> dict:
    """Everything the page shows, read from the warehouse; `say` is told each part as it starts.
    `findings`: pipeline.report.summarize's result for at least `top`, when the caller has it."""
    say("report: the marts")
    settings = _settings(con)
    level = _level(con, settings)
    funnel_stages = [r["stage"] for r in _rows(con, "select stage from meta.funnel_stages order by stage_order")]
    segments = _rows(
        con,
        "select * from marts.segment_summary order by segment_key <> 'all', segment_key, segment_value",
    )
    transitions = _rows(
        con,
        "select segment_key, segment_value, from_node, to_node, transitions, journeys, probability, wait_p50_seconds "
        "from marts.transitions where level = ? order by segment_key, segment_value, from_node, to_node",
        [level],
    )
    stage_stats = _rows(
        con,
        "select segment_key, segment_value, node, journeys, visits, exits, drop_offs, drop_off_rate, repeats "
        "from marts.stage_stats where level = ?",
        [level],
    )
    funnel = _rows(con, "select * from marts.funnel order by segment_key, segment_value, stage_order")
    comparison = _rows(
        con,
        "select segment_key, segment_value, stage, metric, journeys, successes, rate, rest_journeys, rest_successes, "
        "rest_rate, lift, p_value, p_adjusted, is_significant, is_suppressed, rest_excludes "
        "from marts.segment_comparison order by segment_key, segment_value, stage, metric",
    )
    say("report: journey map (a pass over core.steps)")
    cells = _journey_map_cells(con, scratch_dir)
    if findings is None:
        say("report: bottlenecks and drop-offs")
        findings = summarize(con, top=top)
    else:
        findings = trim_findings(findings, top)
    return {
        "settings": settings,
        "level": level,
        "funnel_stages": funnel_stages,
        "segments": segments,
        "transitions": transitions,
        "stage_stats": stage_stats,
        "funnel": funnel,
        "comparison": comparison,
        "cells": cells,
        "findings": findings,
        **_run_summary(con),
    }


def _by_segment(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    grouped: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        grouped.setdefault((row["segment_key"], row["segment_value"]), []).append(row)
    return grouped


# --- formatting ----------------------------------------------------------------------------------


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _int(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _journey_time(seconds: float | None) -> str:
    """Time lost (journeys x wait) in journey-days, -hours or -minutes."""
    if seconds is None:
        return "–"
    for unit, size in (("journey-days", 86400), ("journey-hours", 3600), ("journey-minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:,.0f} {unit}"
    return f"{seconds:,.0f} journey-seconds"


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _node_order(nodes: set[str], stages: list[str]) -> list[str]:
    """START, the funnel's stages in order, other nodes by name (unlabelled last), then the terminals."""
    real = sorted(nodes - {START, *TERMINALS}, key=lambda n: (stages.index(n) if n in stages else len(stages), n == UNLABELLED, n))
    return [START] * (START in nodes) + real + [t for t in TERMINALS if t in nodes]


def _json_for_script(value: object) -> str:
    """JSON safe inside a <script> element (no `</script>`, no `<!--`)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _figure_json(fig: go.Figure) -> dict:
    """A figure as plain JSON, without its template (the page applies one shared template)."""
    spec = json.loads(pio.to_json(fig, validate=False))
    spec["layout"].pop("template", None)
    return {"data": spec["data"], "layout": spec["layout"]}


# --- charts --------------------------------------------------------------------------------------


def _sankey(edges: list[dict], stats: dict[str, dict], stages: list[str]) -> tuple[go.Figure, dict]:
    """The segment's flow: every edge but self-loops; a node's repeats (its self-loop) go in its label.
    Returns the figure and the node totals (moves in and out, self-loops left out)."""
    flows = [e for e in edges if e["from_node"] != e["to_node"]]
    loops = {e["from_node"]: e["transitions"] for e in edges if e["from_node"] == e["to_node"]}
    names = _node_order({e["from_node"] for e in edges} | {e["to_node"] for e in edges}, stages)
    index = {name: i for i, name in enumerate(names)}
    moves_in = {name: sum(e["transitions"] for e in flows if e["to_node"] == name) for name in names}
    moves_out = {name: sum(e["transitions"] for e in flows if e["from_node"] == name) for name in names}
    labels, colours, hover = [], [], []
    for name in names:
        repeats = loops.get(name, 0)
        labels.append(f"{name} ↻{repeats:,}" if repeats else name)
        colours.append(COLOURS.get(name, COLOURS["node"]))
        if name == START:
            hover.append(f"{moves_out[name]:,} journeys start")
        elif name in TERMINALS:
            hover.append(f"{moves_in[name]:,} journeys end {name.lower()}")
        else:
            s = stats.get(name, {})
            hover.append(
                f"{moves_in[name]:,} visits by {_int(s.get('journeys'))} journeys; {repeats:,} repeats inside visits; "
                f"{_int(s.get('drop_offs'))} journeys dropped off here"
            )
    fig = go.Figure(
        go.Sankey(
            arrangement="snap",
            valueformat=",d",
            node=dict(
                label=labels,
                color=colours,
                pad=18,
                thickness=18,
                line=dict(color="rgba(0,0,0,0.3)", width=0.5),
                customdata=[[n, h] for n, h in zip(names, hover)],
                hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]}<extra></extra>",
            ),
            link=dict(
                source=[index[e["from_node"]] for e in flows],
                target=[index[e["to_node"]] for e in flows],
                value=[e["transitions"] for e in flows],
                color=[LINK_COLOURS.get(e["to_node"], LINK_COLOURS["node"]) for e in flows],
                customdata=[[e["from_node"], e["to_node"], e["journeys"], duration(e["wait_p50_seconds"]), e["probability"]]
                            for e in flows],
                hovertemplate=("<b>%{customdata[0]} → %{customdata[1]}</b><br>%{value:,} moves by %{customdata[2]:,} journeys"
                               "<br>%{customdata[4]:.1%} of the moves out of %{customdata[0]}"
                               "<br>median wait %{customdata[3]}<extra></extra>"),
            ),
        )
    )
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=10, b=10), font=dict(size=12))
    totals = [{"node": n, "label": l, "in": moves_in[n], "out": moves_out[n], "repeats": loops.get(n, 0)}
              for n, l in zip(names, labels)]
    return fig, {"nodes": totals}


def _journey_map(cells: list[dict], stages: list[str], channels: list[str]) -> tuple[go.Figure, dict]:
    """Heatmap: stages across, channels down; colour = journeys, text = journeys, median wait, drop-offs."""
    by_cell = {(c["stage"], c["channel"]): c for c in cells if c["channel"] is not None}
    totals = {c["stage"]: c for c in cells if c["channel"] is None}
    z, text, custom = [], [], []
    for channel in channels:
        z_row, text_row, custom_row = [], [], []
        for stage in stages:
            c = by_cell.get((stage, channel))
            if c is None:
                z_row.append(None)
                text_row.append("")
                custom_row.append([0, "–", 0, 0])
                continue
            wait = duration(c["wait_p50_seconds"]) if c["entries"] else "–"
            z_row.append(c["journeys"])
            lines = [f"<b>{c['journeys']:,}</b> journeys", f"wait {wait}"]
            if c["drop_offs"]:
                lines.append(f"▼ {c['drop_offs']:,} dropped")
            text_row.append("<br>".join(lines))
            custom_row.append([c["journeys"], wait, c["drop_offs"], c["entries"]])
        z.append(z_row)
        text.append(text_row)
        custom.append(custom_row)
    ticks = [f"{s}<br>{totals[s]['journeys']:,} journeys" if s in totals else s for s in stages]
    fig = go.Figure(
        go.Heatmap(
            x=stages,
            y=channels,
            z=z,
            text=text,
            texttemplate="%{text}",
            textfont=dict(size=11),
            customdata=custom,
            colorscale="Blues",
            xgap=3,
            ygap=3,
            colorbar=dict(title=dict(text="journeys"), thickness=12),
            hovertemplate=("<b>%{x}</b> on <b>%{y}</b><br>%{customdata[0]:,} journeys reached the stage on this channel"
                           "<br>median wait before entering the stage: %{customdata[1]} (%{customdata[3]:,} entries)"
                           "<br>%{customdata[2]:,} dropped journeys ended here<extra></extra>"),
        )
    )
    fig.update_layout(
        height=150 + 78 * max(len(channels), 1),
        margin=dict(l=10, r=10, t=70, b=10),
        xaxis=dict(side="top", tickvals=stages, ticktext=ticks, showgrid=False),
        yaxis=dict(autorange="reversed", showgrid=False, title=dict(text="channel")),
    )
    data = {
        "stages": stages,
        "channels": channels,
        "cells": [{k: c[k] for k in ("stage", "channel", "journeys", "wait_p50_seconds", "drop_offs")} for c in cells],
    }
    return fig, data


def _funnel(rows: list[dict]) -> go.Figure:
    fig = go.Figure(
        go.Bar(
            x=[r["stage"] for r in rows],
            y=[r["journeys"] for r in rows],
            marker_color=COLOURS["node"],
            text=[f"{r['journeys']:,}<br>{_pct(r['conversion_from_start'])} of all" for r in rows],
            textposition="outside",
            cliponaxis=False,
            customdata=[[_pct(r["conversion_from_previous"]), _pct(r["conversion_from_start"])] for r in rows],
            hovertemplate=("<b>%{x}</b><br>%{y:,} journeys<br>%{customdata[0]} of the stage before"
                           "<br>%{customdata[1]} of all the segment's journeys<extra></extra>"),
        )
    )
    top = max([r["journeys"] for r in rows] or [1])
    fig.update_layout(
        height=360,
        margin=dict(l=10, r=10, t=30, b=10),
        yaxis=dict(title=dict(text="journeys"), range=[0, top * 1.2 or 1]),
        xaxis=dict(title=None),
    )
    return fig


# --- HTML ----------------------------------------------------------------------------------------

CSS = """
:root { --fg:#1f2933; --muted:#52606d; --line:#d9e2ec; --bg:#f5f7fa; --accent:#1f6fb2;
        --bad:#c62828; --good:#2e7d32; --warn:#ef8f00; }
* { box-sizing: border-box; }
body { margin:0; color:var(--fg); background:var(--bg);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header.top { background:#102a43; color:#fff; padding:18px 32px 14px; }
header.top h1 { margin:0 0 4px; font-size:22px; }
header.top p { margin:0; color:#bcccdc; }
main { max-width:1320px; margin:0 auto; padding:8px 32px 48px; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:14px 20px; margin:14px 0; }
.card h2 { margin:0 0 6px; font-size:17px; }
.card h3 { margin:14px 0 6px; font-size:15px; }
.note { color:var(--muted); margin:2px 0 10px; max-width:1000px; }
.picker { position:sticky; top:0; z-index:10; background:#fff; border-bottom:1px solid var(--line);
          padding:10px 32px; display:flex; gap:12px; align-items:center; box-shadow:0 1px 4px rgba(0,0,0,.06); }
.picker label { font-weight:600; }
.picker select { font-size:14px; padding:4px 8px; min-width:260px; }
.kpis { display:flex; flex-wrap:wrap; gap:10px; margin:8px 0 4px; }
.kpi { border:1px solid var(--line); border-radius:6px; padding:8px 14px; min-width:130px; background:#fbfcfd; }
.kpi .value { font-size:20px; font-weight:650; display:block; }
.kpi .label { color:var(--muted); font-size:12px; }
.kpi.good .value { color:var(--good); } .kpi.bad .value { color:var(--bad); } .kpi.warn .value { color:var(--warn); }
table { border-collapse:collapse; width:100%; margin:6px 0 10px; font-variant-numeric: tabular-nums; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--muted); font-weight:600; font-size:12px; }
td.num, th.num { text-align:right; white-space:nowrap; }
code.jid { font-size:11px; background:#eef2f7; padding:1px 4px; border-radius:3px; margin-right:3px;
           display:inline-block; }
.sig-up { color:var(--bad); font-weight:650; } .sig-down { color:var(--good); font-weight:650; }
.sig-up.conversion_rate { color:var(--good); } .sig-down.conversion_rate { color:var(--bad); }
.suppressed { color:var(--muted); font-style:italic; }
tr.chosen td { background:#fff8e1; }
.plot { width:100%; }
dl.run { display:grid; grid-template-columns: max-content 1fr; gap:3px 16px; margin:4px 0; }
dl.run dt { color:var(--muted); } dl.run dd { margin:0; }
footer { color:var(--muted); font-size:12px; max-width:1320px; margin:0 auto; padding:0 32px 32px; }
"""

JS = """
(function () {
  var figures = JSON.parse(document.getElementById('report-figures').textContent);
  var config = JSON.parse(document.getElementById('report-plot-config').textContent);
  function draw(block) {
    block.querySelectorAll('.plot[data-figure]').forEach(function (div) {
      if (div.getAttribute('data-drawn')) return;
      var spec = figures.figures[div.getAttribute('data-figure')];
      var layout = Object.assign({}, spec.layout, {template: figures.template});
      Plotly.newPlot(div, spec.data, layout, config);
      div.setAttribute('data-drawn', '1');
    });
  }
  function show(segment) {
    var shown = null;
    document.querySelectorAll('.segment-block').forEach(function (block) {
      var on = block.getAttribute('data-segment') === segment;
      block.hidden = !on;
      if (on) shown = block;
    });
    if (shown) draw(shown);
    document.body.setAttribute('data-shown-segment', segment);
  }
  var picker = document.getElementById('segment-picker');
  var wanted = decodeURIComponent((location.hash || '').replace(/^#/, ''));
  if (wanted && Array.prototype.some.call(picker.options, function (o) { return o.value === wanted; })) {
    picker.value = wanted;
  }
  picker.addEventListener('change', function () {
    show(picker.value);
    try { history.replaceState(null, '', '#' + encodeURIComponent(picker.value)); } catch (e) { /* file:// may refuse */ }
  });
  show(picker.value);
})();
"""


def _kpi(label: str, value: str, metric: str, raw: object, tone: str = "") -> str:
    return (f'<div class="kpi {tone}"><span class="value" data-metric="{_esc(metric)}" data-value="{_esc(raw)}">'
            f"{_esc(value)}</span><span class=\"label\">{_esc(label)}</span></div>")


def _run_html(data: dict, stages: list[str]) -> str:
    run, ingest, reasons = data["run"], data["ingest"], data["quarantine_by_reason"]
    everyone = next((s for s in data["segments"] if s["segment_key"] == "all"), None)
    items: list[tuple[str, str]] = []
    if run is None:
        items.append(("run", "no succeeded run is recorded in meta.runs: the numbers below are the warehouse as it is"))
    else:
        counts = run["counts"]
        build = counts.get("build", {})
        items.append(("run", f"{run['run_id']} (journeys {run['command']}, version {run['package_version']}), "
                             f"finished {_when(run['finished_at'])}"))
        items.append(("as of", f"{_when(run['as_of'])}: journeys silent for longer than the journey timeout before "
                               "this time are dropped, the others not yet converted are open"))
        if build.get("laws_checked") is not None:
            items.append(("flow laws", f"{build['laws_checked']} checked, all hold (the run publishes nothing otherwise)"))
        if build:
            items.append(("steps", f"{_int(build.get('steps'))} events placed in {_int(build.get('sessions'))} sessions; "
                                   f"{_int(build.get('unlabelled_steps'))} matched no stage rule (stage unlabelled)"))
    if ingest is not None:
        reason_text = ", ".join(f"{k} {v:,}" for k, v in reasons.items()) or "none"
        items.append(("events in", f"{ingest['rows_read']:,} rows read from {ingest['files']:,} files: "
                                   f"{ingest['loaded']:,} loaded, {ingest['duplicates']:,} exact duplicates skipped, "
                                   f"{ingest['quarantined']:,} quarantined (by reason: {reason_text})"))
    if everyone:
        items.append(("journeys", f"{everyone['journeys']:,} of {everyone['customers']:,} customers: "
                                  f"{everyone['converted']:,} converted, {everyone['dropped']:,} dropped, "
                                  f"{everyone['open']:,} open (not yet ended, never counted as drop-offs)"))
    items.append(("graph level", f"{data['level']}; funnel stages: {', '.join(stages)} "
                                 f"({data['settings'].get('funnel_mode') or 'strict'} mode)"))
    rows = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in items)
    return f'<section class="card" id="run-summary"><h2>Run summary</h2><dl class="run">{rows}</dl></section>'


def _ids(ids: list[str] | None) -> str:
    return "".join(f'<code class="jid">{_esc(i)}</code>' for i in ids or []) or "–"


def _bottlenecks_html(items: list[dict], top: int) -> str:
    if not items:
        return '<p class="note">No edge with a wait in this segment.</p>'
    rows = "".join(
        f'<tr data-rank="{b["rank"]}"><td class="num">{b["rank"]}</td><td>{_esc(b["from_node"])} → {_esc(b["to_node"])}</td>'
        f'<td class="num">{b["journeys"]:,}</td><td class="num">{_esc(duration(b["median_wait_seconds"]))}</td>'
        f'<td class="num">{_esc(_journey_time(b["time_lost_seconds"]))}</td><td>{_ids(b["journey_ids"])}</td></tr>'
        for b in items
    )
    return (f'<table class="bottlenecks"><thead><tr><th class="num">rank</th><th>from → to</th><th class="num">journeys</th>'
            f'<th class="num">median wait</th><th class="num">time lost</th><th>e.g. journeys (longest waits)</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _drop_offs_html(items: list[dict]) -> str:
    if not items:
        return '<p class="note">No dropped journey in this segment.</p>'
    rows = "".join(
        f'<tr data-rank="{d["rank"]}"><td class="num">{d["rank"]}</td><td>{_esc(d["node"])}</td>'
        f'<td class="num">{d["drop_offs"]:,}</td><td class="num">{d["journeys"]:,}</td>'
        f'<td class="num">{_pct(d["drop_off_rate"])}</td><td>{_ids(d["journey_ids"])}</td></tr>'
        for d in items
    )
    return (f'<table class="drop-offs"><thead><tr><th class="num">rank</th><th>node</th><th class="num">drop-offs</th>'
            f'<th class="num">journeys reaching</th><th class="num">drop-off rate</th><th>e.g. journeys</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _verdict(row: dict, min_journeys: str) -> str:
    if row["is_suppressed"]:
        return (f'<span class="suppressed">suppressed: fewer than {_esc(min_journeys)} journeys on one side '
                f'({row["journeys"]:,} vs {row["rest_journeys"]:,}), not compared</span>')
    if row["is_significant"]:
        up = (row["rate"] or 0) > (row["rest_rate"] or 0)
        return f'<span class="sig-{"up" if up else "down"} {_esc(row["metric"])}">{"▲ higher" if up else "▼ lower"}: significant</span>'
    return "no clear difference"


def _comparison_rows(rows: list[dict], min_journeys: str, chosen: tuple[str, str] | None, overview: bool) -> str:
    out = []
    for r in rows:
        suppressed = bool(r["is_suppressed"])
        rate = "suppressed" if suppressed else _pct(r["rate"])
        rest = "suppressed" if suppressed else _pct(r["rest_rate"])
        lift = "–" if suppressed or r["lift"] is None else f"×{r['lift']:.2f}"
        rest_note = f" (without {', '.join(r['rest_excludes'])})" if r["rest_excludes"] else ""
        cls = ' class="chosen"' if chosen == (r["segment_key"], r["segment_value"]) else ""
        first = (f"<td>{_esc(r['segment_key'])}={_esc(r['segment_value'])}</td>" if overview
                 else f"<td>{_esc(r['stage'])}</td>")
        out.append(
            f'<tr{cls} data-segment="{_esc(r["segment_key"])}={_esc(r["segment_value"])}" data-stage="{_esc(r["stage"])}" '
            f'data-metric="{_esc(r["metric"])}" data-suppressed="{str(suppressed).lower()}" '
            f'data-significant="{str(bool(r["is_significant"])).lower()}">'
            f"{first}<td>{_esc(r['metric'].replace('_', ' '))}</td>"
            f'<td class="num">{r["journeys"]:,}</td><td class="num">{rate}</td>'
            f'<td class="num">{rest}</td><td class="num">{r["rest_journeys"]:,}{_esc(rest_note)}</td>'
            f'<td class="num">{lift}</td><td class="num">{"suppressed" if suppressed else _p(r["p_adjusted"])}</td>'
            f"<td>{_verdict(r, min_journeys)}</td></tr>"
        )
    return "".join(out)


def _comparison_table(rows: list[dict], min_journeys: str, chosen: tuple[str, str] | None, overview: bool) -> str:
    head = "<th>segment</th>" if overview else "<th>stage reached</th>"
    return (f'<table class="comparison"><thead><tr>{head}<th>metric</th><th class="num">journeys</th>'
            f'<th class="num">rate</th><th class="num">rest rate</th><th class="num">rest journeys</th>'
            f'<th class="num">lift</th><th class="num">p adjusted</th><th>verdict</th></tr></thead>'
            f"<tbody>{_comparison_rows(rows, min_journeys, chosen, overview)}</tbody></table>")


def _comparison_html(segment: tuple[str, str], comparison: list[dict], stages: list[str], settings: dict) -> str:
    min_journeys = settings.get("min_journeys") or "30"
    alpha = settings.get("alpha") or "0.05"
    intro = (
        '<p class="note">Each segment value against the <em>rest</em> of its segment key (the other values, less those '
        "already shown to differ). Rates: <b>drop-off rate</b> = dropped journeys whose last step is at the stage / "
        "journeys reaching it (whole journey: dropped / all); <b>conversion rate</b> = converted / journeys. "
        f"<b>Lift</b> = rate / rest rate. <b>p adjusted</b>: two-proportion z-test, Benjamini-Hochberg over every "
        f"comparison of the run; significant when under {_esc(alpha)}. Cells with fewer than {_esc(min_journeys)} "
        "journeys on either side are <span class=\"suppressed\">suppressed</span>: not compared, never shown as a rate.</p>"
    )
    order = {s: i for i, s in enumerate([JOURNEY, *stages])}

    def sort_key(r: dict) -> tuple:
        return (r["segment_key"], r["segment_value"], order.get(r["stage"], len(order)), r["stage"], r["metric"])

    if segment == ("all", "all"):
        overview = sorted((r for r in comparison if r["stage"] == JOURNEY), key=sort_key)
        if not overview:
            return intro + '<p class="note">No segment columns are configured: nothing to compare.</p>'
        return (intro + "<h3>Whole journeys, every segment against the rest of its key</h3>"
                + _comparison_table(overview, min_journeys, None, overview=True))
    key, value = segment
    overview = sorted((r for r in comparison if r["segment_key"] == key and r["stage"] == JOURNEY), key=sort_key)
    mine = [r for r in comparison if (r["segment_key"], r["segment_value"]) == segment]
    trivial = [r for r in mine if not r["is_suppressed"] and r["rate"] == r["rest_rate"] and r["rate"] in (0.0, 1.0)]
    detail = sorted((r for r in mine if r not in trivial), key=sort_key)
    note = ""
    if trivial:
        note = (f'<p class="note">{len(trivial)} rows where both sides are 0% or both 100% by definition (e.g. every '
                "journey that reaches the goal stage is converted, and so never a drop-off) are left out.</p>")
    return (intro + f"<h3>Whole journeys, every value of {_esc(key)} (this one highlighted)</h3>"
            + _comparison_table(overview, min_journeys, segment, overview=True)
            + f"<h3>{_esc(key)}={_esc(value)} by stage reached</h3>"
            + _comparison_table(detail, min_journeys, None, overview=False) + note)


def _segment_html(i: int, seg: dict, parts: dict, top: int, hidden: bool) -> str:
    name = f"{seg['segment_key']}={seg['segment_value']}"
    journeys = seg["journeys"]
    kpis = "".join([
        _kpi("journeys", f"{journeys:,}", "journeys", journeys),
        _kpi("customers", f"{seg['customers']:,}", "customers", seg["customers"]),
        _kpi(f"converted ({_pct(seg['conversion_rate'])})", f"{seg['converted']:,}", "converted", seg["converted"], "good"),
        _kpi(f"dropped ({_pct(seg['drop_off_rate'])})", f"{seg['dropped']:,}", "dropped", seg["dropped"], "bad"),
        _kpi("open (not yet ended)", f"{seg['open']:,}", "open", seg["open"], "warn"),
        _kpi("median time to convert", duration(seg["time_to_convert_p50_seconds"]), "time_to_convert_p50_seconds",
             seg["time_to_convert_p50_seconds"]),
    ])
    return f"""
<div class="segment-block" id="segment-{i}" data-segment="{_esc(name)}" data-journeys="{journeys}"{' hidden' if hidden else ''}>
<section class="card">
  <h2>Segment {_esc(name)}</h2>
  <p class="note">Journeys of this segment's customers by status at the as-of time. Converted: reached the goal stage;
  dropped: ended without it and silent for longer than the journey timeout; open: still within the timeout.
  Time to convert: from a converted journey's first event to its first goal event (median).</p>
  <div class="kpis">{kpis}</div>
</section>
<section class="card">
  <h2>Journey map: stages across, channels down</h2>
  <p class="note">Each cell: <b>journeys</b> that reached the stage on that channel (a journey that uses several channels
  at a stage counts in each of them), the <b>median wait</b> before entering the stage (from the journey's previous
  event, at another stage, to its first event here, counted on the channel of that first event; a journey's first event
  has no wait), and <b>▼ dropped</b>: dropped journeys whose last event is there. Colour = journeys. The column
  headers give the journeys reaching the stage on any channel.</p>
  <div class="plot journey-map" id="map-{i}" data-figure="map-{i}"></div>
</section>
<section class="card">
  <h2>Flow of journeys</h2>
  <p class="note">Every journey starts at START and ends at CONVERTED, DROPPED (a drop-off) or OPEN. Band widths are
  moves between nodes (a journey that returns to a node moves there again); moves that repeat a node (e.g. two page views
  in a row) are not drawn: their number follows ↻ in the node's label. Hover a band for its journeys and median wait.</p>
  <div class="plot sankey" id="sankey-{i}" data-figure="sankey-{i}"></div>
</section>
<section class="card">
  <h2>Top {top} bottlenecks</h2>
  <p class="note">Where journeys wait: <b>time lost = journeys × median wait</b> on the edge, so a wait many journeys sit
  through outranks a longer one few do. A wait is the time from the last event at one node to the first event at the
  next (for a repeat, between the two repeated events).</p>
  {_bottlenecks_html(parts['bottlenecks'], top)}
  <h2>Top {top} drop-offs</h2>
  <p class="note">Where journeys are lost: a <b>drop-off</b> is a dropped journey whose last visit is the node;
  drop-off rate = drop-offs / journeys reaching the node. Open journeys are never drop-offs.</p>
  {_drop_offs_html(parts['drop_offs'])}
</section>
<section class="card">
  <h2>Funnel</h2>
  <p class="note">Journeys that reached each funnel stage {parts['funnel_rule']}; the percentage is of all the segment's
  journeys (hover for the share of the stage before).</p>
  <div class="plot funnel" id="funnel-{i}" data-figure="funnel-{i}"></div>
</section>
<section class="card">
  <h2>Segment comparison</h2>
  {parts['comparison']}
</section>
</div>"""


def _page(data: dict, top: int) -> str:
    stages = data["funnel_stages"]
    settings = data["settings"]
    segments = data["segments"]
    transitions = _by_segment(data["transitions"])
    stage_stats = _by_segment(data["stage_stats"])
    funnels = _by_segment(data["funnel"])
    cells = _by_segment(data["cells"])
    bottlenecks = _by_segment(data["findings"]["bottlenecks"])
    drop_offs = _by_segment(data["findings"]["drop_offs"])
    seen_stages = {c["stage"] for c in data["cells"]}
    map_stages = stages + sorted(seen_stages - set(stages) - {UNLABELLED}) + [UNLABELLED] * (UNLABELLED in seen_stages)
    reach: dict[str, int] = {}  # channels ordered by the journeys they carry (summed over stages), for everyone
    for c in cells.get(("all", "all"), []):
        if c["channel"] is not None:
            reach[c["channel"]] = reach.get(c["channel"], 0) + c["journeys"]
    channels = sorted(reach, key=lambda ch: (-reach[ch], ch))
    channels += sorted({c["channel"] for c in data["cells"] if c["channel"] is not None} - set(channels))
    mode = settings.get("funnel_mode") or "strict"
    window = settings.get("funnel_window_seconds")
    funnel_rule = ("in order (each stage's first event after the stage before)" if mode == "strict"
                   else "in any order (all the stages up to it)")
    if window:
        funnel_rule += f", within {duration(float(window))} of the first stage"

    figures: dict[str, dict] = {}
    report_segments = []
    blocks = []
    for i, seg in enumerate(segments):
        key = (seg["segment_key"], seg["segment_value"])
        stats = {s["node"]: s for s in stage_stats.get(key, [])}
        sankey, sankey_data = _sankey(transitions.get(key, []), stats, stages)
        journey_map, map_data = _journey_map(cells.get(key, []), map_stages, channels)
        figures[f"sankey-{i}"] = _figure_json(sankey)
        figures[f"map-{i}"] = _figure_json(journey_map)
        figures[f"funnel-{i}"] = _figure_json(_funnel(funnels.get(key, [])))
        parts = {
            "bottlenecks": bottlenecks.get(key, []),
            "drop_offs": drop_offs.get(key, []),
            "funnel_rule": funnel_rule,
            "comparison": _comparison_html(key, data["comparison"], stages, settings),
        }
        blocks.append(_segment_html(i, seg, parts, top, hidden=i > 0))
        report_segments.append({
            "segment": f"{key[0]}={key[1]}",
            "segment_key": key[0],
            "segment_value": key[1],
            "block_id": f"segment-{i}",
            **{k: seg[k] for k in ("journeys", "customers", "converted", "dropped", "open")},
            "sankey": sankey_data,
            "journey_map": map_data,
            "funnel": [{"stage": r["stage"], "journeys": r["journeys"]} for r in funnels.get(key, [])],
            "bottlenecks": [{k: b[k] for k in ("rank", "from_node", "to_node", "journeys", "median_wait_seconds",
                                                "time_lost_seconds", "journey_ids")} for b in parts["bottlenecks"]],
            "drop_offs": [{k: d[k] for k in ("rank", "node", "journeys", "drop_offs", "drop_off_rate", "journey_ids")}
                          for d in parts["drop_offs"]],
        })

    run = data["run"]
    report_data = {
        "level": data["level"],
        "run_id": run["run_id"] if run else None,
        "as_of": _when(run["as_of"]) if run else settings.get("as_of"),
        "segments": report_segments,
    }
    template = json.loads(pio.json.to_json_plotly(pio.templates[TEMPLATE].to_plotly_json()))
    options = "".join(
        f'<option value="{_esc(s["segment"])}">{_esc(s["segment"])} ({s["journeys"]:,} journeys)</option>'
        for s in report_segments
    )
    title = "Journey report"
    subtitle = (f"run {run['run_id']}, journeys judged as of {_when(run['as_of'])}" if run
                else "no succeeded run recorded")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}: {_esc(subtitle)}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style>
</head>
<body data-shown-segment="all=all">
<header class="top"><h1>{_esc(title)}</h1><p>{_esc(subtitle)}. Where customers move, where they wait and where they leave,
per segment.</p></header>
<div class="picker"><label for="segment-picker">Segment</label>
<select id="segment-picker" name="segment">{options}</select>
<span class="note">switches every chart and table below</span></div>
<main>
<noscript><p class="card">The charts need JavaScript; the tables of everyone (all=all) are shown without it.</p></noscript>
{_run_html(data, stages)}
{''.join(blocks)}
</main>
<footer>Made by journeys from the warehouse's marts ({_esc(data['level'])} level) on {generated}. Every number is defined in
docs/metrics.md; query the warehouse for the rest (journeys sql).</footer>
<script type="application/json" id="report-data">{_json_for_script(report_data)}</script>
<script type="application/json" id="report-figures">{_json_for_script({"template": template, "figures": figures})}</script>
<script type="application/json" id="report-plot-config">{_json_for_script(PLOT_CONFIG)}</script>
<script type="text/javascript">{get_plotlyjs()}</script>
<script type="text/javascript">{JS}</script>
</body>
</html>
"""


def write_report(con: duckdb.DuckDBPyConnection, path: Path, top: int = 5,
                 progress: Callable[[str], None] | None = None, findings: dict | None = None) -> Path:
    """Write the standalone HTML report of the warehouse open on `con` (read only) to `path`
    (written to a temporary file beside it, then renamed); returns the path.

    `top`: how many bottlenecks and drop-offs each segment lists; `progress` is told each part
    as it starts (on 100M events the journey map takes minutes); `findings`: the result of
    pipeline.report.summarize for `top` or more, when the caller has already computed it (as
    `journeys report --html` has, for its printout): it is not computed again."""
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_dead_scratch(path)
    # scratch and the page's temporary file are named for this process: a killed report's are
    # removed by the next (clear_dead_scratch), a live one's are left alone
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.{os.getpid()}.", dir=path.parent) as scratch_dir:
        page = _page(_collect(con, top, Path(scratch_dir), progress or (lambda message: None), findings), top)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def clear_dead_scratch(path: Path) -> None:
    """Remove the scratch folders and temporary pages that reports of `path` killed before
    they finished left beside it (`.<name>.<pid>.*`, the pid's process gone)."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*"):
        pid = leftover.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not lock.pid_alive(int(pid)):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
