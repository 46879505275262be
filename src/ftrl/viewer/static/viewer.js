// ftrl run viewer: plain JavaScript, no library, no network. Data files call FTRL.put(key, value); they are
// loaded with <script> tags because browsers refuse to fetch local (file://) files.
"use strict";

const FTRL = (window.FTRL = {
  store: {},
  waiting: {},
  put(key, value) {
    this.store[key] = value;
    (this.waiting[key] || []).forEach((resolve) => resolve(value));
    delete this.waiting[key];
  },
});

function load(key) {
  return new Promise((resolve, reject) => {
    if (key in FTRL.store) return resolve(FTRL.store[key]);
    const first = !FTRL.waiting[key];
    (FTRL.waiting[key] = FTRL.waiting[key] || []).push(resolve);
    if (!first) return;
    const script = document.createElement("script");
    script.src = "data/" + key + ".js";
    script.onerror = () => reject(new Error("cannot load data/" + key + ".js"));
    document.head.appendChild(script);
  });
}

const $ = (selector, root = document) => root.querySelector(selector);
const esc = (value) =>
  String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const NA = '<span class="na">n/a</span>';
const fmt = (value, digits = 1) => (value === null || value === undefined || Number.isNaN(value) ? NA : Number(value).toFixed(digits));
const x100 = (value) => (value === null || value === undefined ? NA : (100 * value).toFixed(1));
const signed = (value, digits = 1) => (value > 0 ? "+" : "") + Number(value).toFixed(digits);
const cls = (value) => (value > 0 ? "pos" : value < 0 ? "neg" : "");
function status(text) {
  $("#status").textContent = text || "";
}

let INDEX = null;
const views = {};
const rendered = {};

function show(name) {
  if (!views[name]) name = "overview";
  document.querySelectorAll(".view").forEach((el) => el.classList.toggle("active", el.id === name));
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === name));
  if (!rendered[name]) {
    rendered[name] = true;
    views[name]($("#" + name));
  }
}

// ---- small pieces ---------------------------------------------------------------------------------------
const definedP = (stats) => {
  const calls = stats.calls !== undefined ? stats.calls : stats.avg_calls;
  return calls === undefined || calls > 0;
};
const evalByKey = (key) => INDEX.evals.find((run) => run.key === key);

function select(options, value) {
  return options
    .map(([v, label]) => `<option value="${esc(v)}"${String(v) === String(value) ? " selected" : ""}>${esc(label)}</option>`)
    .join("");
}

function chart(curve, width = 300, height = 150) {
  const points = curve.steps.map((step, i) => [step, curve.values[i], curve.spread ? curve.spread[i] : null]);
  const known = points.filter((p) => p[1] !== null);
  if (!known.length) return "";
  const lows = known.map((p) => p[1] - (p[2] || 0));
  const highs = known.map((p) => p[1] + (p[2] || 0));
  let lo = Math.min(...lows);
  let hi = Math.max(...highs);
  if (hi === lo) {
    hi += 1;
    lo -= lo === 0 ? 0 : 1;
  }
  const s0 = Math.min(...known.map((p) => p[0]));
  const s1 = Math.max(...known.map((p) => p[0]));
  const pad = { l: 44, r: 8, t: 6, b: 20 };
  const X = (s) => pad.l + (s1 === s0 ? 0.5 : (s - s0) / (s1 - s0)) * (width - pad.l - pad.r);
  const Y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (height - pad.t - pad.b);
  let band = "";
  if (curve.spread) {
    const top = known.map((p) => `${X(p[0])},${Y(p[1] + (p[2] || 0))}`);
    const bottom = known.map((p) => `${X(p[0])},${Y(p[1] - (p[2] || 0))}`).reverse();
    band = `<polygon points="${top.concat(bottom).join(" ")}" fill="#2f5fd0" opacity="0.15"/>`;
  }
  const line = known.map((p) => `${X(p[0])},${Y(p[1])}`).join(" ");
  const dots = known.length < 40 ? known.map((p) => `<circle cx="${X(p[0])}" cy="${Y(p[1])}" r="2.2" fill="#2f5fd0"/>`).join("") : "";
  const axis =
    `<line x1="${pad.l}" y1="${height - pad.b}" x2="${width - pad.r}" y2="${height - pad.b}" stroke="#999"/>` +
    `<line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${height - pad.b}" stroke="#999"/>` +
    `<text x="${pad.l - 4}" y="${pad.t + 8}" font-size="10" text-anchor="end">${+hi.toPrecision(3)}</text>` +
    `<text x="${pad.l - 4}" y="${height - pad.b}" font-size="10" text-anchor="end">${+lo.toPrecision(3)}</text>` +
    `<text x="${pad.l}" y="${height - 5}" font-size="10">step ${s0}</text>` +
    `<text x="${width - pad.r}" y="${height - 5}" font-size="10" text-anchor="end">${s1}</text>`;
  return (
    `<div class="chart"><div class="t">${esc(curve.title)}</div>` +
    `<svg width="${width}" height="${height}" role="img" aria-label="${esc(curve.title)}">${axis}${band}` +
    `<polyline points="${line}" fill="none" stroke="#2f5fd0" stroke-width="1.6"/>${dots}</svg></div>`
  );
}

function intervalBar(interval, scale) {
  const width = 220;
  const X = (v) => width / 2 + (v / scale) * (width / 2 - 6);
  const color = interval.low > 0 ? "#13795b" : interval.high < 0 ? "#b42318" : "#6b7280";
  return (
    `<svg width="${width}" height="18"><line x1="${width / 2}" y1="0" x2="${width / 2}" y2="18" stroke="#999"/>` +
    `<line x1="${X(interval.low)}" y1="9" x2="${X(interval.high)}" y2="9" stroke="${color}" stroke-width="3"/>` +
    `<circle cx="${X(interval.mean)}" cy="9" r="4" fill="${color}"/></svg>`
  );
}

// ---- overview -------------------------------------------------------------------------------------------
views.overview = (root) => {
  let html = "";
  const evals = INDEX.evals;
  if (evals.length) {
    const scenarios = [];
    evals.forEach((run) => Object.keys(run.scenarios).forEach((s) => scenarios.includes(s) || scenarios.push(s)));
    html += "<h2>Scores per scenario (x100)</h2><table id='scores'><thead><tr><th class='l'>scenario</th>";
    evals.forEach((run) => (html += `<th colspan="4">${esc(run.name)}</th>`));
    html += "</tr><tr><th></th>" + evals.map(() => "<th>P</th><th>R</th><th>F1</th><th>acc</th>").join("") + "</tr></thead><tbody>";
    for (const scenario of [...scenarios, "mean"]) {
      html += `<tr><td class="l">${scenario === "mean" ? "<b>mean</b>" : esc(scenario)}</td>`;
      for (const run of evals) {
        const stats = scenario === "mean" ? run.mean : run.scenarios[scenario];
        if (!stats) {
          html += "<td>-</td><td>-</td><td>-</td><td>-</td>";
          continue;
        }
        html += `<td>${definedP(stats) ? fmt(stats.solve_p) : NA}</td><td>${fmt(stats.solve_r)}</td>`;
        html += `<td><b>${fmt(stats.solve_f1)}</b></td><td>${fmt(stats.accuracy)}</td>`;
      }
      html += "</tr>";
    }
    html += "</tbody></table>";
    html +=
      "<p class='legend'>P, R, F1 = Solve-P, Solve-R, Solve-F1; acc = final-answer accuracy (%). " +
      "n/a: the stage made no tool call, so it has no precision (the per-episode score counts such an episode as 1.0, as the reference does).</p>";
    html += "<p class='legend'>" + evals.map((run) => `${esc(run.name)}: ${esc(run.model)} on ${esc(run.envs)}, ${run.n} episodes`).join("<br>") + "</p>";
  }
  const times = Object.entries(INDEX.stage_times);
  if (times.length || INDEX.trainings.length) {
    html += "<h2>Stage times</h2><table id='times'><tr><th class='l'>stage</th><th>seconds</th></tr>";
    for (const [folder, stages] of times)
      for (const [title, seconds] of Object.entries(stages)) html += `<tr><td class="l">${esc(folder)}: ${esc(title)}</td><td>${fmt(seconds)}</td></tr>`;
    for (const t of INDEX.trainings) html += `<tr><td class="l">${esc(t.name)} (${t.kind}, ${t.n_steps} steps, sum of step times)</td><td>${fmt(t.seconds)}</td></tr>`;
    html += "</table>";
  }
  if (INDEX.pairs.length) {
    const scale = Math.max(1, ...INDEX.pairs.map((p) => Math.max(Math.abs(p.interval.low), Math.abs(p.interval.high))));
    html += "<h2>Paired differences of mean Solve-F1 (x100)</h2><table id='pairs'><tr><th class='l'>comparison</th><th>diff</th><th>95% CI</th>";
    html += `<th class="l">interval (scale ±${scale.toFixed(0)})</th><th>improved</th><th>regressed</th><th>same</th><th>n</th></tr>`;
    for (const pair of INDEX.pairs) {
      const d = pair.interval;
      html += `<tr><td class="l">${esc(d.b)} - ${esc(d.a)}${pair.consecutive ? "" : " <span class='na'>(not adjacent)</span>"}</td>`;
      html += `<td class="${cls(d.mean)}">${signed(d.mean)}</td><td>[${signed(d.low)}, ${signed(d.high)}]</td><td class="l">${intervalBar(d, scale)}</td>`;
      html += `<td>${pair.improved}</td><td>${pair.regressed}</td><td>${pair.same}</td><td>${d.n}</td></tr>`;
    }
    html += "</table><p class='legend'>Per-environment change averaged like the headline (mean over scenarios); 95% percentile bootstrap over environments resampled within each scenario.</p>";
  }
  for (const training of INDEX.trainings) {
    html += `<h2>Training: ${esc(training.name)} <span class="na">(${training.kind}, ${training.n_steps} steps)</span></h2>`;
    html += `<div class="charts">${training.curves.map((c) => chart(c)).join("")}</div>`;
  }
  if (!html) html = "<p>No runs.</p>";
  root.innerHTML = html;
};

// ---- chat rendering -------------------------------------------------------------------------------------
function pretty(args) {
  if (typeof args !== "string") return JSON.stringify(args, null, 1);
  try {
    return JSON.stringify(JSON.parse(args));
  } catch (e) {
    return args;
  }
}

function rewardBadge(reward) {
  if (!reward) return "";
  const solved = reward.solved.length ? "; solved " + reward.solved.map((s) => `${s[0]} = ${s[1]}`).join(", ") : "";
  const kind = reward.reward > 0 ? "r-pos" : reward.reward < 0 ? "r-neg" : "";
  return `<span class="reward ${kind}" title="per-turn Solve-F1 reward (${esc(reward.branch)})">reward ${signed(reward.reward, 2)} <span class="na">${esc(reward.branch)}${esc(solved)}</span></span>`;
}

function chat(messages, rewards) {
  return messages
    .map((message, i) => {
      const role = message.role;
      if (role === "system")
        return `<details class="msg system"><summary>system prompt (${String(message.content || "").length} chars)</summary><pre>${esc(message.content)}</pre></details>`;
      let body = message.content ? `<pre>${esc(message.content)}</pre>` : "";
      for (const call of message.tool_calls || [])
        body += `<div class="call"><span class="name">${esc(call.function.name)}</span><pre>${esc(pretty(call.function.arguments))}</pre></div>`;
      const error = role === "tool" && message.error;
      const label = role === "tool" ? (error ? "tool error" : "tool output") : role;
      return `<div class="msg ${role}${error ? " error" : ""}">${rewardBadge(rewards && rewards[i])}<div class="role">${label}</div>${body}</div>`;
    })
    .join("");
}

function goldPanel(episode) {
  if (!episode.gold) return "<p class='na'>No environment file: gold trajectory unavailable.</p>";
  const gold = episode.gold;
  let html = "<h3>Gold trajectory</h3>";
  if (!gold.calls.length) html += "<p class='na'>The environment carries no gold calls.</p>";
  gold.calls.forEach((call, i) => {
    html += `<div class="call"><span class="na">${i + 1}.</span> <span class="name">${esc(call.name)}</span><pre>${esc(pretty(call.arguments))}</pre></div>`;
  });
  html += "<h3>Sub-answers owed (per tool)</h3><table>";
  for (const [tool, answers] of Object.entries(gold.unsolved_set)) html += `<tr><td class="l">${esc(tool)}</td><td class="l">${esc(answers.join(", "))}</td></tr>`;
  return html + "</table>";
}

function answerBox(episode) {
  const final = [...episode.messages].reverse().find((m) => m.role === "assistant");
  const gold = episode.gold ? episode.gold.answer : null;
  return (
    `<div class="answers"><b>final answer</b><pre>${esc(final ? final.content || "(empty)" : "(none)")}</pre>` +
    `<b>gold answer</b><pre>${gold === null ? "(unknown)" : esc(gold)}</pre>` +
    `<b>verdict</b><span><span class="badge ${episode.correct ? "ok" : "bad"}">${episode.correct ? "correct" : "wrong"}</span></span></div>`
  );
}

function episodeHeader(run, episode) {
  const m = episode.metrics;
  const p = episode.n_calls ? x100(m.solve_precision) : NA;
  return (
    `<h3>${esc(run.name)} · episode ${esc(episode.id)} · ${esc(episode.scenario)}</h3>` +
    `<p>F1 <b>${x100(m.solve_f1)}</b> · P ${p} · R ${x100(m.solve_r ?? m.solve_rate)} · ${episode.n_calls} calls · ` +
    `${episode.n_errors} errors · ${episode.turns} turns</p>`
  );
}

async function episodeOf(runKey, id) {
  const list = await load(runKey + "/list");
  const row = list.find((r) => r[0] === id);
  if (!row) return null;
  const page = await load(`${runKey}/p${row[11]}`);
  return page.find((e) => e.id === id) || null;
}

// ---- episodes -------------------------------------------------------------------------------------------
const PER_PAGE = 50;
const listState = { run: null, scenario: "", outcome: "", f1min: "", f1max: "", search: "", page: 0, selected: null };

function matches(row) {
  const s = listState;
  if (s.scenario && row[1] !== s.scenario) return false;
  const f1 = 100 * (row[2] ?? 0);
  if (s.f1min !== "" && f1 < Number(s.f1min)) return false;
  if (s.f1max !== "" && f1 > Number(s.f1max)) return false;
  if (s.outcome === "correct" && !row[5]) return false;
  if (s.outcome === "wrong" && row[5]) return false;
  if (s.outcome === "solved" && row[4] !== 1) return false;
  if (s.outcome === "nocall" && row[6] !== 0) return false;
  if (s.outcome === "errors" && row[7] === 0) return false;
  if (s.search) {
    const needle = s.search.toLowerCase();
    if (!(row[0] + " " + row[9] + " " + row[10]).toLowerCase().includes(needle)) return false;
  }
  return true;
}

views.episodes = async (root) => {
  if (!INDEX.evals.length) {
    root.innerHTML = "<p>No evaluation runs.</p>";
    return;
  }
  listState.run = listState.run || INDEX.evals[INDEX.evals.length - 1].key;
  root.innerHTML =
    `<div class="controls">` +
    `<label>run <select id="ep-run">${select(INDEX.evals.map((r) => [r.key, `${r.name} (${r.n})`]), listState.run)}</select></label>` +
    `<label>scenario <select id="ep-scenario"></select></label>` +
    `<label>outcome <select id="ep-outcome">${select(
      [["", "all"], ["correct", "answer correct"], ["wrong", "answer wrong"], ["solved", "all sub-answers solved (R = 100)"], ["nocall", "no tool call"], ["errors", "with tool errors"]],
      listState.outcome
    )}</select></label>` +
    `<label>F1 from <input id="ep-f1min" type="number" min="0" max="100" value="${esc(listState.f1min)}"></label>` +
    `<label>to <input id="ep-f1max" type="number" min="0" max="100" value="${esc(listState.f1max)}"></label>` +
    `<label>search <input id="ep-search" type="search" placeholder="question, answer or id" value="${esc(listState.search)}"></label>` +
    `</div><div id="ep-note" class="note"></div><div id="ep-count" class="note"></div><div id="ep-list"></div><div id="ep-detail"></div>`;
  const rerender = () => {
    listState.page = 0;
    renderList();
  };
  $("#ep-run", root).onchange = (e) => {
    listState.run = e.target.value;
    listState.scenario = "";
    listState.selected = null;
    $("#ep-detail").innerHTML = "";
    setupRun().then(rerender);
  };
  $("#ep-scenario", root).onchange = (e) => ((listState.scenario = e.target.value), rerender());
  $("#ep-outcome", root).onchange = (e) => ((listState.outcome = e.target.value), rerender());
  $("#ep-f1min", root).oninput = (e) => ((listState.f1min = e.target.value), rerender());
  $("#ep-f1max", root).oninput = (e) => ((listState.f1max = e.target.value), rerender());
  $("#ep-search", root).oninput = (e) => ((listState.search = e.target.value), rerender());
  await setupRun();
  renderList();
};

async function setupRun() {
  const run = evalByKey(listState.run);
  const list = await load(run.key + "/list");
  const scenarios = [...new Set(list.map((r) => r[1]))];
  $("#ep-scenario").innerHTML = select([["", "all"], ...scenarios.map((s) => [s, s])], listState.scenario);
  $("#ep-note").textContent = run.envs_note || "";
}

function renderList() {
  const run = evalByKey(listState.run);
  const list = FTRL.store[run.key + "/list"];
  const rows = list.filter(matches);
  const pages = Math.max(1, Math.ceil(rows.length / PER_PAGE));
  listState.page = Math.min(listState.page, pages - 1);
  const shown = rows.slice(listState.page * PER_PAGE, (listState.page + 1) * PER_PAGE);
  $("#ep-count").innerHTML =
    `<span id="ep-shown">${rows.length}</span> of ${list.length} episodes · page ${listState.page + 1} of ${pages} ` +
    `<button id="ep-prev"${listState.page ? "" : " disabled"}>previous</button> <button id="ep-next"${listState.page + 1 < pages ? "" : " disabled"}>next</button>`;
  let html = "<table class='list' id='episode-list'><thead><tr><th class='l'>id</th><th class='l'>scenario</th><th>F1</th><th>P</th><th>R</th>";
  html += "<th>calls</th><th>errors</th><th>turns</th><th>answer</th><th class='l'>question</th></tr></thead><tbody>";
  for (const r of shown) {
    html += `<tr data-id="${esc(r[0])}"${r[0] === listState.selected ? " class='selected'" : ""}><td class="l">${esc(r[0])}</td><td class="l">${esc(r[1])}</td>`;
    html += `<td>${x100(r[2])}</td><td>${x100(r[3])}</td><td>${x100(r[4])}</td><td>${r[6]}</td><td class="${r[7] ? "neg" : ""}">${r[7]}</td><td>${r[8]}</td>`;
    html += `<td><span class="badge ${r[5] ? "ok" : "bad"}">${r[5] ? "correct" : "wrong"}</span></td><td class="q" title="${esc(r[9])}">${esc(r[9])}</td></tr>`;
  }
  $("#ep-list").innerHTML = html + "</tbody></table>";
  $("#ep-prev").onclick = () => ((listState.page -= 1), renderList());
  $("#ep-next").onclick = () => ((listState.page += 1), renderList());
  document.querySelectorAll("#episode-list tbody tr").forEach((tr) => (tr.onclick = () => openEpisode(tr.dataset.id)));
}

async function openEpisode(id) {
  listState.selected = id;
  document.querySelectorAll("#episode-list tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === id));
  const run = evalByKey(listState.run);
  const episode = await episodeOf(run.key, id);
  if (!episode) return status("episode " + id + " not found");
  $("#ep-detail").innerHTML =
    `<div class="panel" id="episode">${episodeHeader(run, episode)}${answerBox(episode)}` +
    `<div class="cols"><div><h3>Model</h3>${chat(episode.messages, episode.rewards)}</div><div>${goldPanel(episode)}</div></div></div>`;
  $("#ep-detail").scrollIntoView({ block: "start" });
}

// ---- diff -----------------------------------------------------------------------------------------------
const diffState = { pair: null, filter: "", scenario: "", page: 0 };

views.diff = async (root) => {
  if (!INDEX.pairs.length) {
    root.innerHTML = "<p>No two evaluations over the same environments.</p>";
    return;
  }
  const pairs = INDEX.pairs;
  diffState.pair = diffState.pair || (pairs.find((p) => p.consecutive && p.b === INDEX.evals[INDEX.evals.length - 1].key) || pairs[0]).key;
  const label = (p) => `${evalByKey(p.b).name} vs ${evalByKey(p.a).name}`;
  root.innerHTML =
    `<div class="controls"><label>compare <select id="df-pair">${select(pairs.map((p) => [p.key, label(p)]), diffState.pair)}</select></label>` +
    `<label>show <select id="df-filter">${select([["", "all, sorted by change"], ["improved", "improved"], ["regressed", "regressed"], ["same", "unchanged"]], diffState.filter)}</select></label>` +
    `<label>scenario <select id="df-scenario"></select></label></div><div id="df-summary" class="note"></div><div id="df-list"></div><div id="df-detail"></div>`;
  $("#df-pair").onchange = (e) => ((diffState.pair = e.target.value), (diffState.page = 0), renderDiff());
  $("#df-filter").onchange = (e) => ((diffState.filter = e.target.value), (diffState.page = 0), renderDiff());
  $("#df-scenario").onchange = (e) => ((diffState.scenario = e.target.value), (diffState.page = 0), renderDiff());
  await renderDiff();
};

async function renderDiff() {
  const pair = INDEX.pairs.find((p) => p.key === diffState.pair);
  const rows = await load(pair.key);
  const a = evalByKey(pair.a);
  const b = evalByKey(pair.b);
  const scenarios = [...new Set(rows.map((r) => r[1]))];
  $("#df-scenario").innerHTML = select([["", "all"], ...scenarios.map((s) => [s, s])], diffState.scenario);
  const d = pair.interval;
  $("#df-summary").innerHTML =
    `${esc(b.name)} - ${esc(a.name)}: mean Solve-F1 change <b class="${cls(d.mean)}">${signed(d.mean)}</b> [${signed(d.low)}, ${signed(d.high)}] · ` +
    `<span class="pos">${pair.improved} improved</span> · <span class="neg">${pair.regressed} regressed</span> · ${pair.same} unchanged`;
  const keep = rows.filter(
    (r) =>
      (!diffState.scenario || r[1] === diffState.scenario) &&
      (diffState.filter === "" || (diffState.filter === "improved" ? r[4] > 0 : diffState.filter === "regressed" ? r[4] < 0 : r[4] === 0))
  );
  const ordered = diffState.filter === "regressed" ? [...keep].reverse() : keep;
  const pages = Math.max(1, Math.ceil(ordered.length / PER_PAGE));
  const shown = ordered.slice(diffState.page * PER_PAGE, (diffState.page + 1) * PER_PAGE);
  let html = `<p class="note">${ordered.length} environments · page ${diffState.page + 1} of ${pages} <button id="df-prev"${diffState.page ? "" : " disabled"}>previous</button> <button id="df-next"${diffState.page + 1 < pages ? "" : " disabled"}>next</button></p>`;
  html += `<table class="list" id="diff-list"><thead><tr><th class="l">id</th><th class="l">scenario</th><th>${esc(a.name)} F1</th><th>${esc(b.name)} F1</th><th>change</th><th class="l">question</th></tr></thead><tbody>`;
  for (const r of shown)
    html += `<tr data-id="${esc(r[0])}"><td class="l">${esc(r[0])}</td><td class="l">${esc(r[1])}</td><td>${x100(r[2])}</td><td>${x100(r[3])}</td><td class="${cls(r[4])}">${signed(100 * r[4])}</td><td class="q">${esc(r[5])}</td></tr>`;
  $("#df-list").innerHTML = html + "</tbody></table>";
  $("#df-prev").onclick = () => ((diffState.page -= 1), renderDiff());
  $("#df-next").onclick = () => ((diffState.page += 1), renderDiff());
  document.querySelectorAll("#diff-list tbody tr").forEach((tr) => (tr.onclick = () => openDiff(pair, tr.dataset.id)));
}

async function openDiff(pair, id) {
  const a = evalByKey(pair.a);
  const b = evalByKey(pair.b);
  const [ea, eb] = await Promise.all([episodeOf(a.key, id), episodeOf(b.key, id)]);
  const side = (run, episode, which) =>
    `<div class="panel" id="diff-${which}">${episodeHeader(run, episode)}${answerBox(episode)}${chat(episode.messages, episode.rewards)}</div>`;
  $("#df-detail").innerHTML =
    `<div class="cols">${side(a, ea, "a")}${side(b, eb, "b")}</div>` +
    `<div class="panel">${goldPanel(ea)}</div>`;
  $("#df-detail").scrollIntoView({ block: "start" });
}

// ---- RL samples -----------------------------------------------------------------------------------------
const sampleState = { training: null, step: null };

views.samples = async (root) => {
  const trainings = INDEX.trainings.filter((t) => t.sample_steps.length);
  if (!trainings.length) {
    root.innerHTML = "<p>No RL samples (an RL training writes samples.jsonl; SFT does not).</p>";
    return;
  }
  sampleState.training = sampleState.training || trainings[0].key;
  root.innerHTML =
    `<div class="controls"><label>training <select id="rl-training">${select(trainings.map((t) => [t.key, t.name]), sampleState.training)}</select></label>` +
    `<label>step <select id="rl-step"></select></label><button id="rl-prev">previous step</button><button id="rl-next">next step</button></div><div id="rl-body"></div>`;
  const training = () => INDEX.trainings.find((t) => t.key === sampleState.training);
  const fillSteps = () => {
    const steps = training().sample_steps;
    if (!steps.includes(sampleState.step)) sampleState.step = steps[0];
    $("#rl-step").innerHTML = select(steps.map((s) => [s, "step " + s]), sampleState.step);
  };
  const move = (delta) => {
    const steps = training().sample_steps;
    const at = steps.indexOf(sampleState.step) + delta;
    if (at >= 0 && at < steps.length) sampleState.step = steps[at];
    fillSteps();
    renderSamples(training());
  };
  $("#rl-training").onchange = (e) => ((sampleState.training = e.target.value), fillSteps(), renderSamples(training()));
  $("#rl-step").onchange = (e) => ((sampleState.step = Number(e.target.value)), renderSamples(training()));
  $("#rl-prev").onclick = () => move(-1);
  $("#rl-next").onclick = () => move(1);
  fillSteps();
  await renderSamples(training());
};

async function renderSamples(training) {
  const states = await load(`${training.key}/s${sampleState.step}`);
  let html = `<p class="note">${esc(training.name)}, step ${sampleState.step}: ${states.length} states logged; reward = per-turn Solve-F1; advantage: n/a where dynamic sampling dropped the group.</p>`;
  states.forEach((state, i) => {
    const rewards = state.responses.map((r) => r.reward);
    const spread = Math.max(...rewards) - Math.min(...rewards);
    html += `<div class="panel state"><h3>state ${i + 1}: #${esc(state.state)} ${esc(state.data_source)} <span class="badge ${state.trained ? "ok" : ""}">${state.trained ? "trained on" : "not trained on"}</span> <span class="na">reward spread ${spread.toFixed(2)}</span></h3>`;
    html += `<details><summary>state: last ${state.messages.length} messages; owed ${esc(JSON.stringify(state.unsolved_set))}</summary>${chat(state.messages)}</details>`;
    html += "<div>";
    state.responses.forEach((r, k) => {
      html += `<div class="resp"><div class="meta">response ${k + 1} · reward <b class="${cls(r.reward)}">${signed(r.reward, 2)}</b> · advantage ${r.advantage === null ? NA : `<b class="${cls(r.advantage)}">${signed(r.advantage, 3)}</b>`}</div><pre>${esc(r.text)}</pre></div>`;
    });
    html += "</div></div>";
  });
  $("#rl-body").innerHTML = html;
}

// ---- start ----------------------------------------------------------------------------------------------
// data/index.js follows this script in index.html: by DOMContentLoaded it has run
window.addEventListener("DOMContentLoaded", () =>
  load("index")
    .then((index) => {
      INDEX = index;
      $("#generated").textContent = "generated " + index.generated;
      const route = () => show(location.hash.slice(1) || "overview");
      window.addEventListener("hashchange", route);
      route();
    })
    .catch((error) => status(String(error)))
);
window.addEventListener("error", (event) => status(String(event.message)));
window.addEventListener("unhandledrejection", (event) => status(String(event.reason)));
