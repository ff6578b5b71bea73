"use strict";
// The report's page, drawn from the JSON inlined in it, without any library or request.
const report = JSON.parse(document.getElementById("report-data").textContent);
const series = report.series;
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
const CALIBRATED = "calibrated score (1 = top of the normal range)";
const TIME_STEPS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400];
const shown = {fused: true};           // the streams drawn, by name
let selectedAlarm = null, cursorTime = null;

function clock(seconds, precise) {
  // m:ss (h:mm:ss from an hour on); tenths of a second when precise
  const t = precise ? Math.round(seconds * 10) / 10 : Math.floor(seconds);
  const h = Math.floor(t / 3600), m = Math.floor(t / 60) % 60, s = t - 60 * Math.floor(t / 60);
  const sec = precise ? s.toFixed(1).padStart(4, "0") : String(s).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${String(m).padStart(2, "0")}:${sec}`;
}

function number(value, digits = 3) {
  return value === null || value === undefined ? "none" : Number(value).toFixed(digits);
}

function significant(value) {
  // raw distances span many orders of magnitude: four significant digits
  return Number(value).toPrecision(4);
}

function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

function svgElement(tag, attributes, parent) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  parent.appendChild(node);
  return node;
}

function nearestIndex(values, target) {
  // the index of the value closest to target in an ascending array
  let lo = 0, hi = values.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (values[mid] <= target) lo = mid; else hi = mid;
  }
  return Math.abs(values[hi] - target) < Math.abs(values[lo] - target) ? hi : lo;
}

function header() {
  document.getElementById("title").textContent = `Alarm report: ${report.name}`;
  const facts = document.getElementById("facts");
  const rows = [
    ["input", report.source || report.name],
    ["model", report.model || "not recorded"],
    ["frames", `${report.frames_scored} scored of ${report.frames_read} read, counted from 0; ` +
               `times in mm:ss from the input's start at ${number(report.fps, 2)} frames/s`],
    ["alarm threshold", report.threshold === null ? "none (the model has no calibrated threshold)"
                        : `${number(report.threshold)} on the fused ${CALIBRATED}`],
    ["alarm intervals", String(report.intervals.length)],
    ["ground truth", report.ground_truth === null ? "not given"
                     : `shaded blue: ${report.ground_truth.length} anomalous interval(s)`],
    ["thumbnails", `${report.thumbnails.items.length}, one every ${report.thumbnails.every} frame(s)`],
  ];
  for (const [term, value] of rows) {
    facts.appendChild(element("dt", term));
    facts.appendChild(element("dd", value));
  }
  const notes = document.getElementById("notes");
  for (const note of report.notes) notes.appendChild(element("li", note));
  document.getElementById("alarm-count").textContent = report.intervals.length;
}

function streamControls() {
  const controls = document.getElementById("streams");
  const names = ["fused", ...report.streams];
  names.forEach(name => {
    const label = element("label");
    const box = element("input", undefined, {type: "checkbox", "data-stream": name});
    box.checked = !!shown[name];
    box.addEventListener("change", () => { shown[name] = box.checked; drawChart(); });
    const swatch = element("span", undefined, {class: "swatch"});
    swatch.style.background = colour(name);
    const unit = name !== "fused" && report.raw ? " (raw, not calibrated)" : "";
    label.append(box, swatch, name + unit);
    controls.appendChild(label);
  });
  controls.appendChild(element("div", `Scores are calibrated: 1 is the top of the normal range the model met in ` +
                                      `calibration (VideoPatchCore: its 90th percentile, 0 its median, on a log ` +
                                      `scale; MNAD and the dual-memory model: its 99th percentile, 0 its minimum). Threshold: dashed red; alarms: red bands` +
                                      (report.ground_truth ? "; ground truth anomalous: blue bands" : "") + ".",
                               {class: "hint"}));
}

function colour(name) {
  return name === "fused" ? "#111" : COLOURS[report.streams.indexOf(name) % COLOURS.length];
}

function values(name) {
  return name === "fused" ? series.fused : series.streams[name];
}

function niceStep(span, count) {
  const raw = span / count, power = Math.pow(10, Math.floor(Math.log10(raw)));
  return [1, 2, 5, 10].map(f => f * power).find(step => step >= raw);
}

function drawChart() {
  const chart = document.getElementById("chart");
  chart.textContent = "";
  if (!series.time.length) {
    chart.appendChild(element("p", "No frame was scored.", {class: "hint"}));
    return;
  }
  const width = Math.max(chart.clientWidth, 400), height = 300;
  const left = 60, right = 28, top = 12, bottom = 40;
  const t0 = series.time[0], t1 = Math.max(series.time[series.time.length - 1] + 1 / report.fps, t0 + 1e-3);
  const drawn = Object.keys(shown).filter(name => shown[name]);
  let low = 0, high = report.threshold === null ? 1 : Math.max(1, 1.15 * report.threshold);
  for (const name of drawn) for (const v of values(name)) {
    if (Number.isFinite(v)) { low = Math.min(low, v); high = Math.max(high, v); }
  }
  high += 0.05 * (high - low);
  const x = t => left + (t - t0) / (t1 - t0) * (width - left - right);
  const y = v => top + (high - v) / (high - low) * (height - top - bottom);
  const svg = svgElement("svg", {viewBox: `0 0 ${width} ${height}`, height, id: "timeline"}, chart);
  const yStep = niceStep(high - low, 6);
  for (let v = Math.ceil(low / yStep) * yStep; v <= high; v += yStep) {
    svgElement("line", {x1: left, x2: width - right, y1: y(v), y2: y(v), class: "grid"}, svg);
    svgElement("text", {x: left - 6, y: y(v) + 4, "text-anchor": "end"}, svg).textContent = +v.toFixed(6);
  }
  const tStep = TIME_STEPS.find(s => (t1 - t0) / s <= 10) || TIME_STEPS[TIME_STEPS.length - 1];
  for (let k = Math.ceil(t0 / tStep); k * tStep <= t1; k++) {
    const t = k * tStep;
    svgElement("line", {x1: x(t), x2: x(t), y1: top, y2: height - bottom, class: "grid"}, svg);
    svgElement("text", {x: x(t), y: height - bottom + 16, "text-anchor": "middle"}, svg).textContent =
      clock(t, tStep < 1);
  }
  svgElement("text", {x: (left + width - right) / 2, y: height - 6, "text-anchor": "middle"}, svg).textContent =
    "time from the input's start (mm:ss)";
  const middle = (top + height - bottom) / 2;
  svgElement("text", {x: 12, y: middle, "text-anchor": "middle", transform: `rotate(-90 12 ${middle})`}, svg)
    .textContent = "calibrated score";
  const frameSeconds = 1 / report.fps;
  for (const [, , start, end] of report.ground_truth || []) {
    svgElement("rect", {x: x(start), y: top, width: Math.max(x(end + frameSeconds) - x(start), 1),
                        height: height - top - bottom, class: "gt-band"}, svg);
  }
  report.intervals.forEach((interval, i) => {
    const band = svgElement("rect", {x: x(interval.start_time), y: top, height: height - top - bottom,
                                     width: Math.max(x(interval.end_time + frameSeconds) - x(interval.start_time), 3),
                                     class: "alarm-band" + (i === selectedAlarm ? " selected" : ""),
                                     "data-alarm": i}, svg);
    svgElement("title", {}, band).textContent = `alarm ${i + 1}: ${clock(interval.start_time, true)} to ` +
                                                `${clock(interval.end_time, true)}`;
    band.addEventListener("click", event => { event.stopPropagation(); selectAlarm(i); });
  });
  if (report.threshold !== null) {
    svgElement("line", {x1: left, x2: width - right, y1: y(report.threshold), y2: y(report.threshold),
                        id: "threshold-line", "data-threshold": report.threshold}, svg);
    svgElement("text", {x: width - right - 4, y: y(report.threshold) - 4, "text-anchor": "end"}, svg).textContent =
      `threshold ${number(report.threshold)}`;
  }
  for (const name of drawn) {
    svgElement("path", {d: path(values(name), x, y), fill: "none", stroke: colour(name),
                        "stroke-width": name === "fused" ? 1.6 : 1, "pointer-events": "none",
                        "data-stream": name}, svg);
  }
  svgElement("line", {x1: left, x2: left, y1: top, y2: height - bottom, class: "axis"}, svg);
  svgElement("line", {x1: left, x2: width - right, y1: height - bottom, y2: height - bottom, class: "axis"}, svg);
  if (cursorTime !== null) {
    svgElement("line", {x1: x(cursorTime), x2: x(cursorTime), y1: top, y2: height - bottom, id: "cursor"}, svg);
  }
  const timeAt = event => t0 + (event.offsetX * width / svg.clientWidth - left) / (width - left - right) * (t1 - t0);
  svg.addEventListener("click", event => {
    const t = timeAt(event);
    const hit = report.intervals.findIndex(iv => iv.start_time <= t && t <= iv.end_time + frameSeconds);
    if (hit >= 0) selectAlarm(hit); else showFrameAt(t);
  });
  svg.addEventListener("mousemove", event => {
    const i = nearestIndex(series.time, timeAt(event));
    document.getElementById("readout").textContent =
      `frame ${series.frame[i]} at ${clock(series.time[i], true)}: fused ${number(series.fused[i])}` +
      report.streams.map(s => `, ${s} ${number(series.streams[s][i])}`).join("") +
      (series.alarm[i] ? " (alarm)" : "") + ". Click to see the frame.";
  });
}

function path(vals, x, y) {
  // one vertical stroke per half pixel (its lowest and highest value), so an hour draws as fast as a minute
  let d = "", column = null, low = 0, high = 0;
  const flush = () => {
    if (column === null) return;
    d += `${d ? "L" : "M"}${column},${y(low).toFixed(1)}`;
    if (high !== low) d += `L${column},${y(high).toFixed(1)}`;
  };
  for (let i = 0; i < vals.length; i++) {
    const v = vals[i];
    if (!Number.isFinite(v)) continue;
    const c = Math.round(x(series.time[i]) * 2) / 2;
    if (c !== column) { flush(); column = c; low = high = v; }
    else { low = Math.min(low, v); high = Math.max(high, v); }
  }
  flush();
  return d;
}

function alarmTable() {
  const body = document.querySelector("#alarms tbody");
  report.intervals.forEach((interval, i) => {
    const detail = interval.detail === null ? null : report.alarms[interval.detail];
    const fired = detail && detail.banks.length ? detail.banks[0] : null;
    const row = element("tr", undefined, {"data-alarm": i});
    for (const text of [i + 1, clock(interval.start_time, true), clock(interval.end_time, true),
                        `${interval.start_frame}-${interval.end_frame}`, number(interval.peak),
                        fired ? fired.bank : (detail ? "(frame-level)" : "(not kept)"),
                        fired ? number(fired.score) : ""]) {
      row.appendChild(element("td", String(text)));
    }
    row.addEventListener("click", () => selectAlarm(i));
    body.appendChild(row);
  });
}

function setImage(id, uri) {
  const image = document.getElementById(id);
  if (uri) image.src = uri; else image.removeAttribute("src");
}

function placeBox(container, b, size, kind, label) {
  // a box over an image shown at any scale: in percents of the image's own size
  const [w, h] = size;
  const node = element("div", undefined, {class: `box ${kind}`});
  Object.assign(node.style, {left: `${100 * b[0] / w}%`, top: `${100 * b[1] / h}%`,
                             width: `${100 * (b[2] - b[0]) / w}%`, height: `${100 * (b[3] - b[1]) / h}%`});
  if (label) node.appendChild(element("span", label));
  container.appendChild(node);
}

function drawBoxes(detail) {
  const box = document.getElementById("frame-box");
  box.querySelectorAll(".box").forEach(node => node.remove());
  if (!detail) return;
  detail.boxes.forEach((b, k) => {
    const responsible = k === detail.responsible;
    placeBox(box, b, detail.size, responsible ? "responsible" : "", responsible ? `object ${k}: responsible` : "");
  });
}

function showMemory(row, fired) {
  const caption = document.getElementById("memory-caption");
  caption.textContent = "";
  caption.className = "";
  if (!row) {
    setImage("memory-image", null);
    setImage("context-image", null);
    document.querySelectorAll("#context-box .box").forEach(node => node.remove());
    if (selectedAlarm !== null && !report.explained) caption.textContent = "No memory item: this method scores " +
                                                                           "whole frames, with no memory of objects.";
    return;
  }
  const nearest = row.nearest;
  const item = nearest && (nearest.object < 0 ? "the whole frame" : `object ${nearest.object}`);
  const where = nearest && `${nearest.video}, frame ${nearest.frame} (clip ${nearest.clip}, ${item}) of ` +
                           nearest.source;
  setImage("memory-image", nearest && nearest.crop);
  setImage("context-image", nearest && nearest.context);
  const context = document.getElementById("context-box");
  context.querySelectorAll(".box").forEach(node => node.remove());
  if (nearest && nearest.context && nearest.box) placeBox(context, nearest.box, nearest.size, "memory", "");
  caption.appendChild(element("div", `Nearest normal memory item of the ${row.bank} bank` +
                                     (fired ? ", the bank that fired" : "") +
                                     (nearest ? `: ${where}.` : ": not recorded in the model file.")));
  caption.appendChild(element("div", `Distance ${number(row.score)} on the bank's calibrated scale ` +
                                     `(1 = top of its normal range).`));
  if (nearest && nearest.context) caption.appendChild(element("div", "Below: the training frame it was cut from" +
                                                                     (nearest.box ? ", the item boxed in green." : ".")));
  if (nearest && nearest.missing) caption.appendChild(element("div", nearest.missing, {class: "missing"}));
}

function bankTable(detail) {
  const table = document.getElementById("banks");
  table.textContent = "";
  if (!detail || !detail.banks.length) return;
  const head = element("tr");
  for (const text of ["bank", "item in the clip", "calibrated distance (1 = top of normal range)",
                      "raw distance (to the bank's power)", "nearest normal item"]) {
    head.appendChild(element("th", text));
  }
  table.appendChild(head);
  detail.banks.forEach((row, k) => {
    const line = element("tr", undefined, {class: k === 0 ? "fired" : ""});
    const nearest = row.nearest;
    for (const text of [row.bank + (k === 0 ? " (fired)" : ""), row.item, number(row.score), significant(row.raw),
                        nearest ? `${nearest.video} frame ${nearest.frame}` : "not recorded"]) {
      line.appendChild(element("td", String(text)));
    }
    line.addEventListener("click", () => showMemory(row, k === 0));
    line.style.cursor = "pointer";
    table.appendChild(line);
  });
}

function selectAlarm(i) {
  const interval = report.intervals[i];
  const detail = interval.detail === null ? null : report.alarms[interval.detail];
  selectedAlarm = i;
  cursorTime = detail ? detail.time : interval.start_time;
  document.getElementById("viewer-title").textContent =
    `Alarm ${i + 1}: ${clock(interval.start_time, true)} to ${clock(interval.end_time, true)} ` +
    `(frames ${interval.start_frame} to ${interval.end_frame})`;
  for (const row of document.querySelectorAll("#alarms tbody tr")) {
    row.classList.toggle("selected", +row.dataset.alarm === i);
  }
  const caption = document.getElementById("frame-caption");
  if (!detail) {
    setImage("frame-image", null);
    drawBoxes(null);
    caption.textContent = "Only the first alarm intervals are kept in detail (see the notes at the top).";
    showMemory(null);
    bankTable(null);
  } else {
    setImage("frame-image", detail.image);
    drawBoxes(detail);
    caption.textContent = `Frame ${detail.frame} at ${clock(detail.time, true)}, the interval's peak: fused score ` +
      `${number(detail.peak)} (threshold ${number(report.threshold)}). ` +
      (detail.responsible !== null ? `Red: the object responsible (the highest fused score were it the clip's ` +
                                     `worst object); yellow: the clip's other objects.`
                                   : detail.boxes.length || detail.banks.length ? "No object was detected in this clip."
                                                                               : "");
    showMemory(detail.banks[0], true);
    bankTable(detail);
  }
  drawChart();
}

function showFrameAt(t) {
  const i = nearestIndex(series.time, t);
  const items = report.thumbnails.items;
  selectedAlarm = null;
  document.querySelectorAll("#alarms tbody tr").forEach(row => row.classList.remove("selected"));
  drawBoxes(null);
  showMemory(null);
  bankTable(null);
  if (!items.length) return;
  const k = nearestIndex(items.map(item => item[0]), series.frame[i]);
  const [frame, time, uri] = items[k];
  cursorTime = time;
  document.getElementById("viewer-title").textContent = `Frame ${frame} at ${clock(time, true)}`;
  setImage("frame-image", uri);
  document.getElementById("frame-caption").textContent =
    `The sampled frame nearest to frame ${series.frame[i]} (${clock(series.time[i], true)}), where the fused ` +
    `score is ` +
    `${number(series.fused[i])}${series.alarm[i] ? " (alarm)" : ""}; thumbnails are kept every ` +
    `${report.thumbnails.every} frame(s).`;
  drawChart();
}

header();
streamControls();
alarmTable();
if (report.intervals.length) selectAlarm(0); else if (series.time.length) showFrameAt(series.time[0]); else drawChart();
window.addEventListener("resize", drawChart);
