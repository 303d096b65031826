// guideopt web page: request streams (rate or concurrency, a length mix, SLO percentiles).
// Loaded before app.js, which calls these from formToRequest, fillForm, showResult and init.
// Plain DOM code, no build step. Text from the server is always set with textContent.
"use strict";

// Stream key paths -> the id of the form control that sets them (merged into app.js's FIELD_IDS).
const STREAM_FIELD_IDS = {
  "workload.rate_rps": "rate",
  "workload.concurrency": "concurrency",
  "workload.lengths": "lengths",
  "slo.percentile": "percentile",
  "time_limit_s": "time-limit",
  "disaggregation": "disaggregation",
};
const STREAM_PERCENTILES = ["p50", "p90", "p99"];

function isStream() { return document.getElementById("workload-kind").value === "stream"; }

// Show the stream fields for a stream, the batch field for an offline batch; a length mix
// replaces the fixed input/output lengths.
function applyStreamMode() {
  const stream = isStream();
  const mix = stream && document.getElementById("lengths").value !== "";
  document.getElementById("stream-fields").hidden = !stream;
  document.getElementById("percentile-row").hidden = !stream;
  document.getElementById("batch-row").hidden = stream;
  document.getElementById("input-len-row").hidden = mix;
  document.getElementById("output-len-row").hidden = mix;
}

// The stream keys of the request the form describes (the offline request is left as it is).
function streamToRequest(req) {
  const timeLimit = numberField("time-limit");
  if (timeLimit !== undefined) req.time_limit_s = timeLimit;
  if (!isStream()) return req;
  const rate = numberField("rate"), concurrency = numberField("concurrency"), mix = document.getElementById("lengths").value;
  if (rate !== undefined) req.workload.rate_rps = rate;
  if (concurrency !== undefined) req.workload.concurrency = concurrency;
  if (rate === undefined && concurrency === undefined) req.workload.rate_rps = "give a rate or a concurrency";
  if (mix) {
    delete req.workload.input_len;
    delete req.workload.output_len;
    req.workload.lengths = mix;
  }
  const split = document.getElementById("disaggregation").value;
  if (split !== "never") req.disaggregation = split;
  delete req.workload.batch;
  req.slo = Object.assign(req.slo || {}, { percentile: Number(document.getElementById("percentile").value) });
  return req;
}

// A plain SLO number, or the first of per-percentile bounds ({p90: 800}), with its percentile.
function sloBound(value) {
  if (value === null || typeof value !== "object") return [value, null];
  const key = Object.keys(value)[0];
  return key ? [value[key], Number(key.slice(1))] : [undefined, null];
}

function fillStream(req) {
  const w = req.workload || {}, slo = req.slo || {};
  const stream = w.rate_rps !== undefined || w.concurrency !== undefined;
  setValue("workload-kind", stream ? "stream" : "offline");
  setValue("time-limit", req.time_limit_s);
  setValue("rate", w.rate_rps);
  setValue("concurrency", w.concurrency);
  const lengths = w.lengths && typeof w.lengths === "object" ? w.lengths.mix : w.lengths;
  setValue("lengths", lengths || "");
  const [ttft, ttftP] = sloBound(slo.ttft_ms), [tpot, tpotP] = sloBound(slo.tpot_ms);
  setValue("ttft", ttft);
  setValue("tpot", tpot);
  setValue("percentile", slo.percentile || ttftP || tpotP || 90);
  setValue("disaggregation", req.disaggregation || "never");
  applyStreamMode();
}

function initStream(catalog) {
  Object.assign(FIELD_IDS, STREAM_FIELD_IDS);
  EXPERT_IDS.add("time-limit");
  const select = document.getElementById("lengths");
  for (const mix of catalog.length_mixes || []) select.appendChild(el("option", { value: mix.id }, mix.id + " — " + mix.name));
  const kind = document.getElementById("workload-kind");
  kind.addEventListener("change", () => {
    const objective = document.getElementById("objective");
    if (isStream() && objective.value === "throughput") objective.value = "default";
    applyStreamMode();
  });
  select.addEventListener("change", applyStreamMode);
  applyStreamMode();
}

// ------------------------------------------------------------------ results

function pair(stats, metric, p) {
  const a = stats.analytic && stats.analytic[metric], s = stats.simulated && stats.simulated[metric];
  return (a ? fmt(a[p]) : "–") + " / " + (s ? fmt(s[p]) : "–");
}

function perReplica(rate) { return rate === undefined || rate === null ? "–" : fmt(rate) + " req/s"; }

// Per plan group: the load it carries and sustains, its running cap, and each percentile of
// TTFT and TPOT as the analytic model predicts it / as the verifying simulation measured it.
function showStream(result) {
  const box = document.getElementById("stream");
  box.replaceChildren();
  const plans = (result.plans || []).filter((p) => p.stream);
  if (!plans.length) return;
  box.appendChild(el("h2", {}, "Request stream: percentiles, analytic / simulated"));
  const rounds = result.verification_rounds;
  box.appendChild(el("p", { className: "help", id: "stream-note" },
    "TTFT and TPOT cells: the analytic prediction / the discrete-event simulation, in ms."
    + (rounds ? " Verification rounds: " + rounds + "." : "")));
  const table = el("table", { id: "stream-table" });
  const head = el("tr");
  const labels = ["Rank", "GPU", "Req/s a replica", "Sustains in SLOs", "Running cap"]
    .concat(STREAM_PERCENTILES.map((p) => "TTFT " + p.toUpperCase()), STREAM_PERCENTILES.map((p) => "TPOT " + p.toUpperCase()), ["Sim. meets SLOs"]);
  labels.forEach((label, i) => head.appendChild(el("th", { scope: "col", className: i === 1 ? "gpu" : "" }, label)));
  table.appendChild(el("thead")).appendChild(head);
  const body = el("tbody");
  for (const plan of plans) {
    for (const g of plan.groups) {
      const st = g.stream || {};
      const tr = el("tr", { "data-rank": plan.rank });
      tr.appendChild(el("th", { scope: "row", className: "rank" }, plan.rank));
      const cells = [g.role ? g.gpu + " (" + g.role + ")" : g.gpu, perReplica(st.rate_rps_per_replica), perReplica(st.sustainable_rate_rps_per_replica), st.running_cap];
      for (const p of STREAM_PERCENTILES) cells.push(pair(st, "ttft_ms", p));
      for (const p of STREAM_PERCENTILES) cells.push(pair(st, "tpot_ms", p));
      const meets = plan.stream.simulated_meets_slo;
      cells.push(meets === true ? "yes" : meets === false ? "no" : "not simulated");
      const classes = ["gpu", "load", "sustains", "cap"].concat(STREAM_PERCENTILES.map((p) => "ttft-" + p),
        STREAM_PERCENTILES.map((p) => "tpot-" + p), ["meets"]);
      cells.forEach((text, i) => tr.appendChild(el("td", { className: classes[i] }, text)));
      body.appendChild(tr);
    }
  }
  table.appendChild(body);
  box.appendChild(table);
  for (const plan of plans.filter((p) => p.kv_transfer)) {
    const kv = plan.kv_transfer;
    box.appendChild(el("p", { className: "help kv-transfer" }, "Plan " + plan.rank + ": prefill and decode pools; KV hand-over "
      + fmt(kv.bytes_per_request / 1e6) + " MB per request over " + kv.link + ", " + fmt(kv.ms) + " ms."));
  }
  if (result.disaggregation && result.disaggregation.note) {
    box.appendChild(el("p", { className: "help", id: "disaggregation-note" }, result.disaggregation.note));
  }
}
