// Tidewise dashboard: reads the daemon's JSON API only, draws hand-rolled SVG charts.
// No framework, no CDN (daemons often run without internet access).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#1f6fb2", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#666666"];
const REFRESH_MS = Number(new URLSearchParams(location.search).get("refresh") || 10) * 1000;
const HISTORY_S = 900; // metric history shown beside a target's forecast (s)

// ---------------------------------------------------------------- token and requests

function readToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    const t = decodeURIComponent(m[1]);
    try { localStorage.setItem("tidewise-token", t); } catch (e) { /* private mode */ }
    return t;
  }
  try { return localStorage.getItem("tidewise-token") || ""; } catch (e) { return ""; }
}
let token = readToken();

class ApiError extends Error {
  constructor(status, detail) { super(`${status}: ${detail}`); this.status = status; }
}

async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null) url.searchParams.set(k, v);
  }
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  const r = await fetch(url, { headers });
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) throw new ApiError(r.status, (body && body.detail) || r.statusText);
  return body;
}

// ---------------------------------------------------------------- formatting

function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e7)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}
function fmtTime(t) { return new Date(t * 1000).toISOString().slice(11, 19); }
function fmtDate(t) { return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z"; }
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
function kv(obj) {
  return Object.entries(obj || {}).map(([k, v]) =>
    `${k}=${typeof v === "object" && v !== null ? JSON.stringify(v) : fmt(v)}`).join(", ");
}

// ---------------------------------------------------------------- forecasts

// Normalise a forecast answer to {times, mean, bands: {level: {lo, hi}}}. Accepts columns
// (times|ts, mean, "lo-90"/"hi-90" or quantiles {"0.05": [...]}) or a list of steps.
function normaliseForecast(f) {
  if (!f) return null;
  const src = f.forecast || f;
  let steps = src.steps || src.points;
  const out = { times: [], mean: [], bands: {}, model: f.model || src.model, fallback: f.fallback };
  const bandOf = (lvl) => (out.bands[lvl] = out.bands[lvl] || { lo: [], hi: [] });
  const addQuantiles = (q, i) => {
    for (const [k, v] of Object.entries(q || {})) {
      const p = Number(k);
      if (!(p > 0 && p < 1) || p === 0.5) continue; // 0.5 is the centre line
      const lvl = Math.round(Math.abs(1 - 2 * p) * 100);
      bandOf(lvl)[p < 0.5 ? "lo" : "hi"][i] = Array.isArray(v) ? v[i] : v;
    }
  };
  if (Array.isArray(steps)) {
    steps.forEach((s, i) => {
      out.times.push(s.ts ?? s.time ?? s.t);
      // the median is the centre line of a fan (the mean of a skewed forecast is not)
      out.mean.push(s.median ?? s.mean ?? s.value);
      for (const [k, v] of Object.entries(s)) {
        const m = k.match(/^(lo|hi)-(\d+)$/);
        if (m) bandOf(Number(m[2]))[m[1]][i] = v;
      }
      addQuantiles(s.quantiles, i);
    });
  } else {
    out.times = src.times || src.ts || [];
    out.mean = src.median || src.mean || [];
    for (const [k, v] of Object.entries(src)) {
      const m = k.match(/^(lo|hi)-(\d+)$/);
      if (m && Array.isArray(v)) bandOf(Number(m[2]))[m[1]] = v;
    }
    if (src.quantiles) {
      out.times.forEach((_, i) => addQuantiles(src.quantiles, i));
    }
  }
  for (const [lvl, b] of Object.entries(out.bands)) {
    if (b.lo.length !== out.times.length || b.hi.length !== out.times.length) delete out.bands[lvl];
  }
  return out.times.length ? out : null;
}

// ---------------------------------------------------------------- charts

// Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) inside [lo, hi].
function niceTicks(lo, hi, n) {
  const raw = (hi - lo) / Math.max(1, n);
  if (!(raw > 0) || !Number.isFinite(raw)) return [lo];
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Number(v.toPrecision(12)));
  }
  return out;
}

// Time chart: history points [[t, v]], an optional forecast fan, a "now" line.
function timeChart(points, fc, opts) {
  const W = 640, H = (opts && opts.height) || 220, L = 56, R = 12, T = 10, B = 24;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  const ts = points.map((p) => p[0]), vs = points.map((p) => p[1]);
  if (fc) {
    ts.push(...fc.times);
    vs.push(...fc.mean);
    for (const b of Object.values(fc.bands)) vs.push(...b.lo, ...b.hi);
  }
  if (!ts.length) {
    const t = svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" });
    t.textContent = "no data in this window";
    svg.append(t);
    return svg;
  }
  let t0 = Math.min(...ts), t1 = Math.max(...ts);
  let v0 = Math.min(...vs), v1 = Math.max(...vs);
  if (opts && opts.zero && v0 > 0) v0 = 0;
  if (t1 === t0) { t0 -= 1; t1 += 1; }
  if (v1 === v0) { v0 -= Math.abs(v0) * 0.1 || 1; v1 += Math.abs(v1) * 0.1 || 1; }
  const pad = (v1 - v0) * 0.05; v0 -= pad; v1 += pad;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - v0) / (v1 - v0)) * (H - T - B);
  for (const v of niceTicks(v0, v1, H > 150 ? 5 : 3)) {
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    const lab = svgEl("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" });
    lab.textContent = fmt(v);
    svg.append(lab);
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
    const lab = svgEl("text", { x: x(t), y: H - 6, "text-anchor": anchor });
    lab.textContent = fmtTime(t);
    svg.append(lab);
  }
  if (fc) {
    // widest band first so the narrower one is drawn on top
    const levels = Object.keys(fc.bands).map(Number).sort((a, b) => b - a);
    levels.forEach((lvl, i) => {
      const b = fc.bands[lvl];
      const upper = fc.times.map((t, j) => `${x(t)},${y(b.hi[j])}`);
      const lower = fc.times.map((t, j) => `${x(t)},${y(b.lo[j])}`).reverse();
      svg.append(svgEl("polygon", {
        points: upper.concat(lower).join(" "),
        class: i === levels.length - 1 && levels.length > 1 ? "band50" : "band90",
        "data-level": lvl,
      }));
    });
    svg.append(svgEl("polyline", {
      points: fc.times.map((t, j) => `${x(t)},${y(fc.mean[j])}`).join(" "), class: "mean",
    }));
  }
  if (points.length) {
    svg.append(svgEl("polyline", {
      points: points.map((p) => `${x(p[0])},${y(p[1])}`).join(" "), class: "hist",
    }));
  }
  const now = Date.now() / 1000;
  if (now >= t0 && now <= t1) {
    svg.append(svgEl("line", { x1: x(now), x2: x(now), y1: T, y2: H - B, class: "now" }));
  }
  return svg;
}

// Scatter of replay runs: cost (x) against SLA figure (y), Pareto front marked.
function scatter(rows, xName, yName) {
  const W = 460, H = 300, L = 56, R = 14, T = 12, B = 34;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  const xs = rows.map((r) => r.cost), ys = rows.map((r) => r.sla);
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= 0.01; y1 += 0.01; }
  const px = (x1 - x0) * 0.08, py = (y1 - y0) * 0.08;
  x0 -= px; x1 += px; y0 -= py; y1 += py;
  const X = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  for (const v of niceTicks(y0, y1, 5)) {
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: "grid" }));
    const a = svgEl("text", { x: L - 4, y: Y(v) + 3, "text-anchor": "end" });
    a.textContent = fmt(v);
    svg.append(a);
  }
  for (const u of niceTicks(x0, x1, 4)) {
    const b = svgEl("text", { x: X(u), y: H - 20, "text-anchor": "middle" });
    b.textContent = fmt(u);
    svg.append(b);
  }
  const xl = svgEl("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", class: "label" });
  xl.textContent = `cost: ${xName} (lower is better)`;
  const yl = svgEl("text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle", class: "label",
    transform: `rotate(-90 12 ${(T + H - B) / 2})` });
  yl.textContent = `SLA: ${yName} (lower better)`;
  svg.append(xl, yl);
  // one colour per policy family; a family's sweep is joined in order of cost
  const families = [...new Set(rows.map((r) => r.family))];
  families.forEach((fam, k) => {
    const colour = PALETTE[k % PALETTE.length];
    const own = rows.filter((r) => r.family === fam).sort((a, b) => a.cost - b.cost);
    if (own.length > 1) {
      svg.append(svgEl("polyline", { points: own.map((r) => `${X(r.cost)},${Y(r.sla)}`).join(" "),
        fill: "none", stroke: colour, "stroke-width": 1.2, "stroke-opacity": 0.7 }));
    }
    for (const r of own) {
      const dot = svgEl("circle", { cx: X(r.cost), cy: Y(r.sla), r: r.pareto ? 4.5 : 3.5,
        class: r.pareto ? "dot pareto" : "dot", fill: colour, "data-family": fam });
      const tip = svgEl("title");
      tip.textContent = `${fam} ${kv(r.params)}: ${xName}=${fmt(r.cost)}, ${yName}=${fmt(r.sla)}`;
      dot.append(tip);
      svg.append(dot);
    }
    const key = svgEl("text", { x: W - R - 4, y: T + 12 + 13 * k, "text-anchor": "end",
      fill: colour, class: "key" });
    key.textContent = `● ${fam}`;
    svg.append(key);
  });
  return svg;
}

// ---------------------------------------------------------------- sections

async function seriesPoints(entity, metric, seconds) {
  const end = Math.floor(Date.now() / 1000);
  const start = end - seconds;
  const step = seconds > 3600 ? Math.ceil(seconds / 600 / 60) * 60 : undefined;
  const r = await api("/v1/series", { entity, metric, start, end, step });
  return r;
}

function targetSeries(t) {
  if (t.entity && t.metric) return [t.entity, t.metric];
  if (Array.isArray(t.servers) && t.servers.length) return [t.servers[0], t.metric || "power_w"];
  return null;
}

async function renderTarget(t) {
  const card = el("div", { class: "target", "data-target": t.name });
  card.append(el("h3", {}, t.name));
  const which = targetSeries(t);
  card.append(el("div", { class: "meta" },
    `${t.kind} · policy ${t.policy}` + (which ? ` · ${which[0]} / ${which[1]}` : "")));
  const chart = el("div", { class: "chart" });
  const legend = el("p", { class: "note" });
  card.append(chart, legend);
  let pts = [], fc = null, unit = "";
  if (which) {
    try {
      const s = await seriesPoints(which[0], which[1], HISTORY_S);
      pts = s.points; unit = s.unit || "";
    } catch (e) { legend.append(el("span", { class: "error-text" }, `series: ${e.message} `)); }
    try {
      fc = normaliseForecast(await api(`/v1/forecasts/${encodeURIComponent(which[0])}`, { metric: which[1] }));
    } catch (e) { legend.append(el("span", { class: "note" }, `forecast: ${e.message} `)); }
  }
  chart.append(timeChart(pts, fc));
  const last = pts.length ? pts[pts.length - 1] : null;
  legend.append(el("span", { class: "last" },
    last ? `last ${fmt(last[1])} ${unit} at ${fmtTime(last[0])}` : "no recent samples"));
  if (fc) {
    const bands = Object.keys(fc.bands).map(Number).sort((a, b) => a - b);
    legend.append(el("span", { class: "fc" },
      ` · forecast ${fc.times.length} steps` + (bands.length ? `, bands ${bands.join(" % / ")} %` : "") +
      (fc.model ? `, model ${fc.model}` : "") + (fc.fallback ? " (fallback)" : "") +
      `, median at +${fc.times[fc.times.length - 1] - fc.times[0]} s: ${fmt(fc.mean[fc.mean.length - 1])}`));
  }
  const dec = el("div", { class: "decision" });
  try {
    const d = await api(`/v1/recommendations/${encodeURIComponent(t.name)}`);
    const rec = d.decision || d;
    if (rec.valid === false) dec.classList.add("invalid");
    const at = rec.computed_at_unix ?? (typeof rec.computed_at === "number" ? rec.computed_at : null);
    dec.append(el("span", { class: "action" }, rec.desired ? kv(rec.desired) : "no decision yet"),
      el("span", { class: "why" }, ` — ${rec.why || ""}`),
      el("span", { class: "note" }, (at ? ` (decided ${fmtTime(at)}` : " (") +
        `${rec.fallback ? ", fallback" : ""}${rec.valid === false ? ", not valid" : ""}` +
        `${rec.stale ? ", stale" : ""})`));
  } catch (e) { dec.append(el("span", { class: "note" }, `no decision yet (${e.message})`)); }
  card.append(dec);
  const table = el("table", { class: "actions" });
  table.append(el("thead", {}, el("tr", {}, el("th", {}, "time"), el("th", {}, "desired"),
    el("th", {}, "why"), el("th", {}, "acked"))));
  const tb = el("tbody");
  try {
    // the log is oldest first: ask for the last day and show the newest few
    const since = Math.floor(Date.now() / 1000) - 86400;
    const all = (await api("/v1/actions", { target: t.name, since })).actions || [];
    const unix = (v, u) => u ?? (typeof v === "number" ? v : Date.parse(v) / 1000);
    const steps = all.map((r) => [unix(r.created_at, r.created_at_unix), desiredLevel(r.desired)])
      .filter((p) => p[1] !== null);
    if (steps.length) {
      steps.push([Date.now() / 1000, steps[steps.length - 1][1]]);
      const box = el("div", { class: "chart small desired" });
      box.append(timeChart(stepLine(steps), null, { zero: true, height: 90 }));
      card.append(el("p", { class: "note" }, "desired over time (from the action log)"), box);
    }
    const rows = all.slice(-8).reverse();
    for (const r of rows) {
      const acked = r.acked_at ? `${r.acked_by || ""} ${String(r.acked_at).slice(11, 19)}` : "–";
      tb.append(el("tr", {}, el("td", {}, fmtTime(unix(r.created_at, r.created_at_unix))),
        el("td", {}, kv(r.desired)), el("td", {}, r.why || ""), el("td", {}, acked)));
    }
    if (!rows.length) tb.append(el("tr", {}, el("td", { colspan: 4, class: "note" }, "no actions yet")));
  } catch (e) {
    tb.append(el("tr", {}, el("td", { colspan: 4, class: "note" }, `actions: ${e.message}`)));
  }
  table.append(tb);
  card.append(table);
  return card;
}

// The one number an action sets: replicas (scaling), warm instances (serverless), or the
// count of capped servers (power).
function desiredLevel(d) {
  if (!d) return null;
  if (typeof d.replicas === "number") return d.replicas;
  if (typeof d.warm === "number") return d.warm;
  if (d.caps && typeof d.caps === "object") return Object.keys(d.caps).length;
  return null;
}
function stepLine(points) {
  const out = [];
  points.forEach((p, i) => {
    if (i > 0) out.push([p[0], points[i - 1][1]]);
    out.push(p);
  });
  return out;
}

async function renderTargets() {
  const box = document.getElementById("targets");
  let list;
  try {
    const r = await api("/v1/targets");
    list = r.targets || r;
  } catch (e) {
    box.replaceChildren(el("p", { class: e.status === 404 ? "empty" : "empty error-text" },
      e.status === 404 ? "this daemon has no targets API" : `targets: ${e.message}`));
    if (e.status === 401 || e.status === 403) throw e;
    return;
  }
  if (!list.length) {
    box.replaceChildren(el("p", { class: "empty" }, "no targets declared (POST /v1/targets)"));
    return;
  }
  const cards = await Promise.all(list.map(renderTarget));
  box.replaceChildren(...cards);
}

let seriesChoices = [];
async function renderSeriesPicker() {
  const r = await api("/v1/entities");
  const pick = document.getElementById("series-pick");
  const prev = pick.value;
  seriesChoices = [];
  for (const e of r.entities) for (const m of e.metrics) seriesChoices.push([e.name, m.metric]);
  pick.replaceChildren(...seriesChoices.map(([e, m], i) => el("option", { value: String(i) }, `${e} / ${m}`)));
  if (prev && Number(prev) < seriesChoices.length) {
    pick.value = prev;
  } else {
    // first load: ?entity=&metric= preselects a series
    const q = new URLSearchParams(location.search);
    const want = seriesChoices.findIndex(([e, m]) => e === q.get("entity") && m === q.get("metric"));
    if (want >= 0) pick.value = String(want);
  }
  await renderSeries();
}

// Per-second rate of a counter between consecutive points; a drop is a reset, counted from 0
// (as Prometheus' rate() does). Counters are stored as sent; rates are derived when read.
function counterRate(points) {
  const out = [];
  for (let i = 1; i < points.length; i++) {
    const [t0, v0] = points[i - 1], [t1, v1] = points[i];
    if (t1 > t0) out.push([t1, (v1 >= v0 ? v1 - v0 : v1) / (t1 - t0)]);
  }
  return out;
}

async function renderSeries() {
  const box = document.getElementById("series-chart");
  const note = document.getElementById("series-note");
  const i = Number(document.getElementById("series-pick").value);
  if (!seriesChoices.length) { note.textContent = "no series stored yet"; box.replaceChildren(); return; }
  const [entity, metric] = seriesChoices[i] || seriesChoices[0];
  const seconds = Number(document.getElementById("series-window").value);
  try {
    const s = await seriesPoints(entity, metric, seconds);
    const counter = / \(counter\)$/.test(s.unit || "");
    const pts = counter ? counterRate(s.points) : s.points;
    const unit = counter ? s.unit.replace(/ \(counter\)$/, "/s") : s.unit || "";
    box.replaceChildren(timeChart(pts, null));
    const last = pts[pts.length - 1];
    note.textContent = `${entity} / ${metric}: ${s.points.length} points` +
      (s.agg ? ` (${s.agg} per ${s.step} s, from ${s.source})` : " (raw, 1 s)") +
      (counter ? ", per-second rate of the counter" : "") +
      (last ? `, last ${fmt(last[1])} ${unit}` : "");
  } catch (e) {
    note.textContent = `${entity} / ${metric}: ${e.message}`;
  }
}

// Families that are bounds, not contenders: drawn, never starred, and they star nothing away.
const BOUNDS = new Set(["oracle"]);

function paretoMark(rows) {
  const ranked = rows.filter((r) => !BOUNDS.has(r.family));
  for (const r of rows) {
    r.pareto = !BOUNDS.has(r.family) &&
      !ranked.some((o) => o !== r && o.cost <= r.cost && o.sla <= r.sla && (o.cost < r.cost || o.sla < r.sla));
  }
}

async function renderReplay() {
  const meta = document.getElementById("replay-meta");
  const table = document.getElementById("replay-table");
  const plot = document.getElementById("replay-plot");
  let r;
  try {
    r = await api("/v1/replay/report");
  } catch (e) {
    meta.textContent = e.message.replace(/^404: /, "");
    table.tHead.replaceChildren(); table.tBodies[0].replaceChildren(); plot.replaceChildren();
    return;
  }
  const rep = r.report, cfg = rep.config || {};
  const costName = cfg.cost_figure, slaName = cfg.sla_figure;
  const rows = [];
  for (const [family, runs] of Object.entries(rep.policies)) {
    for (const run of runs) {
      const tot = run.totals || {};
      rows.push({ family, params: run.params || {}, cost: tot[costName], sla: tot[slaName] });
    }
  }
  const numeric = rows.filter((x) => typeof x.cost === "number" && typeof x.sla === "number");
  paretoMark(numeric);
  rows.sort((a, b) => (a.cost ?? Infinity) - (b.cost ?? Infinity));
  meta.textContent = `scenario ${rep.scenario} · trace ${String(rep.trace).split("/").pop()} · ` +
    `written ${fmtDate(r.modified)} · ★ not beaten on both ${costName} and ${slaName}` +
    (rows.some((x) => BOUNDS.has(x.family)) ? " (oracle: the lower bound, not ranked)" : "");
  table.tHead.replaceChildren(el("tr", {}, el("th", {}, "policy"), el("th", {}, "params"),
    el("th", {}, costName), el("th", {}, slaName)));
  table.tBodies[0].replaceChildren(...rows.map((x) => el("tr", { class: x.pareto ? "pareto" : "", "data-policy": x.family },
    el("td", {}, x.family), el("td", {}, kv(x.params)),
    el("td", { class: "num" }, fmt(x.cost)), el("td", { class: "num" }, fmt(x.sla)))));
  plot.replaceChildren(numeric.length ? scatter(numeric, costName, slaName) : el("p", { class: "note" }, "no numeric totals"));
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    await Promise.all([renderTargets(), renderSeriesPicker(), renderReplay()]);
    status.textContent = `updated ${fmtTime(Date.now() / 1000)} UTC`;
    status.classList.remove("error");
  } catch (e) {
    status.textContent = e.status === 401 || e.status === 403
      ? `${e.message} — enter a token with scope read` : `error: ${e.message}`;
    status.classList.add("error");
  }
  document.body.dataset.loaded = "1";
}

document.getElementById("auth").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = document.getElementById("token").value.trim();
  try { localStorage.setItem("tidewise-token", token); } catch (e) { /* private mode */ }
  refresh();
});
document.getElementById("series-pick").addEventListener("change", renderSeries);
document.getElementById("series-window").addEventListener("change", renderSeries);
refresh();
if (REFRESH_MS > 0) setInterval(refresh, REFRESH_MS);
