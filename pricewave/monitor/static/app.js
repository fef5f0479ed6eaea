// pricewave monitor: renders /api/events snapshots (server-sent events) with uPlot charts.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#1f5fd1", "#d1561f", "#2a9d3c", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#d4a017"];
const state = { sku: null, source: null, priceChart: null, priceLabels: "", timeline: null };

function fmt(value, digits = 0) {
  if (value === null || value === undefined) return "-";
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}
function pct(share) { return share === null || share === undefined ? "-" : (100 * share).toFixed(1) + "%"; }
function ms(value) {
  if (value === null || value === undefined) return "-";
  const abs = Math.abs(value);
  if (abs < 1000) return value.toFixed(0) + " ms";
  if (abs < 120000) return (value / 1000).toFixed(1) + " s";
  if (abs < 7200000) return (value / 60000).toFixed(1) + " min";
  return (value / 3600000).toFixed(1) + " h";
}
function when(epochMs) { return epochMs ? new Date(epochMs).toISOString().replace("T", " ").slice(0, 19) + "Z" : "-"; }
function text(id, value) { $(id).textContent = value; }
function rows(tableId, items, cells) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren(...items.map((item) => {
    const tr = document.createElement("tr");
    for (const [value, cls] of cells(item)) {
      const td = document.createElement("td");
      td.textContent = value;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    return tr;
  }));
}
function chartWidth(el) { return Math.max(el.clientWidth || el.parentElement.clientWidth || 600, 300); }

// -- charts ------------------------------------------------------------------------------------

function renderPriceChart(series) {
  const el = $("price-chart");
  if (!series || !series.x.length) {
    el.dataset.points = "0";
    text("sku-points", "no price points yet");
    return;
  }
  const data = [series.x, ...series.series.map((s) => s.values)];
  const labels = series.sku + "|" + series.series.map((s) => s.label).join("|");
  if (!state.priceChart || state.priceLabels !== labels) {
    if (state.priceChart) state.priceChart.destroy();
    el.replaceChildren();
    const opts = {
      width: chartWidth(el), height: 260,
      scales: { x: { time: true } },
      series: [{}, ...series.series.map((s, i) => ({
        label: s.label, stroke: COLORS[i % COLORS.length], width: i === 0 ? 2.5 : 1.2,
        paths: uPlot.paths.stepped({ align: 1 }), spanGaps: true,
        value: (u, v) => (v === null ? "-" : v.toFixed(2)),
      }))],
      axes: [{}, { label: "price", size: 60 }],
    };
    state.priceChart = new uPlot(opts, data, el);
    state.priceLabels = labels;
  } else {
    state.priceChart.setData(data);
  }
  el.dataset.points = String(series.x.length);
  text("sku-points", `${series.x.length} points`);
}

function renderTimeline(history) {
  const el = $("timeline-chart");
  const x = history.map((h) => h.t);
  const data = [
    x,
    history.map((h) => h.updates_per_minute),
    history.map((h) => h.latency_p99_ms),
    history.map((h) => h.dead_letters_total),
  ];
  if (!state.timeline) {
    el.replaceChildren();
    state.timeline = new uPlot({
      width: chartWidth(el), height: 220,
      scales: { x: { time: true }, ms: { auto: true } },
      series: [
        {},
        { label: "price updates / min", stroke: COLORS[0], width: 2 },
        { label: "event→price p99 (ms)", stroke: COLORS[1], scale: "ms", width: 1.5, spanGaps: true },
        { label: "dead letters (total)", stroke: COLORS[4], width: 1.5 },
      ],
      axes: [{}, { label: "count", size: 60 }, { side: 1, scale: "ms", label: "ms", size: 60, grid: { show: false } }],
    }, data, el);
  } else {
    state.timeline.setData(data);
  }
  el.dataset.points = String(x.length);
}

// -- panels ------------------------------------------------------------------------------------

function renderSkus(skus, chosen) {
  const select = $("sku-select");
  const current = [...select.options].map((o) => o.value).join("|");
  if (current !== skus.join("|")) {
    select.replaceChildren(...skus.map((sku) => new Option(sku, sku)));
  }
  if (chosen) select.value = chosen;
}

// "42 min", or "none" / "stale" when the kill switch prices at base for that reason.
function modelAge(model) {
  if (!model || model.age_s === undefined) return "-";
  if (model.age_s === null) return "none (kill switch)";
  const s = model.age_s;
  const age = s < 3600 ? `${Math.round(s / 60)} min` : s < 172800 ? `${(s / 3600).toFixed(1)} h` : `${Math.round(s / 86400)} d`;
  return model.stale ? `${age}: stale (kill switch)` : age;
}

function render(snap) {
  text("updated", "updated " + new Date(snap.generated_at).toLocaleTimeString());
  const p = snap.prices;
  text("prices-total", fmt(p.total));
  text("prices-upm", fmt(p.updates_per_minute));
  text("latency-p50", ms(p.latency_ms.p50));
  text("latency-p99", ms(p.latency_ms.p99));
  text("share-fallback", pct(p.fallback_share));
  text("share-exploration", pct(p.exploration_share));
  text("share-personalized", pct(p.personalized_share));
  text("model-version", p.model_version || "-");
  text("model-age", modelAge(snap.model));
  rows("guardrails", Object.entries(p.guardrail_hits), ([rule, n]) => [[rule], [fmt(n), "num"]]);

  renderSkus(snap.skus, snap.sku_series && snap.sku_series.sku);
  renderPriceChart(snap.sku_series);
  renderTimeline(snap.history);

  const f = snap.flink;
  $("flink-link").href = f.job ? f.job.web_url : f.web_ui;
  const job = $("job-state");
  job.textContent = "job: " + (f.job ? f.job.state : f.available ? "none" : "Flink down");
  job.className = "badge " + (f.job && f.job.state === "RUNNING" ? "ok" : f.job ? "warn" : "bad");
  text("flink-error", f.error || "");
  text("job-name", f.job ? `${f.job.name} (${f.job.id.slice(0, 8)}…)` : "-");
  text("job-restarts", f.job ? fmt(f.job.restarts) : "-");
  const cp = f.checkpoints || {};
  text("cp-counts", cp.available ? `${fmt(cp.completed)} / ${fmt(cp.failed)}` : "-");
  const jp = f.pricing || {};
  text("job-decisions", f.pricing ? fmt(jp.decisions) : "-");
  text("job-kill-switch", f.pricing ? pct(jp.kill_switch_share) : "-");
  text("job-explored", f.pricing ? pct(jp.exploration_share) : "-");
  text("job-decision-p99", f.pricing ? ms(jp.event_to_decision_p99_ms) : "-");
  text("cp-last", cp.last ? `#${cp.last.id} at ${when(cp.last.time)}, ${ms(cp.last.duration_ms)}` : "-");
  rows("operators", f.operators || [], (op) => [
    [op.name], [fmt(op.parallelism), "num"], [fmt(op.records_in_per_s, 1), "num"], [fmt(op.records_out_per_s, 1), "num"],
    [fmt(op.records_in), "num"], [op.backpressure || "-", "bp-" + (op.backpressure || "none")], [ms(op.watermark_lag_ms), "num"],
  ]);

  const k = snap.kafka;
  text("kafka-error", k.error || "");
  text("lag-group", k.group_id ? `(group ${k.group_id})` : "");
  const lagRows = [];
  for (const t of k.topics || []) {
    for (const part of t.partitions) lagRows.push({ t, part });
    if (!t.partitions.length) lagRows.push({ t, part: null });
  }
  rows("lag", lagRows, ({ t, part }) => part ? [
    [t.topic], [String(part.partition), "num"], [fmt(part.end_offset), "num"], [part.committed === null ? "-" : fmt(part.committed), "num"],
    [t.input ? fmt(part.lag) : "n/a", "num"], [part.partition === 0 ? fmt(t.records_per_s, 1) : "", "num"],
  ] : [[t.topic], ["missing"], [""], [""], [""], [""]]);

  const d = snap.dead_letters;
  text("dlq-total", fmt(d.total));
  text("dlq-late", fmt(d.late));
  rows("dlq-reasons", Object.entries(d.by_reason), ([reason, n]) => [[reason], [fmt(n), "num"]]);
  $("dlq-latest").replaceChildren(...d.latest.slice(0, 12).map((l) => {
    const li = document.createElement("li");
    li.textContent = `${l.source_topic}[${l.partition}]@${l.offset}: ${l.reason}`;
    li.title = li.textContent;
    return li;
  }));

  const fr = snap.freshness;
  text("freshness-reason", fr.available ? `${fr.store} online store${fr.sampled ? " (sampled keys)" : ""}` : fr.reason);
  rows("freshness", fr.views || [], (v) => [[v.view], [when(v.newest_event_time)], [v.age_s === null ? "no value" : ms(v.age_s * 1000), "num"]]);
}

// -- live updates ------------------------------------------------------------------------------

function connect() {
  if (state.source) state.source.close();
  const url = "/api/events" + (state.sku ? "?sku=" + encodeURIComponent(state.sku) : "");
  const source = new EventSource(url);
  state.source = source;
  source.addEventListener("snapshot", (event) => {
    const status = $("status");
    status.textContent = "live";
    status.className = "badge ok";
    render(JSON.parse(event.data));
  });
  source.onerror = () => {
    const status = $("status");
    status.textContent = "reconnecting…";
    status.className = "badge warn";
  };
}

$("sku-select").addEventListener("change", (event) => {
  state.sku = event.target.value;
  if (state.priceChart) { state.priceChart.destroy(); state.priceChart = null; }
  connect();
});
window.addEventListener("resize", () => {
  for (const chart of [state.priceChart, state.timeline]) {
    if (chart) chart.setSize({ width: chartWidth(chart.root.parentElement), height: chart.height });
  }
});
window.pricewaveMonitor = state;
connect();
