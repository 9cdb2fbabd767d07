// The seqtune page: inputs -> POST /predict (with the round-trip check) -> a table and a CSV.
"use strict";
const $ = (id) => document.getElementById(id);
let info = null;
let rows = [];  // {columns: {...}, input, prediction, verified}
let csvColumns = null;

async function loadInfo() {
  const r = await fetch("/info");
  info = await r.json();
  $("task").textContent = info.task;
  const scores = Object.entries(info.scores || {}).filter(([k]) => /same_molecule|exact/.test(k))
    .map(([k, v]) => `${k} ${Number(v).toFixed(1)}`).join(", ");
  $("about").textContent = `fine-tuned from ${info.base_model_hub_id || info.base_model}` +
    (scores ? ` · test: ${scores}` : "") + ` · up to ${info.limits.max_inputs} inputs per request`;
}

// A small CSV reader: quoted fields, doubled quotes, commas or tabs.
function parseCsv(text, sep) {
  const out = []; let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === sep) { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field); field = "";
      if (row.some((f) => f.trim())) out.push(row);
      row = [];
    } else field += c;
  }
  row.push(field);
  if (row.some((f) => f.trim())) out.push(row);
  return out;
}

function pickColumn(header) {
  const want = [info && info.input_column, "smiles", "input"].filter(Boolean).map((s) => s.toLowerCase());
  for (const w of want) { const i = header.findIndex((h) => h.trim().toLowerCase() === w); if (i >= 0) return i; }
  return 0;
}

$("csv").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  if (!file) return;
  const text = await file.text();
  const table = parseCsv(text, file.name.endsWith(".tsv") ? "\t" : ",");
  if (!table.length) return;
  const header = table[0], col = pickColumn(header);
  csvColumns = { header, rows: table.slice(1) };
  $("smiles").value = table.slice(1).map((r) => (r[col] || "").trim()).join("\n");
  setStatus(`${table.length - 1} rows from ${file.name} (column "${header[col]}")`);
});

$("smiles").addEventListener("input", () => { csvColumns = null; });  // edited: no longer the file's rows

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function badge(verified) {
  const span = document.createElement("span");
  span.className = "badge " + (verified === true ? "yes" : verified === false ? "no" : "unknown");
  span.textContent = verified === true ? "yes" : verified === false ? "no" : "n/a";
  span.title = "OPSIN round trip: does the name parse back to the same molecule?";
  return span;
}

function cell(tr, cls, content) {
  const td = document.createElement("td");
  td.className = cls;
  if (typeof content === "string") td.textContent = content; else if (content) td.appendChild(content);
  tr.appendChild(td);
}

function render() {
  const body = $("results").querySelector("tbody");
  body.replaceChildren();
  rows.forEach((r, i) => {
    const tr = document.createElement("tr");
    tr.className = "result";
    cell(tr, "n", String(i + 1));
    cell(tr, "input", r.input);
    const toDraw = info.draw === "prediction" ? r.prediction : r.input;
    let img = null;
    if (info.draw && toDraw) {
      img = document.createElement("img");
      img.alt = toDraw; img.className = "molecule";
      img.src = "/depict?smiles=" + encodeURIComponent(toDraw);
      img.onerror = () => { img.replaceWith(document.createTextNode("(cannot draw)")); };
    }
    cell(tr, "drawing", img);
    cell(tr, "prediction", r.prediction);
    cell(tr, "verdict", info.verify ? badge(r.verified) : "");
    body.appendChild(tr);
  });
  $("results").hidden = rows.length === 0;
  $("download").disabled = rows.length === 0;
}

async function predictChunk(inputs, beams) {
  const r = await fetch("/predict", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ inputs, num_beams: beams, verify: Boolean(info.verify) }),
  });
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body.results;
}

$("run").addEventListener("click", async () => {
  const inputs = $("smiles").value.split(/\r?\n/).map((s) => s.trim()).filter(Boolean);
  if (!inputs.length) { setStatus("enter at least one SMILES", true); return; }
  const beams = Number($("beams").value);
  const size = info.limits.max_inputs;
  rows = []; render();
  $("run").disabled = true;
  try {
    for (let i = 0; i < inputs.length; i += size) {
      setStatus(`naming ${Math.min(i + size, inputs.length)} of ${inputs.length}…`);
      const results = await predictChunk(inputs.slice(i, i + size), beams);
      rows.push(...results); render();
    }
    setStatus(`${rows.length} named` + (info.verify ? `, ${rows.filter((r) => r.verified).length} verified by round trip` : ""));
  } catch (err) {
    setStatus(String(err.message || err), true);
  } finally {
    $("run").disabled = false;
  }
});

function csvField(v) {
  const s = v === null || v === undefined ? "" : String(v);
  return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

$("download").addEventListener("click", () => {
  // The uploaded file's columns are kept when its rows are the ones named.
  const keep = csvColumns && csvColumns.rows.length === rows.length;
  const header = [...(keep ? csvColumns.header : ["input"]), "prediction", "round_trip"];
  const lines = [header.map(csvField).join(",")];
  rows.forEach((r, i) => {
    const first = keep ? csvColumns.rows[i] : [r.input];
    const verdict = r.verified === true ? "yes" : r.verified === false ? "no" : "";
    lines.push([...first, r.prediction, verdict].map(csvField).join(","));
  });
  const blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = "seqtune_predictions.csv";
  document.body.appendChild(a); a.click(); a.remove();
});

loadInfo().catch((err) => setStatus("cannot load /info: " + err, true));
