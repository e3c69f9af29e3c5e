// The status page (see gateway/status_page.h): HTML, CSS and script in one raw string literal.
// Elements that show a live figure carry an id and a data-value with the raw number, which the
// headless-browser test (tests/e2e/http_page.sh) reads.
#include "gateway/status_page.h"

namespace gw::gateway {
namespace {

constexpr std::string_view kPage = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edge-gateway</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
  header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 20px; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  header .meta { font-size: 13px; color: #b8c0cc; }
  .badge { padding: 2px 8px; border-radius: 10px; font-size: 13px; font-weight: 600; }
  .ok { background: #2e7d32; color: #fff; } .bad { background: #c62828; color: #fff; } .warn { background: #ef8f00; color: #fff; }
  main { padding: 16px 20px; }
  .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; }
  .card { background: #fff; border-radius: 6px; padding: 10px 14px; box-shadow: 0 1px 2px rgba(0,0,0,.12); }
  .card .label { font-size: 12px; color: #5b6475; text-transform: uppercase; letter-spacing: .04em; }
  .card .value { font-size: 24px; font-weight: 600; margin-top: 4px; font-variant-numeric: tabular-nums; }
  .card .sub { font-size: 12px; color: #5b6475; margin-top: 2px; }
  section.chart { background: #fff; border-radius: 6px; margin-top: 16px; padding: 10px 14px; box-shadow: 0 1px 2px rgba(0,0,0,.12); }
  section.chart h2 { font-size: 15px; margin: 0 0 8px 0; }
  select { font-size: 13px; margin-right: 8px; }
  #reasons { color: #c62828; font-size: 13px; margin-top: 8px; }
  #message { color: #c62828; font-size: 14px; margin-bottom: 10px; }
  svg text { font-size: 11px; fill: #5b6475; }
</style>
</head>
<body>
<header>
  <h1>edge-gateway <span id="gateway-id"></span></h1>
  <span class="meta">version <span id="version">?</span>, up <span id="uptime">?</span></span>
  <span id="ready" class="badge warn">loading</span>
  <span class="meta">updated <span id="updated">never</span></span>
</header>
<main>
  <div id="message"></div>
  <div class="cards">
    <div class="card"><div class="label">Ingest</div><div class="value" id="ingest-rate" data-value="">?</div><div class="sub">events/s</div></div>
    <div class="card"><div class="label">Events stored</div><div class="value" id="events-stored" data-value="">?</div><div class="sub"><span id="mqtt-state">?</span></div></div>
    <div class="card"><div class="label">Buffer</div><div class="value" id="buffer-records" data-value="">?</div><div class="sub">records, <span id="buffer-bytes">?</span>, oldest <span id="buffer-age">?</span></div></div>
    <div class="card"><div class="label">Backlog</div><div class="value" id="backlog-records" data-value="">?</div><div class="sub"><span id="backlog-state">?</span></div></div>
    <div class="card"><div class="label">Drain ETA</div><div class="value" id="drain-eta" data-value="">?</div><div class="sub">at the current rates</div></div>
    <div class="card"><div class="label">Uplink</div><div class="value" id="uplink-state" data-value="">?</div><div class="sub"><span id="uplink-rate" data-value="">?</span> records/s, acked to seq <span id="last-acked-seq" data-value="">?</span></div></div>
    <div class="card"><div class="label">Dead letters</div><div class="value" id="dead-letters" data-value="">?</div><div class="sub">late events: <span id="late-events" data-value="">?</span></div></div>
  </div>
  <div id="reasons"></div>
  <section class="chart">
    <h2>Aggregates: <select id="device"></select><select id="metric"></select>
      <span class="meta" id="chart-note"></span></h2>
    <svg id="chart" viewBox="0 0 900 280" width="100%" preserveAspectRatio="xMidYMid meet" role="img" aria-label="aggregates chart"></svg>
  </section>
</main>
<script>
"use strict";
(function () {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("token")) {
    sessionStorage.setItem("gw-token", params.get("token"));
    params.delete("token");
    history.replaceState(null, "", location.pathname + (params.toString() ? "#" + params.toString() : ""));
  }
  const token = sessionStorage.getItem("gw-token");
  const state = { device: params.get("device") || "", metric: params.get("metric") || "" };
  const $ = (id) => document.getElementById(id);

  async function get(path) {
    const headers = token ? { "Authorization": "Bearer " + token } : {};
    const res = await fetch(path, { headers: headers, cache: "no-store" });
    if (res.status === 401) throw new Error("this gateway needs its token: open /#token=YOUR_TOKEN");
    if (!res.ok) throw new Error(path + ": HTTP " + res.status);
    return res.json();
  }
  function show(id, value, text) {
    const el = $(id);
    el.dataset.value = value === null || value === undefined ? "" : String(value);
    el.textContent = text !== undefined ? text : (value === null || value === undefined ? "-" : String(value));
  }
  const num = (v, digits) => v.toLocaleString("en-US", { maximumFractionDigits: digits || 0 });
  function duration(s) {
    if (s === null || s === undefined) return "-";
    s = Math.round(s);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }
  function bytes(b) {
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return num(b, 1) + " " + units[i];
  }

  function render(s) {
    $("gateway-id").textContent = s.gateway_id;
    $("version").textContent = s.version;
    $("uptime").textContent = duration(s.uptime_s);
    const ready = $("ready");
    ready.textContent = s.ready.ready ? "ready" : "not ready";
    ready.className = "badge " + (s.ready.ready ? "ok" : "bad");
    $("reasons").textContent = s.ready.reasons.join("; ");
    show("ingest-rate", s.rates.ingest_events_per_s, num(s.rates.ingest_events_per_s, 1));
    const stored = s.ingest ? s.ingest.events_stored : null;
    show("events-stored", stored, stored === null ? "-" : num(stored));
    $("mqtt-state").textContent = !s.ingest ? "mqtt not started" :
        (s.ingest.connected ? (s.ingest.subscribed ? "mqtt subscribed" : "mqtt connected") : "mqtt disconnected");
    show("buffer-records", s.buffer.records, num(s.buffer.records));
    $("buffer-bytes").textContent = bytes(s.buffer.bytes);
    $("buffer-age").textContent = duration(s.buffer.oldest_age_ms / 1000);
    show("backlog-records", s.backlog.records, num(s.backlog.records));
    $("backlog-state").textContent = { none: "caught up", draining: "draining", growing: "growing" }[s.backlog.state];
    show("drain-eta", s.backlog.drain_eta_s, s.backlog.state === "none" ? "caught up" : duration(s.backlog.drain_eta_s));
    const k = s.uplink.kafka || s.uplink.pulsar;
    show("uplink-state", k.state);
    $("uplink-state").style.color = k.state === "up" ? "#2e7d32" : (k.state === "down" ? "#c62828" : "#ef8f00");
    show("uplink-rate", s.rates.uplink_records_per_s, num(s.rates.uplink_records_per_s, 1));
    show("last-acked-seq", k.last_acked_seq, String(k.last_acked_seq));
    const dl = s.dead_letters ? s.dead_letters.stored_total : null;
    show("dead-letters", dl, dl === null ? "-" : num(dl));
    show("late-events", s.windowing.late_events, num(s.windowing.late_events));
    $("updated").textContent = new Date(s.time_ms).toLocaleTimeString();
  }

  function fill(select, values, current) {
    const old = Array.from(select.options).map((o) => o.value).join("\n");
    if (old !== values.join("\n")) {
      select.textContent = "";
      for (const v of values) select.add(new Option(v, v));
    }
    select.value = current;
  }

  function chart(aggs) {
    const svg = $("chart");
    const W = 900, H = 280, L = 60, R = 20, T = 14, B = 28;
    const ns = "http://www.w3.org/2000/svg";
    svg.textContent = "";
    const el = (name, attrs, text) => {
      const e = document.createElementNS(ns, name);
      for (const key in attrs) e.setAttribute(key, attrs[key]);
      if (text !== undefined) e.textContent = text;
      svg.appendChild(e);
      return e;
    };
    if (aggs.length === 0) {
      el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no closed windows yet");
      return;
    }
    const pts = aggs.slice().sort((a, b) => a.window_start_ms - b.window_start_ms);
    const x0 = pts[0].window_start_ms, x1 = Math.max(pts[pts.length - 1].window_start_ms, x0 + 1);
    let y0 = Math.min(...pts.map((p) => p.min)), y1 = Math.max(...pts.map((p) => p.max));
    if (y1 === y0) { y0 -= 1; y1 += 1; }
    const X = (t) => L + (t - x0) / (x1 - x0) * (W - L - R);
    const Y = (v) => T + (y1 - v) / (y1 - y0) * (H - T - B);
    el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#b8c0cc" });
    el("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#b8c0cc" });
    el("text", { x: L - 6, y: T + 4, "text-anchor": "end" }, num(y1, 2));
    el("text", { x: L - 6, y: H - B, "text-anchor": "end" }, num(y0, 2));
    el("text", { x: L, y: H - 8 }, new Date(x0).toLocaleTimeString());
    el("text", { x: W - R, y: H - 8, "text-anchor": "end" }, new Date(x1).toLocaleTimeString());
    const band = pts.map((p) => X(p.window_start_ms) + "," + Y(p.max))
        .concat(pts.slice().reverse().map((p) => X(p.window_start_ms) + "," + Y(p.min)));
    el("polygon", { points: band.join(" "), fill: "#90caf9", "fill-opacity": "0.45", stroke: "none" });
    el("polyline", { id: "chart-mean", points: pts.map((p) => X(p.window_start_ms) + "," + Y(p.mean)).join(" "),
                     fill: "none", stroke: "#1565c0", "stroke-width": "2" });
    $("chart-note").textContent = pts.length + " windows, mean with min..max";
  }

  async function refresh() {
    try {
      render(await get("/status"));
      const devices = (await get("/devices?limit=1000")).map((d) => d.device);
      if (!devices.includes(state.device)) state.device = devices.length ? devices[0] : "";
      fill($("device"), devices, state.device);
      if (state.device) {
        const recent = await get("/aggregates?device=" + encodeURIComponent(state.device) + "&limit=1000");
        const metrics = Array.from(new Set(recent.map((a) => a.metric))).sort();
        if (!metrics.includes(state.metric)) state.metric = metrics.length ? metrics[0] : "";
        fill($("metric"), metrics, state.metric);
        chart(recent.filter((a) => a.metric === state.metric).slice(0, 120));
      } else {
        chart([]);
      }
      $("message").textContent = "";
    } catch (e) {
      $("message").textContent = String(e.message || e);
    }
    setTimeout(refresh, 2000);
  }
  $("device").addEventListener("change", (e) => { state.device = e.target.value; state.metric = ""; });
  $("metric").addEventListener("change", (e) => { state.metric = e.target.value; });
  refresh();
})();
</script>
</body>
</html>
)html";

}  // namespace

std::string_view status_page_html() { return kPage; }

}  // namespace gw::gateway
