"use strict";
// Number formatting for the page (loaded before app.js and stream.js).

function fmt(value) {
  if (typeof value !== "number" || !isFinite(value)) return String(value);
  if (value === 0) return "0";
  const a = Math.abs(value);
  if (a >= 100) return Math.round(value).toLocaleString("en-US");
  if (a >= 10) return value.toFixed(1);
  return Number(value.toPrecision(3)).toString();
}
function usd(value) { return value.toFixed(2); }
// A group's metric with its prediction interval, "value [low–high]", where the plan carries one.
function ranged(group, key) {
  const value = fmt(group.metrics[key]);
  const low = group.metrics_low && group.metrics_low[key];
  const high = group.metrics_high && group.metrics_high[key];
  if (typeof low !== "number" || typeof high !== "number" || low === high) return value;
  return value + " [" + fmt(low) + "–" + fmt(high) + "]";
}
function gb(value) { return value >= 100 ? value.toFixed(0) : value.toFixed(1); }

