// parley view: draws the page from the JSON in #data. No network, no libraries.
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}
const PALETTE = ["#1f6fb2", "#b2481f", "#2a8a4a", "#8a2a8a", "#a8871a", "#1a8a8a"];
const colours = {};
const colour = (agent) =>
  (colours[agent] ??= PALETTE[Object.keys(colours).length % PALETTE.length]);
const signed = (x) => (x >= 0 ? "+" : "") + x.toFixed(2);
const percent = (x) => (x == null ? "n/a" : Math.round(100 * x) + "%");

function summaryCards(summary) {
  const cards = el("div", {class: "cards"},
    el("div", {class: "card"}, el("b", {text: String(summary.episodes)}),
       data.kind === "training" ? "iterations" : "episodes"),
    el("div", {class: "card"}, el("b", {text: percent(summary.success_rate)}), "success"),
    el("div", {class: "card"}, el("b", {text: String(summary.messages)}),
       data.kind === "training" ? "messages, last sample" : "messages"));
  const table = el("table", {class: "card", id: "returns"},
    el("tr", {}, el("th", {text: "agent"}), el("th", {text: "mean return"})));
  for (const [agent, value] of Object.entries(summary.returns))
    table.append(el("tr", {}, el("td", {text: agent}), el("td", {text: signed(value)})));
  cards.append(table);
  return cards;
}

function eventNode(event) {
  const who = el("span", {class: "who", text: event.agent, style: `color: ${colour(event.agent)}`});
  const attrs = (kind) => ({class: "event " + kind, "data-agent": event.agent});
  switch (event.kind) {
    case "observation":
      return el("details", attrs("observation"),
        el("summary", {}, who, " sees: " + event.short), el("pre", {text: event.text}));
    case "say":
      return el("div", attrs("say"), who, " → ",
        el("span", {class: "who", text: event.to, style: `color: ${colour(event.to)}`}),
        el("span", {class: "schema", text: event.schema}),
        event.valid ? el("span", {class: "valid", text: "✓ valid"})
                    : el("span", {class: "unchecked", text: "unchecked"}),
        el("br"), el("span", {class: "bubble", text: event.text}));
    case "action":
      return el("div", attrs("action"), who, " does ", el("b", {text: event.label}));
    case "reward":
      return el("div", attrs("reward"), who, " reward " + signed(event.value));
  }
  return null;
}

function episodeNode(episode) {
  const end = episode.end;
  const outcome = !end || end.success == null ? "" : end.success ? "success" : "failure";
  const title = el("h2", {}, `episode ${episode.episode}`,
    el("span", {class: "outcome " + outcome, text: outcome ? " · " + outcome : ""}),
    el("span", {class: "schema", text: episode.run}));
  const section = el("section", {class: "episode", "data-episode": String(episode.episode)},
    title);
  for (const step of episode.steps) {
    const node = el("div", {class: "step"}, el("div", {class: "label", text: `step ${step.step}`}));
    for (const event of step.events) node.append(eventNode(event));
    section.append(node);
  }
  if (end) {
    const returns = Object.entries(end.returns).map(([a, r]) => `${a} ${signed(r)}`).join(", ");
    const steps = `${end.steps} step${end.steps === 1 ? "" : "s"}`;
    section.append(el("div", {class: "returns", text: `${steps} · returns ${returns}`}));
  }
  return section;
}

function strip(episodes) {
  // The episodes as a timeline: one mark each, coloured by outcome; a click shows it alone.
  const marks = el("div", {class: "strip", id: "strip"});
  for (const episode of episodes) {
    const end = episode.end;
    const outcome = !end || end.success == null ? "unknown" : end.success ? "success" : "failure";
    const mark = el("button", {class: "mark " + outcome, title: `episode ${episode.episode}: ${outcome}`,
                               "data-episode": String(episode.episode)});
    mark.addEventListener("click", () => {
      const select = document.getElementById("episode-filter");
      select.value = select.value === mark.dataset.episode ? "" : mark.dataset.episode;
      applyFilters();
    });
    marks.append(mark);
  }
  return marks;
}

function drawEpisodes(episodes) {
  const timeline = document.getElementById("timeline");
  timeline.replaceChildren(strip(episodes), ...episodes.map(episodeNode));
  applyFilters();
}

function filters(agents, episodes) {
  const nav = document.getElementById("filters");
  nav.replaceChildren("Show: ");
  for (const agent of agents) {
    const box = el("input", {type: "checkbox", id: "show-" + agent, "data-agent": agent});
    box.checked = true;
    box.addEventListener("change", applyFilters);
    nav.append(el("label", {}, box, " " + agent));
  }
  const select = el("select", {id: "episode-filter"}, el("option", {value: "", text: "all episodes"}));
  for (const episode of episodes)
    select.append(el("option", {value: String(episode.episode), text: `episode ${episode.episode}`}));
  select.addEventListener("change", applyFilters);
  nav.append(select);
}

function applyFilters() {
  const hidden = new Set([...document.querySelectorAll("#filters input[data-agent]")]
    .filter((box) => !box.checked).map((box) => box.dataset.agent));
  const select = document.getElementById("episode-filter");
  const episode = select ? select.value : "";
  for (const node of document.querySelectorAll("#timeline .event"))
    node.hidden = hidden.has(node.dataset.agent);
  for (const node of document.querySelectorAll("#timeline .episode"))
    node.hidden = episode !== "" && node.dataset.episode !== episode;
  const hash = [];
  if (hidden.size) hash.push("hide=" + [...hidden].map(encodeURIComponent).join(","));
  if (episode !== "") hash.push("episode=" + episode);
  history.replaceState(null, "", hash.length ? "#" + hash.join("&") : location.pathname);
}

function filtersFromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  for (const agent of (params.get("hide") || "").split(",").filter(Boolean)) {
    const box = document.getElementById("show-" + decodeURIComponent(agent));
    if (box) box.checked = false;
  }
  const select = document.getElementById("episode-filter");
  if (select && params.has("episode")) select.value = params.get("episode");
}

function chart(name, xs, ys) {
  const width = 320, height = 140, pad = 28;
  const points = xs.map((x, i) => [x, ys[i]]).filter(([, y]) => Number.isFinite(y));
  const box = el("div", {class: "chart", "data-metric": name},
    el("div", {class: "title", text: name}));
  if (!points.length) return box;
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...points.map((p) => p[1])), Math.max(...points.map((p) => p[1]))];
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (x) => pad + (width - 2 * pad) * (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0));
  const sy = (y) => height - pad - (height - 2 * pad) * (y - y0) / (y1 - y0);
  const path = points.map(([x, y], i) => `${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
  box.innerHTML += `<svg width="${width}" height="${height}" role="img">
    <line x1="${pad}" y1="${height - pad}" x2="${width - pad}" y2="${height - pad}" stroke="#ccc"/>
    <line x1="${pad}" y1="${pad}" x2="${pad}" y2="${height - pad}" stroke="#ccc"/>
    <text x="2" y="${pad + 4}" font-size="10">${y1.toPrecision(3)}</text>
    <text x="2" y="${height - pad}" font-size="10">${y0.toPrecision(3)}</text>
    <text x="${pad}" y="${height - 8}" font-size="10">iteration ${x0}</text>
    <text x="${width - pad}" y="${height - 8}" font-size="10" text-anchor="end">${x1}</text>
    <path d="${path.join(" ")}" fill="none" stroke="#3366cc" stroke-width="2"/></svg>`;
  return box;
}

function drawCurves(curves, iterations) {
  const section = document.getElementById("curves");
  section.hidden = false;
  section.append(el("h2", {text: "learning curves"}));
  for (const [name, ys] of Object.entries(curves.metrics))
    section.append(chart(name, curves.iteration, ys));
  if (!iterations.length) return;
  const select = el("select", {id: "iteration-filter"});
  for (const item of iterations)
    select.append(el("option", {value: String(item.iteration), text: `iteration ${item.iteration}`}));
  select.value = String(iterations[iterations.length - 1].iteration);
  const show = () => {
    const chosen = iterations.find((item) => String(item.iteration) === select.value);
    filters(data.summary.agents, chosen.episodes);
    filtersFromHash();
    drawEpisodes(chosen.episodes);
  };
  select.addEventListener("change", show);
  section.append(el("h2", {}, "sampled episodes of ", select));
  show();
}

document.getElementById("summary").append(summaryCards(data.summary));
if (data.kind === "training") {
  drawCurves(data.curves, data.iterations);
} else {
  filters(data.summary.agents, data.episodes);
  filtersFromHash();
  drawEpisodes(data.episodes);
}
