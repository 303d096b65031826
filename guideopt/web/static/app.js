// guideopt web page: builds a PlanRequest from the form, calls the JSON API, shows the plans.
// Plain DOM code, no build step. Text from the server is always set with textContent.
"use strict";

const state = { catalog: null, features: {} };

// API key paths (longest prefix wins) -> the id of the form control that sets them.
const FIELD_IDS = {
  "model": "model",
  "budget": "budget",
  "budget.usd_per_hour": "budget",
  "workload": "input-len",
  "workload.input_len": "input-len",
  "workload.output_len": "output-len",
  "workload.batch": "batch",
  "slo.min_output_throughput_tok_s": "min-throughput",
  "slo.ttft_ms": "ttft",
  "slo.tpot_ms": "tpot",
  "slo.batch_latency_s": "batch-latency",
  "objective": "objective",
  "precision": "precision",
  "gpus": "gpus",
  "framework": "framework",
  "parallelism": "tp",
  "parallelism.tp": "tp",
  "parallelism.pp": "pp",
  "parallelism.ep": "ep",
  "parallelism.attention_dp": "attention-dp",
  "parallelism.max_gpus": "max-gpus",
  "top": "top",
};
const EXPERT_IDS = new Set(["tp", "pp", "ep", "attention-dp", "max-gpus", "top"]);

function $(id) { return document.getElementById(id); }

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "className") node.className = v; else node.setAttribute(k, v);
  }
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

// A number field: "" -> undefined (left out), a number -> the number, anything else -> the raw text
// (so the API names the field and says what it wants).
function numberField(id) {
  const input = $(id);
  const raw = input.value.trim();
  if (raw === "") {
    return input.validity && input.validity.badInput ? "not a number" : undefined;
  }
  const n = Number(raw);
  return Number.isFinite(n) ? n : raw;
}

function listField(id) {
  const raw = $(id).value.trim();
  if (raw === "") return undefined;
  return raw.split(/[\s,]+/).filter(Boolean).map((s) => (Number.isFinite(Number(s)) ? Number(s) : s));
}

// ------------------------------------------------------------------ form <-> request

function formToRequest() {
  const req = {
    model: $("model").value,
    workload: { input_len: numberField("input-len"), output_len: numberField("output-len") },
    budget: { usd_per_hour: numberField("budget") },
  };
  const batch = numberField("batch");
  if (batch !== undefined) req.workload.batch = batch;

  const gpus = Array.from($("gpus").selectedOptions).map((o) => o.value);
  if (gpus.length) req.gpus = Object.fromEntries(gpus.map((g) => [g, {}]));

  const parallelism = {};
  const tp = listField("tp"), pp = listField("pp"), maxGpus = numberField("max-gpus");
  if (tp !== undefined) parallelism.tp = tp;
  if (pp !== undefined) parallelism.pp = pp;
  const ep = listField("ep"), attentionDp = listField("attention-dp");
  if (ep !== undefined) parallelism.ep = ep;
  if (attentionDp !== undefined) parallelism.attention_dp = attentionDp;
  if (maxGpus !== undefined) parallelism.max_gpus = maxGpus;
  if (Object.keys(parallelism).length) req.parallelism = parallelism;

  const frameworks = Array.from(document.querySelectorAll("#framework input:checked")).map((c) => c.value);
  req.framework = frameworks.length === 1 ? frameworks[0] : frameworks;

  req.precision = Array.from(document.querySelectorAll("#precision-checks input:checked")).map((c) => c.value);

  const slo = {};
  for (const [key, id] of [["ttft_ms", "ttft"], ["tpot_ms", "tpot"], ["batch_latency_s", "batch-latency"],
                           ["min_output_throughput_tok_s", "min-throughput"]]) {
    const v = numberField(id);
    if (v !== undefined) slo[key] = v;
  }
  if (Object.keys(slo).length) req.slo = slo;

  const orders = (state.catalog && state.catalog.objectives) || {};
  if ($("objective").value !== "default") req.objective = orders[$("objective").value] || [$("objective").value];
  if (numberField("top") !== undefined) req.top = numberField("top");
  return streamToRequest(req);
}

function setValue(id, value) { $(id).value = value === undefined || value === null ? "" : String(value); }

function fillForm(req) {
  setValue("model", req.model);
  const w = req.workload || {};
  setValue("input-len", w.input_len);
  setValue("output-len", w.output_len);
  setValue("batch", w.batch);
  setValue("budget", (req.budget || {}).usd_per_hour);
  const slo = req.slo || {};
  setValue("ttft", slo.ttft_ms);
  setValue("tpot", slo.tpot_ms);
  setValue("batch-latency", slo.batch_latency_s);
  setValue("min-throughput", slo.min_output_throughput_tok_s);
  const gpus = new Set(Object.keys(req.gpus || {}));
  for (const o of $("gpus").options) o.selected = gpus.has(o.value);
  const fw = req.framework === undefined ? ["vllm"] : req.framework;
  const fws = new Set(fw === "any" ? state.catalog.frameworks.map((f) => f.id) : [].concat(fw));
  for (const c of document.querySelectorAll("#framework input")) c.checked = fws.has(c.value);
  const prec = new Set(req.precision || ["fp16"]);
  for (const c of document.querySelectorAll("#precision-checks input")) c.checked = prec.has(c.value);
  const par = req.parallelism || {};
  setValue("tp", (par.tp || [1, 2, 4, 8]).join(","));
  setValue("pp", (par.pp || [1, 2, 4]).join(","));
  setValue("ep", par.ep ? par.ep.join(",") : "");
  setValue("attention-dp", par.attention_dp ? par.attention_dp.join(",") : "");
  setValue("max-gpus", par.max_gpus);
  setValue("top", req.top || 3);
  setValue("objective", req.objective ? req.objective[0] : "default");
  fillStream(req);
}

// A group's layout: "(TP8 · PP1)" for dense models, the MoE layout in words otherwise
// ("DEP8 (attention DP 8, experts EP 8)"), as the plan's ``layout`` field gives it.
function layoutText(g) {
  if (g.layout && ((g.attention_dp || 1) > 1 || (g.moe_ep || 1) > 1)) return "(" + g.layout + ")";
  return "(TP" + g.tp + " · PP" + g.pp + ")";
}

// ------------------------------------------------------------------ errors

function clearErrors() {
  for (const node of document.querySelectorAll(".error")) node.textContent = "";
  for (const node of document.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

function controlFor(field) {
  let key = String(field || "");
  while (key) {
    const plain = key.replace(/\[\d+\]$/, "");
    if (plain !== key) { key = plain; continue; }
    if (FIELD_IDS[key]) return FIELD_IDS[key];
    const dot = key.lastIndexOf(".");
    key = dot > 0 ? key.slice(0, dot) : "";
  }
  return null;
}

function showFieldError(field, message) {
  const id = controlFor(field);
  const target = id && $("error-" + id);
  if (!target) {
    $("error").textContent = (field && field !== "request" ? field + ": " : "") + message;
    return;
  }
  if (EXPERT_IDS.has(id)) $("expert").open = true;
  target.textContent = message;
  $(id).setAttribute("aria-invalid", "true");
  if ($(id).focus) $(id).focus();
}

async function readError(resp) {
  let body = {};
  try { body = await resp.json(); } catch (e) { body = {}; }
  if (resp.status === 422 && body.field) {
    showFieldError(body.field, body.message || "not valid");
  } else {
    $("error").textContent = body.message || ("the server answered " + resp.status);
  }
}

// ------------------------------------------------------------------ API calls

async function post(url, payload) {
  return fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
}

async function download(url, payload, filename) {
  clearErrors();
  let resp;
  try { resp = await post(url, payload); } catch (e) { $("error").textContent = "cannot reach the server"; return; }
  if (!resp.ok) { await readError(resp); return; }
  const blob = await resp.blob();
  const a = el("a", { href: URL.createObjectURL(blob), download: filename });
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

async function submitPlan(event) {
  if (event) event.preventDefault();
  clearErrors();
  const req = formToRequest();
  const button = $("submit");
  button.disabled = true;
  $("status").textContent = "Planning…";
  $("results").setAttribute("aria-busy", "true");
  clearResults();
  try {
    let resp;
    try { resp = await post("/api/plan", req); } catch (e) { $("status").textContent = ""; $("error").textContent = "cannot reach the server"; return; }
    if (!resp.ok) { $("status").textContent = ""; await readError(resp); return; }
    const result = await resp.json();
    showResult(result);
    if (result.status !== "infeasible" && state.features.pareto) showPareto(req);
  } finally {
    button.disabled = false;
    $("results").removeAttribute("aria-busy");
  }
}

async function showPareto(req) {
  let resp;
  try { resp = await post("/api/pareto", req); } catch (e) { return; }
  if (!resp.ok) return;  // the chart is optional: the table stands on its own
  const blob = await resp.blob();
  const fig = $("pareto");
  for (const old of fig.querySelectorAll("img")) old.remove();
  const img = el("img", { src: URL.createObjectURL(blob), alt: "Pareto fronts: output throughput against cost per hour and against batch latency, with the chosen plan marked" });
  fig.insertBefore(img, fig.firstChild);
  fig.hidden = false;
}

// ------------------------------------------------------------------ results

function clearResults() {
  $("plans").replaceChildren();
  $("memory").replaceChildren();
  $("stream").replaceChildren();
  $("infeasible").hidden = true;
  $("infeasible").replaceChildren();
  $("pareto").hidden = true;
  for (const old of $("pareto").querySelectorAll("img")) old.remove();
  $("download-launch").hidden = true;
}

const COLUMNS = [
  ["rank", "Rank"], ["gpu", "GPU"], ["gpus", "GPUs"], ["layout", "Layout"], ["engine", "Engine"],
  ["dtype", "Dtype"], ["batch", "Batch"], ["split", "Split"], ["usd", "$/h"], ["throughput", "Output tok/s"],
  ["ttft", "TTFT ms"], ["tpot", "TPOT ms"], ["latency", "Batch latency s"], ["mem", "Memory GB/GPU"],
];

function showResult(result) {
  const objective = (result.objective || []).join(" > ");
  if (result.status === "infeasible") {
    $("status").textContent = "No feasible plan (objective " + objective + ").";
    const box = $("infeasible");
    box.appendChild(el("h2", {}, "No plan meets all the constraints"));
    box.appendChild(el("p", { id: "explanation" }, result.explanation || ""));
    for (const field of result.conflicts || []) {
      const id = controlFor(field);
      if (id && $("error-" + id)) {
        $("error-" + id).textContent = "in conflict: relax this (see the explanation below)";
        $(id).setAttribute("aria-invalid", "true");
        if (EXPERT_IDS.has(id)) $("expert").open = true;
      }
    }
    box.hidden = false;
    return;
  }
  $("status").textContent = "Status: " + result.status + " · objective " + objective + " · solved in "
    + (result.solve_time_s || 0).toFixed(2) + " s · " + result.plans.length + " plan(s)";

  const table = el("table");
  table.appendChild(el("caption", {}, "Best deployments, best first; [low–high]: the prediction interval "
    + "(held-out errors in the plan's regime, docs/accuracy.md)"));
  const head = el("tr");
  for (const [key, label] of COLUMNS) head.appendChild(el("th", { scope: "col", className: key }, label));
  table.appendChild(el("thead")).appendChild(head);
  const body = el("tbody");
  for (const plan of result.plans) {
    for (const g of plan.groups) {
      const m = g.metrics;
      const tr = el("tr", { "data-rank": plan.rank });
      const cells = {
        rank: plan.rank, gpu: g.gpu, gpus: g.num_gpus, layout: (g.role ? g.role + " " : "") + g.replicas + "× " + layoutText(g),
        engine: g.framework, dtype: g.dtype, batch: g.batch, split: g.split, usd: usd(plan.usd_per_hour),
        throughput: ranged(g, "output_throughput_tok_s"), ttft: ranged(g, "ttft_ms"), tpot: ranged(g, "tpot_ms"),
        latency: ranged(g, "batch_latency_s"), mem: gb(g.memory.total_per_gpu_gb) + " / " + gb(g.memory.gpu_memory_gb),
      };
      for (const [key] of COLUMNS) {
        tr.appendChild(el(key === "rank" ? "th" : "td", key === "rank" ? { scope: "row", className: key } : { className: key }, cells[key]));
      }
      body.appendChild(tr);
    }
  }
  table.appendChild(body);
  $("plans").appendChild(table);
  showMemory(result);
  showStream(result);
  $("download-launch").hidden = !state.features.launch;
}

const MEMORY_PARTS = [
  ["weights_gb", "weights", "mem-weights"], ["kv_cache_gb", "KV cache", "mem-kv"],
  ["activation_gb", "activations", "mem-act"], ["overhead_gb", "overhead", "mem-over"],
];

function showMemory(result) {
  const box = $("memory");
  box.appendChild(el("h2", {}, "Memory per GPU"));
  const legend = el("p", { className: "legend", "aria-hidden": "true" });
  for (const [, label, cls] of MEMORY_PARTS) {
    legend.appendChild(el("span", { className: "swatch " + cls }));
    legend.appendChild(document.createTextNode(" " + label + "  "));
  }
  box.appendChild(legend);
  for (const plan of result.plans) {
    for (const g of plan.groups) {
      const mem = g.memory;
      const parts = MEMORY_PARTS.map(([key, label]) => label + " " + gb(mem[key]) + " GB").join(", ");
      const text = "Plan " + plan.rank + " (" + g.gpu + "): " + parts + "; " + gb(mem.total_per_gpu_gb) + " of "
        + gb(mem.gpu_memory_gb) + " GB used";
      const row = el("div", { className: "mem-row", "data-rank": plan.rank });
      row.appendChild(el("span", { className: "mem-label" }, "Plan " + plan.rank + " · " + g.gpu));
      const bar = el("div", { className: "mem-bar", role: "img", "aria-label": text, title: text });
      const scale = Math.max(mem.gpu_memory_gb, mem.total_per_gpu_gb, 1e-9);
      for (const [key, label, cls] of MEMORY_PARTS) {
        const seg = el("span", { className: "mem-seg " + cls, title: label + " " + gb(mem[key]) + " GB" });
        seg.style.width = (100 * Math.max(mem[key], 0) / scale).toFixed(2) + "%";
        bar.appendChild(seg);
      }
      row.appendChild(bar);
      row.appendChild(el("span", { className: "mem-text" }, gb(mem.total_per_gpu_gb) + " / " + gb(mem.gpu_memory_gb) + " GB"));
      box.appendChild(row);
    }
  }
}

// ------------------------------------------------------------------ start

async function init() {
  let catalog;
  try {
    const resp = await fetch("/api/catalog");
    catalog = await resp.json();
  } catch (e) {
    $("error").textContent = "cannot load the catalog from the server";
    return;
  }
  state.catalog = catalog;
  state.features = catalog.features || {};
  $("calibration").textContent = catalog.calibration || "shipped";

  const model = $("model");
  for (const m of catalog.models) {
    const b = m.num_params / 1e9;
    model.appendChild(el("option", { value: m.id }, m.id + " (" + (b >= 10 ? b.toFixed(0) : b.toFixed(1)) + "B)"));
  }
  model.value = catalog.models.some((m) => m.id === "meta-llama/Llama-2-7b-hf") ? "meta-llama/Llama-2-7b-hf" : catalog.models[0].id;

  const gpus = $("gpus");
  for (const g of catalog.gpus) {
    gpus.appendChild(el("option", { value: g.id }, g.id + " — " + Math.round(g.memory_gb) + " GB, $" + g.usd_per_hour.toFixed(2) + "/h"));
  }

  const fw = $("framework");
  for (const f of catalog.frameworks) {
    const id = "fw-" + f.id;
    const box = el("input", { type: "checkbox", id: id, value: f.id, name: "framework" });
    box.checked = f.id === "vllm";
    const label = el("label", { for: id, title: f.name + " " + f.version }, " " + f.name.replace(/\s*\(.*\)$/, ""));
    fw.appendChild(el("span", { className: "check" })).append(box, label);
  }

  const prec = $("precision-checks");
  for (const d of catalog.precisions) {
    const id = "dtype-" + d;
    const box = el("input", { type: "checkbox", id: id, value: d, name: "precision" });
    box.checked = d === "fp16";
    prec.appendChild(el("span", { className: "check" })).append(box, el("label", { for: id }, " " + d));
  }

  initStream(catalog);
  const preset = $("preset");
  for (const p of catalog.presets || []) preset.appendChild(el("option", { value: p.id }, p.label));
  preset.addEventListener("change", () => {
    const p = (catalog.presets || []).find((x) => x.id === preset.value);
    if (p) { clearErrors(); fillForm(p.request); }
  });

  $("plan-form").addEventListener("submit", submitPlan);
  $("download-constraints").addEventListener("click", () => download("/api/constraints", formToRequest(), "guideopt-constraints.yaml"));
  $("download-launch").addEventListener("click", () => download("/api/launch", formToRequest(), "guideopt-launch.zip"));
  document.body.setAttribute("data-ready", "true");
}

document.addEventListener("DOMContentLoaded", init);
