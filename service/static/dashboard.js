// Tidewise dashboard: reads the daemon's JSON API only, draws hand-rolled SVG charts.
// No framework, no CDN (daemons often run without internet access).
//
// Every chart returns the list of series it drew; the legend under it is built from that
// list, and every drawn element carries data-series=<key>, so a legend entry exists for
// exactly what is on the chart (the browser test checks both sides).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#1f6fb2", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#666666"];
const QUERY = new URLSearchParams(location.search);
const REFRESH_MS = Number(QUERY.get("refresh") || 10) * 1000;
const HISTORY_S = 900; // metric history shown beside a target's forecast (s)
// fill opacity of the forecast bands, narrowest first (so the inner bands read darker)
const BAND_OPACITY = [0.34, 0.22, 0.13, 0.08];

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
// Human numbers for axes and tooltips: 1.04 M rather than 1.03593e+06 or a 1e6 offset.
function fmtHuman(v) {
  if (typeof v !== "number" || !Number.isFinite(v)) return fmt(v);
  const a = Math.abs(v);
  for (const [div, sfx] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e4, "k"]]) {
    if (a >= div) return `${Number((v / div).toPrecision(3))} ${sfx}`;
  }
  return fmt(Number(v.toPrecision(4)));
}
function fmtAge(s) {
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Number((s / 3600).toPrecision(3))} h`;
  return `${Number((s / 86400).toPrecision(3))} days`;
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
function withUnit(name, unit) { return unit ? `${name} (${unit})` : name; }

// ---------------------------------------------------------------- forecasts

// Normalise a forecast answer to {times, mean, bands: {level: {lo, hi}}, step, ...}. Accepts
// columns (times|ts, mean, "lo-90"/"hi-90" or quantiles {"0.05": [...]}) or a list of steps.
function normaliseForecast(f) {
  if (!f) return null;
  const src = f.forecast || f;
  let steps = src.steps || src.points;
  const out = {
    times: [], mean: [], bands: {}, model: f.model || src.model, fallback: f.fallback,
    reason: f.reason, step: f.step_s, entity: f.entity, metric: f.metric,
    inputLast: f.input_last_ts, inputAge: f.input_age_s, inputStale: f.input_stale,
    staleAfter: f.stale_after_s,
  };
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
  if (!(out.step > 0) && out.times.length > 1) out.step = out.times[1] - out.times[0];
  return out.times.length ? out : null;
}

// The series a forecast fan is drawn as: one band per interval level (widest first, so the
// narrower ones are drawn on top) and the median line.
function fanLayers(fc) {
  const levels = Object.keys(fc.bands).map(Number).sort((a, b) => b - a);
  const out = levels.map((lvl, i) => {
    const b = fc.bands[lvl];
    const lo = (100 - lvl) / 2, hi = 100 - lo;
    return {
      key: `band-${lvl}`, type: "band", times: fc.times, lo: b.lo, hi: b.hi, cls: "band",
      opacity: BAND_OPACITY[Math.min(levels.length - 1 - i, BAND_OPACITY.length - 1)],
      label: `forecast ${lvl} % interval (${fmt(lo)}–${fmt(hi)} % quantiles)`,
    };
  });
  out.push({ key: "median", type: "line", cls: "median", label: "forecast median",
    points: fc.times.map((t, j) => [t, fc.mean[j]]) });
  return out;
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

// Sample-and-hold: [[t, v], ...] to the corner points of a step line.
function stepLine(points) {
  const out = [];
  points.forEach((p, i) => {
    if (i > 0) out.push([p[0], points[i - 1][1]]);
    out.push(p);
  });
  return out;
}

// Time chart of layers, each {key, label, type: "line"|"step"|"band", cls, points | times/lo/hi}.
// opts: yLabel (the quantity and its unit), height, zero (y from 0), now (draw "now").
// Returns {svg, drawn}: drawn lists the layers with something on the chart, in drawing order.
function timeChart(layers, opts) {
  opts = opts || {};
  const W = 640, H = opts.height || 240, L = 62, R = 12, T = 10, B = 34;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  const drawn = [];
  const ts = [], vs = [];
  for (const ly of layers) {
    if (ly.type === "band") { ts.push(...ly.times); vs.push(...ly.lo, ...ly.hi); }
    else for (const [t, v] of ly.points) { ts.push(t); vs.push(v); }
  }
  const finite = vs.filter(Number.isFinite);
  if (!ts.length || !finite.length) {
    const t = svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" });
    t.textContent = "no data in this window";
    svg.append(t);
    return { svg, drawn };
  }
  let t0 = Math.min(...ts), t1 = Math.max(...ts);
  let v0 = Math.min(...finite), v1 = Math.max(...finite);
  if (opts.zero && v0 > 0) v0 = 0;
  if (t1 === t0) { t0 -= 1; t1 += 1; }
  if (v1 === v0) { v0 -= Math.abs(v0) * 0.1 || 1; v1 += Math.abs(v1) * 0.1 || 1; }
  const pad = (v1 - v0) * 0.05; v0 -= pad; v1 += pad;
  if (opts.zero && v0 < 0 && Math.min(...finite) >= 0) v0 = 0;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - v0) / (v1 - v0)) * (H - T - B);
  // the time scale, so a reader (or a test) can map x back to unix seconds
  svg.setAttribute("data-t0", t0); svg.setAttribute("data-t1", t1);
  svg.setAttribute("data-x0", L); svg.setAttribute("data-x1", W - R);
  for (const v of niceTicks(v0, v1, H > 150 ? 5 : 3)) {
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    const lab = svgEl("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" });
    lab.textContent = fmtHuman(v);
    svg.append(lab);
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
    const lab = svgEl("text", { x: x(t), y: H - 20, "text-anchor": anchor });
    lab.textContent = fmtTime(t);
    svg.append(lab);
  }
  const xl = svgEl("text", { x: (L + W - R) / 2, y: H - 5, "text-anchor": "middle", class: "label axis-x" });
  xl.textContent = "time (UTC)";
  const ym = (T + H - B) / 2;
  const yl = svgEl("text", { x: 11, y: ym, "text-anchor": "middle", class: "label axis-y",
    transform: `rotate(-90 11 ${ym})` });
  yl.textContent = opts.yLabel || "value";
  svg.append(xl, yl);
  const xy = (p) => `${x(p[0])},${y(p[1])}`;
  for (const ly of layers) {
    let node;
    if (ly.type === "band") {
      if (!ly.times.length) continue;
      const upper = ly.times.map((t, j) => xy([t, ly.hi[j]]));
      const lower = ly.times.map((t, j) => xy([t, ly.lo[j]])).reverse();
      node = svgEl("polygon", { points: upper.concat(lower).join(" "), class: ly.cls,
        "fill-opacity": ly.opacity, "data-level": ly.key.replace(/^band-/, "") });
    } else {
      const pts = (ly.type === "step" ? stepLine(ly.points) : ly.points)
        .filter((p) => Number.isFinite(p[1]));
      if (!pts.length) continue;
      node = svgEl("polyline", { points: pts.map(xy).join(" "), class: ly.cls });
    }
    node.setAttribute("data-series", ly.key);
    svg.append(node);
    drawn.push(ly);
  }
  const now = Date.now() / 1000;
  if (opts.now !== false && now >= t0 && now <= t1) {
    svg.append(svgEl("line", { x1: x(now), x2: x(now), y1: T, y2: H - B, class: "now",
      "data-series": "now" }));
    drawn.push({ key: "now", type: "rule", cls: "now", label: "now" });
  }
  return { svg, drawn };
}

// The legend of a chart: one entry per drawn series, with a swatch drawn like the series.
function legend(drawn) {
  const ul = el("ul", { class: "legend" });
  for (const ly of drawn) {
    const sw = svgEl("svg", { viewBox: "0 0 22 10", width: 22, height: 10, class: "swatch" });
    if (ly.type === "band") {
      sw.append(svgEl("rect", { x: 0, y: 1, width: 22, height: 8, class: ly.cls,
        "fill-opacity": ly.opacity }));
    } else if (ly.type === "dot") {
      sw.append(svgEl("circle", { cx: 11, cy: 5, r: 4, fill: ly.colour, class: "dot" }));
    } else {
      sw.append(svgEl("line", { x1: 0, x2: 22, y1: 5, y2: 5, class: ly.cls,
        ...(ly.colour ? { stroke: ly.colour } : {}) }));
    }
    ul.append(el("li", { "data-series": ly.key }, sw, " " + ly.label));
  }
  return ul;
}

// Human units of the replay figures (the report names them; the unit is in the name or docs).
const FIGURE_UNITS = {
  wasted_memory_gb_s: "GB·s",
  cold_start_rate: "share of invocations",
  replica_seconds: "replica·s",
  violation_rate: "share of time",
  performance_lost: "share of demanded energy",
  breach_steps: "steps",
};
function figureUnit(name) {
  if (FIGURE_UNITS[name]) return FIGURE_UNITS[name];
  const m = String(name).match(/_(gb_s|kwh|seconds|s|steps|rate|w)$/);
  return m ? { gb_s: "GB·s", kwh: "kWh", seconds: "s", s: "s", steps: "steps", rate: "share",
    w: "W" }[m[1]] : "";
}
function figureLabel(name) { return withUnit(String(name).replace(/_/g, " "), figureUnit(name)); }

// Scatter of replay runs in the orientation of the replay's cost_vs_sla.png: SLA misses (x)
// against cost (y), one colour per policy family, the Pareto front ringed; hovering (or
// focusing) a point shows its knob values.
function scatter(rows, costName, slaName) {
  const W = 460, H = 300, L = 62, R = 14, T = 12, B = 38;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  const xs = rows.map((r) => r.sla), ys = rows.map((r) => r.cost);
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) { x0 -= 0.01; x1 += 0.01; }
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const px = (x1 - x0) * 0.08, py = (y1 - y0) * 0.08;
  x0 -= px; x1 += px; y0 -= py; y1 += py;
  const X = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  for (const v of niceTicks(y0, y1, 5)) {
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: "grid" }));
    const a = svgEl("text", { x: L - 4, y: Y(v) + 3, "text-anchor": "end" });
    a.textContent = fmtHuman(v);
    svg.append(a);
  }
  for (const u of niceTicks(x0, x1, 4)) {
    const b = svgEl("text", { x: X(u), y: H - 22, "text-anchor": "middle" });
    b.textContent = fmtHuman(u);
    svg.append(b);
  }
  const xl = svgEl("text", { x: (L + W - R) / 2, y: H - 5, "text-anchor": "middle", class: "label axis-x" });
  xl.textContent = `SLA misses: ${figureLabel(slaName)}, lower is better`;
  const ym = (T + H - B) / 2;
  const yl = svgEl("text", { x: 11, y: ym, "text-anchor": "middle", class: "label axis-y",
    transform: `rotate(-90 11 ${ym})` });
  yl.textContent = `cost: ${figureLabel(costName)}, lower is better`;
  svg.append(xl, yl);
  const drawn = [];
  // a family's sweep is joined in the order of its SLA figure
  const families = [...new Set(rows.map((r) => r.family))];
  families.forEach((fam, k) => {
    const colour = PALETTE[k % PALETTE.length];
    const own = rows.filter((r) => r.family === fam).sort((a, b) => a.sla - b.sla);
    if (own.length > 1) {
      svg.append(svgEl("polyline", { points: own.map((r) => `${X(r.sla)},${Y(r.cost)}`).join(" "),
        fill: "none", stroke: colour, "stroke-width": 1.2, "stroke-opacity": 0.7,
        "data-series": fam }));
    }
    for (const r of own) {
      const tip = [`${fam}`, Object.keys(r.params).length ? kv(r.params) : "default knobs",
        `${costName} ${fmtHuman(r.cost)} ${figureUnit(costName)}`.trim(),
        `${slaName} ${fmtHuman(r.sla)} ${figureUnit(slaName)}`.trim()].join("\n");
      const dot = svgEl("circle", { cx: X(r.sla), cy: Y(r.cost), r: r.pareto ? 4.5 : 3.5,
        class: r.pareto ? "dot pareto" : "dot", fill: colour, "data-family": fam,
        "data-series": fam, "data-tip": tip, tabindex: 0, "aria-label": tip.replace(/\n/g, "; ") });
      svg.append(dot);
    }
    drawn.push({ key: fam, type: own.length > 1 ? "line" : "dot", colour,
      cls: "sweep", label: own.length > 1 ? `${fam} (${own.length} runs)` : fam });
  });
  return { svg, drawn };
}

// One tooltip for the page: shown beside the point under the mouse (or with focus).
function bindTooltips(root) {
  const tip = document.getElementById("tooltip");
  const show = (target, cx, cy) => {
    tip.replaceChildren(...target.getAttribute("data-tip").split("\n")
      .map((line, i) => el("div", { class: i === 0 ? "tip-head" : "" }, line)));
    tip.hidden = false;
    const w = tip.offsetWidth, h = tip.offsetHeight;
    const left = Math.min(cx + 12, window.innerWidth - w - 4);
    const top = cy - h - 10 < 0 ? cy + 14 : cy - h - 10;
    tip.style.left = `${left + window.scrollX}px`;
    tip.style.top = `${top + window.scrollY}px`;
  };
  for (const d of root.querySelectorAll("[data-tip]")) {
    d.addEventListener("mouseenter", (ev) => show(d, ev.clientX, ev.clientY));
    d.addEventListener("focus", () => {
      const b = d.getBoundingClientRect();
      show(d, b.left + b.width / 2, b.top + b.height / 2);
    });
    d.addEventListener("mouseleave", () => { tip.hidden = true; });
    d.addEventListener("blur", () => { tip.hidden = true; });
  }
}

// ---------------------------------------------------------------- sections

// Points of one series over the last `seconds`: raw 1-s samples (step 1 or omitted) or
// means of epoch-aligned buckets of `step` seconds, complete buckets only (the forecast
// reads complete buckets too; a half-filled one would dip or jump).
async function seriesPoints(entity, metric, seconds, step) {
  const end = Math.floor(Date.now() / 1000);
  const start = end - seconds;
  const r = await api("/v1/series", { entity, metric, start, end,
    step: step > 1 ? step : undefined, agg: step > 1 ? "mean" : undefined });
  if (step > 1) r.points = r.points.filter((p) => p[0] + step <= end);
  return r;
}

function targetSeries(t) {
  if (t.entity && t.metric) return [t.entity, t.metric];
  if (Array.isArray(t.servers) && t.servers.length) return [t.servers[0], t.metric || "power_w"];
  return null;
}

function showRaw() { return document.getElementById("show-raw").checked; }

// The problems a target's forecast answer shows, as banner texts: stale input, fallback.
function problems(t, fc) {
  const out = [];
  if (!fc) return out;
  const what = `${fc.entity} / ${fc.metric} (target ${t.name})`;
  if (fc.inputStale) {
    out.push({ kind: "stale", text: fc.inputLast == null
      ? `Stale input: ${what} has no raw sample kept; the forecast and decisions rest on old data.`
      : `Stale input: ${what} — newest sample ${fmtAge(fc.inputAge)} old (${fmtTime(fc.inputLast)} UTC), ` +
        `stale after ${fmt(fc.staleAfter)} s; the forecast and decisions rest on old data.` });
  }
  if (fc.fallback) {
    out.push({ kind: "fallback", text: `Fallback forecast: ${what} — ${fc.model}` +
      (fc.reason ? `, because ${fc.reason}` : "") });
  }
  return out;
}

async function renderTarget(t) {
  const card = el("div", { class: "target", "data-target": t.name });
  card.append(el("h3", {}, t.name));
  const which = targetSeries(t);
  card.append(el("div", { class: "meta" },
    `${t.kind} · policy ${t.policy}` + (which ? ` · ${which[0]} / ${which[1]}` : "")));
  const chart = el("div", { class: "chart" });
  const notes = el("p", { class: "note" });
  card.append(chart);
  let fc = null, unit = "", bucketed = null, raw = null;
  if (which) {
    try {
      fc = normaliseForecast(await api(`/v1/forecasts/${encodeURIComponent(which[0])}`, { metric: which[1] }));
    } catch (e) { notes.append(el("span", { class: "note" }, `forecast: ${e.message} `)); }
    try {
      // demand at the forecast's bucket width, so history and fan compare like with like;
      // the raw 1-s samples on request (and when there is no forecast to take a width from)
      if (fc && fc.step > 1) {
        bucketed = await seriesPoints(which[0], which[1], HISTORY_S, fc.step);
        unit = bucketed.unit || "";
      }
      if (!bucketed || showRaw()) {
        raw = await seriesPoints(which[0], which[1], HISTORY_S);
        unit = raw.unit || unit;
      }
    } catch (e) { notes.append(el("span", { class: "error-text" }, `series: ${e.message} `)); }
  }
  // the decision first: the capacity line extends its replicas over the forecast
  let rec = null;
  const dec = el("div", { class: "decision" });
  try {
    const d = await api(`/v1/recommendations/${encodeURIComponent(t.name)}`);
    rec = d.decision || d;
    if (rec.valid === false) dec.classList.add("invalid");
    const at = rec.computed_at_unix ?? (typeof rec.computed_at === "number" ? rec.computed_at : null);
    dec.append(el("span", { class: "action" }, rec.desired ? kv(rec.desired) : "no decision yet"),
      el("span", { class: "why" }, ` — ${rec.why || ""}`),
      el("span", { class: "note" }, (at ? ` (decided ${fmtTime(at)}` : " (") +
        `${rec.fallback ? ", fallback" : ""}${rec.valid === false ? ", not valid" : ""}` +
        `${rec.stale ? ", stale" : ""})`));
  } catch (e) { dec.append(el("span", { class: "note" }, `no decision yet (${e.message})`)); }
  let actions = null, actionsError = null;
  try {
    // the log is oldest first: ask for the last day and show the newest few
    const since = Math.floor(Date.now() / 1000) - 86400;
    actions = (await api("/v1/actions", { target: t.name, since })).actions || [];
  } catch (e) { actionsError = e; }
  const unix = (v, u) => u ?? (typeof v === "number" ? v : Date.parse(v) / 1000);
  const levels = (actions || []).map((r) => [unix(r.created_at, r.created_at_unix), desiredLevel(r.desired)])
    .filter((p) => p[1] !== null);

  const layers = [];
  if (raw && raw.points.length) {
    layers.push({ key: "raw", type: "line", cls: "raw", points: raw.points,
      label: `demand, raw 1-s samples (${raw.points.length})` });
  }
  if (bucketed && bucketed.points.length) {
    layers.push({ key: "demand", type: "line", cls: "demand", points: bucketed.points,
      label: `demand, ${fc.step}-s means (${bucketed.points.length})` });
  } else if (!bucketed && raw && raw.points.length) {
    layers[layers.length - 1].key = "demand";
    layers[layers.length - 1].cls = "demand";
    layers[layers.length - 1].label = `demand, raw 1-s samples (${raw.points.length}; no forecast to take a bucket width from)`;
  }
  if (fc) layers.unshift(...fanLayers(fc));
  const cap = capacityLayer(t, levels, rec, fc, unit);
  if (cap) layers.push(cap);
  const { svg, drawn } = timeChart(layers, { yLabel: withUnit(which ? which[1] : "value", unit) });
  chart.append(svg, legend(drawn));
  card.append(notes);
  const shown = bucketed && bucketed.points.length ? bucketed : raw;
  const last = shown && shown.points.length ? shown.points[shown.points.length - 1] : null;
  notes.append(el("span", { class: "last" }, last
    ? `last ${bucketed && shown === bucketed ? `${fc.step}-s mean` : "sample"} ${fmt(last[1])} ${unit} at ${fmtTime(last[0])}`
    : "no recent samples"));
  if (fc) {
    notes.append(el("span", { class: "fc" },
      ` · forecast ${fc.times.length} steps of ${fmt(fc.step)} s` +
      (fc.model ? `, model ${fc.model}` : "") + (fc.fallback ? " (fallback)" : "") +
      `, median at +${fc.times[fc.times.length - 1] - fc.times[0]} s: ${fmt(fc.mean[fc.mean.length - 1])} ${unit}`));
  }
  const found = problems(t, fc);
  if (found.length) card.classList.add("warn");
  card.append(dec);

  const table = el("table", { class: "actions" });
  table.append(el("thead", {}, el("tr", {}, el("th", {}, "time"), el("th", {}, "desired"),
    el("th", {}, "why"), el("th", {}, "acked"))));
  const tb = el("tbody");
  if (actionsError) {
    tb.append(el("tr", {}, el("td", { colspan: 4, class: "note" }, `actions: ${actionsError.message}`)));
  } else {
    if (levels.length) {
      const pts = levels.concat([[Date.now() / 1000, levels[levels.length - 1][1]]]);
      const box = el("div", { class: "chart small desired" });
      const small = timeChart([{ key: "desired", type: "step", cls: "desired-line", points: pts,
        label: levelName(t) }], { zero: true, height: 100, yLabel: levelName(t), now: false });
      box.append(small.svg);
      card.append(el("p", { class: "note" }, `${levelName(t)} over time (from the action log)`), box);
    }
    const rows = actions.slice(-8).reverse();
    for (const r of rows) {
      const acked = r.acked_at ? `${r.acked_by || ""} ${String(r.acked_at).slice(11, 19)}` : "–";
      tb.append(el("tr", {}, el("td", {}, fmtTime(unix(r.created_at, r.created_at_unix))),
        el("td", {}, kv(r.desired)), el("td", {}, r.why || ""), el("td", {}, acked)));
    }
    if (!rows.length) tb.append(el("tr", {}, el("td", { colspan: 4, class: "note" }, "no actions yet")));
  }
  table.append(tb);
  card.append(table);
  return { card, problems: found };
}

// The capacity of a scaling target over the chart: desired replicas (the action log, then
// the latest decision held over the forecast) times the target's capacity per replica.
function capacityLayer(t, levels, rec, fc, unit) {
  if (t.kind !== "scaling" || !(t.capacity > 0)) return null;
  const now = Date.now() / 1000, t0 = now - HISTORY_S;
  const pts = [];
  // the level in force when the window opens, then every change inside it
  const before = levels.filter((p) => p[0] <= t0);
  if (before.length) pts.push([t0, before[before.length - 1][1]]);
  for (const p of levels) if (p[0] > t0) pts.push(p);
  const latest = rec && rec.desired && typeof rec.desired.replicas === "number" ? rec.desired.replicas : null;
  if (latest !== null) {
    const at = rec.computed_at_unix ?? now;
    if (!pts.length) pts.push([Math.max(t0, at), latest]);
    else if (pts[pts.length - 1][1] !== latest) pts.push([Math.max(t0, at), latest]);
  }
  if (!pts.length) return null;
  const end = fc ? Math.max(now, fc.times[fc.times.length - 1]) : now;
  pts.push([end, pts[pts.length - 1][1]]);
  return { key: "capacity", type: "step", cls: "capacity",
    points: pts.map(([ts, r]) => [ts, r * t.capacity]),
    label: `capacity: desired replicas × ${fmt(t.capacity)} ${unit || "units"} per replica` };
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
function levelName(t) {
  return { scaling: "replicas", serverless: "warm instances", power: "capped servers" }[t.kind] || "level";
}

function renderBanners(found) {
  const box = document.getElementById("banners");
  box.replaceChildren(...found.map((p) =>
    el("p", { class: `banner ${p.kind}`, "data-kind": p.kind }, p.text)));
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
    renderBanners([]);
    if (e.status === 401 || e.status === 403) throw e;
    return;
  }
  // ?target=NAME shows one target (a link to its card)
  const only = QUERY.get("target");
  if (only) list = list.filter((t) => t.name === only);
  if (!list.length) {
    box.replaceChildren(el("p", { class: "empty" },
      only ? `no target named ${only}` : "no targets declared (POST /v1/targets)"));
    renderBanners([]);
    return;
  }
  const done = await Promise.all(list.map(renderTarget));
  box.replaceChildren(...done.map((d) => d.card));
  renderBanners(done.flatMap((d) => d.problems));
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
    const want = seriesChoices.findIndex(([e, m]) => e === QUERY.get("entity") && m === QUERY.get("metric"));
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
  // beyond an hour, 10-minute-ish buckets of whole minutes (the rollups serve them)
  const step = seconds > 3600 ? Math.ceil(seconds / 600 / 60) * 60 : undefined;
  try {
    const s = await seriesPoints(entity, metric, seconds, step);
    const counter = / \(counter\)$/.test(s.unit || "");
    const pts = counter ? counterRate(s.points) : s.points;
    const unit = counter ? s.unit.replace(/ \(counter\)$/, "/s") : s.unit || "";
    const what = s.agg ? `${s.agg} per ${s.step} s` : "raw 1-s samples";
    const { svg, drawn } = timeChart([{ key: "series", type: "line", cls: "series", points: pts,
      label: `${metric}, ${what}${counter ? ", per-second rate of the counter" : ""}` }],
    { yLabel: withUnit(metric, unit) });
    box.replaceChildren(svg, legend(drawn));
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
    `written ${fmtDate(r.modified)} · ★ and ringed: not beaten on both ${costName} and ${slaName}` +
    (rows.some((x) => BOUNDS.has(x.family)) ? " (oracle: the lower bound, not ranked)" : "") +
    " · hover a point for its knob values";
  table.tHead.replaceChildren(el("tr", {}, el("th", {}, "policy"), el("th", {}, "params"),
    el("th", {}, withUnit(costName, figureUnit(costName))), el("th", {}, withUnit(slaName, figureUnit(slaName)))));
  table.tBodies[0].replaceChildren(...rows.map((x) => el("tr", { class: x.pareto ? "pareto" : "", "data-policy": x.family },
    el("td", {}, x.family), el("td", {}, kv(x.params)),
    el("td", { class: "num" }, fmt(x.cost)), el("td", { class: "num" }, fmt(x.sla)))));
  if (!numeric.length) { plot.replaceChildren(el("p", { class: "note" }, "no numeric totals")); return; }
  const { svg, drawn } = scatter(numeric, costName, slaName);
  plot.replaceChildren(svg, legend(drawn));
  bindTooltips(plot);
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
// ?raw=1 starts with the raw samples shown
document.getElementById("show-raw").checked = QUERY.get("raw") === "1";
document.getElementById("show-raw").addEventListener("change", () => renderTargets().catch(() => {}));
document.getElementById("series-pick").addEventListener("change", renderSeries);
document.getElementById("series-window").addEventListener("change", renderSeries);
refresh();
if (REFRESH_MS > 0) setInterval(refresh, REFRESH_MS);
