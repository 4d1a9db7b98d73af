// A streak's TV board: who is on a streak now (with the ones about to break marked) and the longest streaks,
// from GET /v1/streaks/{id}/standings, refreshed every `every` seconds (default 15; streaks move a few times a
// day, at most once per rep per day).

import { api, formatClock, h, metricLabel, params, pathId, requireToken, serverNow, showNotice } from "./common.js";

const streakId = pathId();
const EVERY_S = Math.min(3600, Math.max(5, Number(params.get("every")) || 15));
const ROWS = Math.min(20, Math.max(3, Number(params.get("rows")) || 8));
const el = (id) => document.getElementById(id);

function row(entry, field, badge) {
  return h(
    "li",
    { class: `entry${entry.rank <= 3 ? " podium" : ""}`, dataset: { rank: String(entry.rank), repId: entry.rep_id, atRisk: String(entry.at_risk) } },
    h("span", { class: "rank" }, String(entry.rank)),
    h("span", { class: "who" }, h("span", { class: "name" }, entry.name), h("span", { class: "team" }, entry.team_id || "")),
    h(
      "span",
      { class: "value" },
      `${entry[field]} ${badge}`,
      field === "current" && entry.at_risk ? h("span", { class: "at-risk", title: "Not met yet today" }, "today?") : null,
    ),
  );
}

function render(board) {
  el("streak-title").textContent = `${board.badge} ${board.name}`;
  el("streak-rule").textContent = `At least ${board.rule.at_least} ${metricLabel(board.rule.metric).toLowerCase()} a working day · as of ${board.as_of}`;
  el("streak-updated").textContent = `Updated ${formatClock(serverNow())}`;
  const empty = (text) => [h("li", { class: "muted streak-empty" }, text)];
  const current = board.current.slice(0, ROWS).map((e) => row(e, "current", board.badge));
  const longest = board.longest.slice(0, ROWS).map((e) => row(e, "longest", board.badge));
  el("streak-current").replaceChildren(...(current.length ? current : empty("Nobody is on a streak yet today.")));
  el("streak-longest").replaceChildren(...(longest.length ? longest : empty("No streak yet.")));
  document.body.dataset.ready = "1";
}

async function refresh() {
  try {
    render(await api(`/v1/streaks/${encodeURIComponent(streakId)}/standings?size=${ROWS}`));
    el("streak-board").dataset.connection = "live";
  } catch (error) {
    el("streak-board").dataset.connection = "reconnecting";
    if (!document.body.dataset.ready) showNotice("This streak board could not load", error.message);
  }
}

async function main() {
  if (!(await requireToken())) return;
  await refresh();
  setInterval(refresh, EVERY_S * 1000);
}

main();
