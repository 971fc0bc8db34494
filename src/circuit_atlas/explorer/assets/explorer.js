/* circuit-atlas explorer: the page's behaviour. Drawing is Cytoscape.js (graph) and Chart.js
 * (curves); this file only turns the embedded JSON (circuit_atlas.explorer.data) into their
 * elements and datasets and wires the controls. State lives in `state` and in the URL hash
 * (#model=..&task=..&step=..&compare=..&ref=..), so a view can be linked. `window.explorer`
 * exposes what is drawn, for the browser test (tests/test_explorer.py). */
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("explorer-data").textContent);
  const NAMES = D.names;
  const MODELS = D.models.map((m) => m.name);
  const SHAPE = Object.fromEntries(D.models.map((m) => [m.name, m]));
  const ROLE = Object.fromEntries(D.roles.map((r) => [r.role, r]));
  const STATUS_COLORS = { added: "#1a9850", removed: "#f46d43", kept: "#9e9e9e" };
  const X = 64, Y = 84;
  const $ = (id) => document.getElementById(id);
  const state = { model: MODELS[MODELS.length - 1], task: null, step: null,
                  compare: "off", refStep: null, refModel: null };

  const key = (m, t, s) => m + "|" + t + "|" + s;
  const fmtTokens = (t) => (t === null || t === undefined ? "?" : t === 0 ? "0" :
                            Number(t).toExponential(2).replace("e+", "e"));
  const fmt = (v, d) => (v === null || v === undefined ? "—" : Number(v).toPrecision(d || 4));

  function tasksOf(model) {
    return D.tasks.map((t) => t.name).filter((t) =>
      D.checkpoints[model].some((c) => key(model, t, c.step) in D.circuits));
  }
  function checkpointsOf(model, task) {
    return D.checkpoints[model].filter((c) => key(model, task, c.step) in D.circuits);
  }
  /* Slider positions on a log axis of tokens seen (0..1000); tokens 0 half a decade left. */
  function positions(cks) {
    const known = cks.every((c) => c.tokens !== null);
    const positive = cks.map((c) => (known ? c.tokens : c.step + 1)).filter((t) => t > 0);
    const low = positive.length ? Math.log10(Math.min(...positive)) - 0.5 : 0;
    const raw = cks.map((c) => {
      const t = known ? c.tokens : c.step + 1;
      return t > 0 ? Math.log10(t) : low;
    });
    const lo = Math.min(...raw), hi = Math.max(...raw);
    return raw.map((r) => (hi > lo ? Math.round((1000 * (r - lo)) / (hi - lo)) : 0));
  }
  function nearestByTokens(cks, tokens, step) {
    let best = cks[cks.length - 1], bestGap = Infinity;
    for (const c of cks) {
      const gap = tokens !== null && c.tokens !== null
        ? Math.abs(Math.log10(c.tokens + 1) - Math.log10(tokens + 1)) : Math.abs(c.step - step);
      if (gap < bestGap) { best = c; bestGap = gap; }
    }
    return best;
  }
  function tokensAt(model, step) {
    const c = D.checkpoints[model].find((c) => c.step === step);
    return c ? c.tokens : null;
  }
  function circuit(model, task, step) {
    const c = D.circuits[key(model, task, step)];
    if (!c) return null;
    const edges = c.p.map((p, i) => {
      const port = NAMES[c.c[i]];
      return { edge: NAMES[p] + "->" + port, parent: NAMES[p],
               child: port.replace(/<[qkv]>$/, ""), score: c.s[i] };
    });
    return { meta: c, edges };
  }

  /* Layered layout: input at the bottom, one row per layer (its heads, then its MLP), logits on
   * top. Cytoscape's y grows downwards, so rows are placed from the top. */
  function shapeOf(models, nodes) {
    let nL = 0, nH = 0;
    for (const m of models) { nL = Math.max(nL, SHAPE[m].n_layers || 0); nH = Math.max(nH, SHAPE[m].n_heads || 0); }
    for (const n of nodes) {
      const h = /^a(\d+)\.h(\d+)$/.exec(n), mlp = /^m(\d+)$/.exec(n);
      if (h) { nL = Math.max(nL, +h[1] + 1); nH = Math.max(nH, +h[2] + 1); }
      if (mlp) nL = Math.max(nL, +mlp[1] + 1);
    }
    return { nL: Math.max(nL, 1), nH: Math.max(nH, 1) };
  }
  function position(node, s) {
    const top = s.nL + 1, mid = ((s.nH + 0.6) * X) / 2;
    if (node === "input") return { x: mid, y: top * Y };
    if (node === "logits") return { x: mid, y: 0 };
    const h = /^a(\d+)\.h(\d+)$/.exec(node);
    if (h) return { x: +h[2] * X, y: (top - (+h[1] + 1)) * Y };
    const mlp = /^m(\d+)$/.exec(node);
    if (mlp) return { x: (s.nH + 0.6) * X, y: (top - (+mlp[1] + 1)) * Y };
    return null;
  }

  const cy = cytoscape({
    container: $("graph"), minZoom: 0.05, maxZoom: 4,
    boxSelectionEnabled: false, autoungrabify: true,
    style: [
      { selector: "node", style: { "background-color": "data(color)", label: "data(id)",
        "font-size": 9, "text-valign": "top", "text-margin-y": -3, width: 16, height: 16,
        "border-width": 1, "border-color": "#fff" } },
      { selector: "node.mlp", style: { shape: "round-rectangle", width: 24 } },
      { selector: "node.io", style: { shape: "diamond", width: 22, height: 22 } },
      { selector: "node.role", style: { "border-width": 2, "border-color": "#111", width: 20, height: 20 } },
      { selector: "node.layer", style: { "background-opacity": 0, "border-width": 0, label: "data(text)",
        "text-valign": "center", color: "#888", "font-size": 11, events: "no" } },
      { selector: "edge", style: { width: "data(w)", "line-color": "data(color)", opacity: 0.6,
        "curve-style": "data(curve)" } },
      { selector: "edge.removed", style: { "line-style": "dashed" } },
      { selector: "edge.hi", style: { opacity: 1, "z-index": 9 } },
    ],
  });
  window.cy = cy;

  let drawn = { edges: [], nodes: [] };
  function draw() {
    const cur = circuit(state.model, state.task, state.step);
    const ref = state.compare === "off" ? null : circuit(refModel(), state.task, refStepFor());
    const notes = [];
    let rows = [];
    if (!cur) notes.push("No circuit stored for this checkpoint.");
    else rows = cur.edges.map((e) => ({ ...e, status: "drawn" }));
    if (cur && cur.meta.drawn < cur.meta.n_edges)
      notes.push(`This circuit has ${cur.meta.n_edges} edges, more than the cap of ` +
                 `${D.max_edges}: the top ${cur.meta.drawn} by |score| are drawn.`);
    if (cur && !cur.meta.faithful)
      notes.push("Not a faithful minimal circuit (faithfulness " +
                 (cur.meta.faithfulness === null ? "undefined" : fmt(cur.meta.faithfulness, 3)) +
                 "): the stored fallback is drawn; the report's size and Jaccard curves leave it out.");
    let summary = "";
    if (ref) {
      const now = new Map(rows.map((e) => [e.edge, e]));
      const before = new Map(ref.edges.map((e) => [e.edge, e]));
      rows = rows.map((e) => ({ ...e, status: before.has(e.edge) ? "kept" : "added" }));
      for (const [name, e] of before) if (!now.has(name)) rows.push({ ...e, status: "removed" });
      const count = (s) => rows.filter((e) => e.status === s).length;
      const union = rows.length, kept = count("kept");
      summary = `compare with ${refModel()} step ${refStepFor()}: +${count("added")} added, ` +
                `−${count("removed")} removed, ${kept} kept (edge Jaccard ${fmt(union ? kept / union : 0, 3)})`;
      if (ref.meta.drawn < ref.meta.n_edges) notes.push("The reference circuit is capped too: " +
        "the comparison is between the drawn edges.");
    } else if (state.compare !== "off") notes.push("No reference circuit stored.");
    const nodeNames = new Set(["input", "logits"]);
    for (const e of rows) { nodeNames.add(e.parent); nodeNames.add(e.child); }
    const shp = shapeOf(state.compare === "model" ? [state.model, refModel()] : [state.model], nodeNames);
    const roles = Object.assign({}, ref ? ref.meta.roles : {}, cur ? cur.meta.roles : {});
    const top = Math.max(1e-30, ...rows.map((e) => Math.abs(e.score || 0)));
    const curve = rows.length > 600 ? "haystack" : "bezier";
    const elements = [];
    for (const n of nodeNames) {
      const p = position(n, shp);
      if (!p) continue;
      const mine = roles[n] || [];
      const cls = [n.startsWith("m") ? "mlp" : n === "input" || n === "logits" ? "io" : "head"];
      if (mine.length) cls.push("role");
      elements.push({ group: "nodes", position: p, classes: cls.join(" "),
        data: { id: n, roles: mine, role: mine[0] || null,
                color: mine.length ? ROLE[mine[0]].color : "#555" } });
    }
    for (let l = 0; l < shp.nL; l++)
      elements.push({ group: "nodes", classes: "layer", position: { x: -X, y: (shp.nL - l) * Y },
                      data: { id: "__L" + l, text: "L" + l, layer: true, color: "#fff" } });
    const present = new Set(elements.map((e) => e.data.id));
    const sign = (s) => (s >= 0 ? D.colors.positive : D.colors.negative);
    for (const e of rows) {
      if (!present.has(e.parent) || !present.has(e.child)) continue;
      elements.push({ group: "edges", classes: e.status,
        data: { id: e.edge, source: e.parent, target: e.child, score: e.score, status: e.status,
                w: 0.6 + (5 * Math.abs(e.score || 0)) / top, curve,
                color: e.status === "drawn" ? sign(e.score) : STATUS_COLORS[e.status] } });
    }
    cy.batch(() => { cy.elements().remove(); cy.add(elements); });
    cy.fit(undefined, 24);
    drawn = { edges: rows, nodes: [...nodeNames] };
    const meta = cur ? cur.meta : null;
    $("status").textContent = `${state.model} · ${state.task} · step ${state.step} · ` +
      `${fmtTokens(tokensAt(state.model, state.step))} tokens · ` +
      (meta ? `${meta.n_edges} edges, ${meta.n_nodes} nodes · faithfulness ${fmt(meta.faithfulness, 3)}` : "no circuit");
    $("compare-summary").textContent = summary;
    $("notice").innerHTML = "";
    for (const n of notes) { const p = document.createElement("p"); p.textContent = n; $("notice").appendChild(p); }
    $("notice").hidden = !notes.length;
    updateCharts();
    writeHash();
  }

  /* Hover: name, score and role. */
  const tip = $("tip");
  cy.on("mouseover", "node, edge", (ev) => {
    const el = ev.target;
    if (el.data("layer")) return;
    let text;
    if (el.isNode()) {
      const out = el.connectedEdges().filter((e) => e.source().id() === el.id() && e.data("status") !== "removed");
      const attribution = out.reduce((s, e) => s + (e.data("score") || 0), 0);
      const roles = (el.data("roles") || []).map((r) => ROLE[r].label).join(", ") || "none";
      text = `${el.id()}\nrole: ${roles}\nΣ score of drawn outgoing edges: ${fmt(attribution)}`;
    } else {
      text = `${el.id()}\nscore: ${fmt(el.data("score"))}` +
             (el.data("status") !== "drawn" ? `\n${el.data("status")}` : "");
      el.addClass("hi");
    }
    tip.textContent = text;
    const r = $("graph").getBoundingClientRect(), p = ev.renderedPosition;
    tip.style.left = r.left + window.scrollX + p.x + 12 + "px";
    tip.style.top = r.top + window.scrollY + p.y + 12 + "px";
    tip.hidden = false;
  });
  cy.on("mouseout", "node, edge", (ev) => { tip.hidden = true; ev.target.removeClass("hi"); });

  /* Curves beside the graph. */
  Chart.defaults.animation = false;
  Chart.defaults.font.size = 10;
  const PANELS = [
    ["chart-metric", "task metric (clean)", (s) => [["metric", s.metric]]],
    ["chart-faith", "faithfulness", (s) => [["faithfulness", s.faithfulness]]],
    ["chart-size", "circuit size", (s) => [["nodes", s.nodes], ["edges", s.edges]]],
    ["chart-jaccard", "edge Jaccard with the previous faithful checkpoint", (s) => [["Jaccard", s.jaccard]]],
  ];
  const LINE_COLORS = ["#333", "#7f7f7f"];
  const charts = PANELS.map(([id, title]) => new Chart($(id), {
    type: "line", data: { datasets: [] },
    options: { responsive: true, maintainAspectRatio: false, parsing: false, normalized: true,
      plugins: { title: { display: true, text: title }, legend: { display: false },
                 tooltip: { callbacks: { title: (items) => items.length ? `tokens ${fmtTokens(items[0].raw.x)}` : "" } } },
      scales: { x: { type: "logarithmic", title: { display: true, text: "tokens seen" },
                     ticks: { maxRotation: 0, autoSkip: true,
                             callback: (v) => (Number.isInteger(Math.log10(v)) ? "1e" + Math.log10(v) : "") } },
                y: { beginAtZero: false } } },
  }));
  function updateCharts() {
    const s = D.series[state.model + "|" + state.task];
    const refS = state.compare === "off" ? null : D.series[refModel() + "|" + state.task];
    PANELS.forEach(([, , pick], i) => {
      const sets = [];
      if (s) {
        pick(s).forEach(([label, values], j) => {
          const pts = values.map((v, k) => ({ x: s.tokens[k], y: v }))
            .filter((p) => p.x > 0 && p.y !== null);
          sets.push({ label: `${state.model} ${label}`, data: pts, borderColor: LINE_COLORS[j],
                      backgroundColor: LINE_COLORS[j], pointRadius: 2, borderWidth: 1.5 });
        });
        const mark = (series, step, color, who) => {
          const k = series.step.indexOf(step);
          if (k < 0 || !(series.tokens[k] > 0)) return;
          pick(series).forEach(([label, values]) => {
            if (values[k] !== null) sets.push({ label: `${who} ${label}`, data: [{ x: series.tokens[k], y: values[k] }],
              showLine: false, pointRadius: 6, pointStyle: "circle", borderColor: color, backgroundColor: color });
          });
        };
        if (refS) mark(refS, refStepFor(), STATUS_COLORS.removed, "reference");
        mark(s, state.step, "#d62728", "current");
      }
      charts[i].data.datasets = sets;
      charts[i].update("none");
    });
  }

  /* Controls. */
  const modelSel = $("model"), taskSel = $("task"), slider = $("step"), refSlider = $("ref-step");
  const compareSel = $("compare"), refModelSel = $("ref-model");
  function fill(select, values, labels) {
    select.innerHTML = "";
    values.forEach((v, i) => { const o = document.createElement("option"); o.value = v; o.textContent = labels ? labels[i] : v; select.appendChild(o); });
  }
  const sizeLabel = (m) => (SHAPE[m].params ? `${m} (${(SHAPE[m].params / 1e6).toPrecision(3)}M params)` : m);
  fill(modelSel, MODELS, MODELS.map(sizeLabel));
  function refModel() {
    return state.compare === "model" && state.refModel ? state.refModel : state.model;
  }
  function refStepFor() {
    if (state.compare === "checkpoint") return state.refStep;
    if (state.compare === "model") {
      const cks = checkpointsOf(refModel(), state.task);
      return cks.length ? nearestByTokens(cks, tokensAt(state.model, state.step), state.step).step : null;
    }
    return null;
  }
  function setupSlider(el, list, current, labelId) {
    const pos = positions(list);
    el.dataset.positions = JSON.stringify(pos);
    const ticks = $(el.getAttribute("list"));
    ticks.innerHTML = "";
    pos.forEach((p) => { const o = document.createElement("option"); o.value = p; ticks.appendChild(o); });
    const i = Math.max(0, list.findIndex((c) => c.step === current));
    el.value = pos[i];
    $(labelId).textContent = list.length ? `step ${list[i].step} · ${fmtTokens(list[i].tokens)} tokens` : "—";
  }
  function sliderIndex(el) {
    const pos = JSON.parse(el.dataset.positions || "[]"), v = +el.value;
    let best = 0;
    pos.forEach((p, i) => { if (Math.abs(p - v) < Math.abs(pos[best] - v)) best = i; });
    return best;
  }
  function refresh() {
    const tasks = tasksOf(state.model);
    fill(taskSel, tasks);
    if (!tasks.includes(state.task)) state.task = tasks.includes("ioi") ? "ioi" : tasks[0];
    taskSel.value = state.task;
    modelSel.value = state.model;
    const cks = checkpointsOf(state.model, state.task);
    if (!cks.some((c) => c.step === state.step)) state.step = cks.length ? cks[cks.length - 1].step : null;
    setupSlider(slider, cks, state.step, "step-label");
    compareSel.value = state.compare;
    $("ref-checkpoint-box").hidden = state.compare !== "checkpoint";
    $("ref-model-box").hidden = state.compare !== "model";
    if (state.compare === "checkpoint") {
      if (!cks.some((c) => c.step === state.refStep)) state.refStep = cks.length ? cks[0].step : null;
      setupSlider(refSlider, cks, state.refStep, "ref-step-label");
    }
    if (state.compare === "model") {
      const others = MODELS.filter((m) => m !== state.model && tasksOf(m).includes(state.task));
      fill(refModelSel, others, others.map(sizeLabel));
      if (!others.includes(state.refModel)) state.refModel = others.length ? others[others.length - 1] : null;
      if (state.refModel) refModelSel.value = state.refModel;
    }
    draw();
  }
  function moveTo(el, index, field) {
    const cks = checkpointsOf(state.model, state.task);
    const i = Math.min(Math.max(index, 0), cks.length - 1);
    if (i < 0 || !cks.length) return;
    state[field] = cks[i].step;
    refresh();
  }
  for (const [el, field] of [[slider, "step"], [refSlider, "refStep"]]) {
    el.addEventListener("input", () => moveTo(el, sliderIndex(el), field));
    el.addEventListener("keydown", (ev) => {  /* arrow keys step through the checkpoints */
      const delta = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1 }[ev.key];
      if (delta === undefined) return;
      ev.preventDefault();
      moveTo(el, sliderIndex(el) + delta, field);
    });
  }
  modelSel.addEventListener("change", () => {
    const tokens = tokensAt(state.model, state.step), step = state.step;
    state.model = modelSel.value;
    const task = tasksOf(state.model).includes(state.task) ? state.task : tasksOf(state.model)[0];
    const cks = checkpointsOf(state.model, task);
    state.step = cks.length ? nearestByTokens(cks, tokens, step).step : null;
    refresh();
  });
  taskSel.addEventListener("change", () => { state.task = taskSel.value; refresh(); });
  compareSel.addEventListener("change", () => { state.compare = compareSel.value; refresh(); });
  refModelSel.addEventListener("change", () => { state.refModel = refModelSel.value; refresh(); });

  function writeHash() {
    const parts = { model: state.model, task: state.task, step: state.step, compare: state.compare };
    if (state.compare === "checkpoint") parts.ref = state.refStep;
    if (state.compare === "model") parts.ref = state.refModel;
    const text = Object.entries(parts).map(([k, v]) => k + "=" + encodeURIComponent(v)).join("&");
    history.replaceState(null, "", "#" + text);
  }
  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    if (MODELS.includes(params.get("model"))) state.model = params.get("model");
    if (params.get("task")) state.task = params.get("task");
    if (params.get("step") !== null && params.get("step") !== "") state.step = +params.get("step");
    if (["off", "checkpoint", "model"].includes(params.get("compare"))) state.compare = params.get("compare");
    const ref = params.get("ref");
    if (ref !== null && state.compare === "checkpoint") state.refStep = +ref;
    if (ref !== null && state.compare === "model") state.refModel = ref;
  }

  /* Role legend. */
  const legend = $("legend");
  const item = (color, text, shape) => {
    const s = document.createElement("span"); s.className = "key";
    s.innerHTML = `<i class="${shape}" style="background:${color}"></i>`;
    s.appendChild(document.createTextNode(text)); legend.appendChild(s);
  };
  item(D.colors.positive, "positive score", "line"); item(D.colors.negative, "negative score", "line");
  item(STATUS_COLORS.added, "added (compare)", "line"); item(STATUS_COLORS.removed, "removed (compare, dashed)", "line");
  item(STATUS_COLORS.kept, "kept (compare)", "line");
  for (const r of D.roles) item(r.color, r.label, "dot");
  item("#555", "no role", "dot");

  readHash();
  refresh();
  window.explorer = {
    data: D, state, cy,
    /** Edges drawn now, read back from Cytoscape: [{edge, score, status}]. */
    drawnEdges: () => cy.edges().map((e) => ({ edge: e.id(), score: e.data("score"), status: e.data("status") })),
    /** Nodes drawn now (layer labels excluded): [{node, role, roles}]. */
    drawnNodes: () => cy.nodes().filter((n) => !n.data("layer")).map((n) => ({ node: n.id(), role: n.data("role"), roles: n.data("roles") })),
    /** Points marked as the current checkpoint in the curves: [{chart, x, y}]. */
    marked: () => charts.flatMap((c, i) => c.data.datasets.filter((d) => d.label.startsWith("current"))
      .map((d) => ({ chart: PANELS[i][0], x: d.data[0].x, y: d.data[0].y }))),
    ready: true,
  };
  document.body.dataset.ready = "1";
})();
