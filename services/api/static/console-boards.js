// Boards: create and edit leaderboards, contests and team battles (PUT /v1/boards/{id}) with a preview of the
// standings as they would show today (POST /v1/boards/preview), and compose a TV rotation (/screens/rotate).

import { METRICS, calendar, formatMetric, formatPercent, h, idList, metricLabel, periodDates, periodLabel } from "./common.js";
import { call, copy, el, problemItems, say, startConsole } from "./console-common.js";

let boards = [];
let plans = [];
let previewTimer = null;
let previewSeq = 0;

// --- the business timezone: datetime-local inputs are wall-clock times there --------------------------------------

function offsetMs(utcMs, timeZone) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-US", {
    timeZone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(new Date(utcMs)).map((p) => [p.type, p.value]));
  return Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second) - utcMs;
}

/** "2026-12-07T09:00" in the business timezone as an ISO instant (a time skipped by a DST change moves on). */
function zonedToIso(local) {
  const [day, time] = local.split("T");
  const [y, m, d] = day.split("-").map(Number);
  const [hh, mm] = (time || "00:00").split(":").map(Number);
  const wall = Date.UTC(y, m - 1, d, hh, mm);
  const zone = calendar.timezone || "UTC";
  let utc = wall - offsetMs(wall, zone);
  utc = wall - offsetMs(utc, zone);
  return new Date(utc).toISOString();
}

/** An ISO instant as "YYYY-MM-DDTHH:MM" on the business clock. */
function isoToZoned(iso) {
  const ms = Date.parse(iso);
  return new Date(ms + offsetMs(ms, calendar.timezone || "UTC")).toISOString().slice(0, 16);
}

// --- the form ------------------------------------------------------------------------------------------------------

function draft() {
  const form = el("board-form").elements;
  const board = {
    board_id: form.board_id.value.trim() || "preview",
    title: form.title.value.trim() || "Untitled board",
    metric: form.metric.value,
    scope: { teams: idList(form.teams.value) },
    size: Number(form.size.value) || 10,
    plan_id: form.plan_id.value || null,
  };
  if (form.kind.value === "window") {
    board.window = {
      starts_at: form.starts_at.value ? zonedToIso(form.starts_at.value) : null,
      ends_at: form.ends_at.value ? zonedToIso(form.ends_at.value) : null,
    };
  } else {
    board.period = form.period.value;
  }
  const battle = idList(form.battle.value);
  if (battle.length) board.battle = { teams: battle };
  if (form.celebrations.value === "off") board.celebrations = false;
  return board;
}

function fill(board) {
  const form = el("board-form").elements;
  form.board_id.value = board.board_id;
  form.title.value = board.title;
  form.metric.value = board.metric;
  form.kind.value = board.window ? "window" : "period";
  form.period.value = board.period || "month";
  form.starts_at.value = board.window ? isoToZoned(board.window.starts_at) : "";
  form.ends_at.value = board.window ? isoToZoned(board.window.ends_at) : "";
  form.teams.value = (board.scope?.teams || []).join(", ");
  form.size.value = board.size ?? 10;
  form.plan_id.value = board.plan_id || "";
  form.battle.value = (board.battle?.teams || []).join(", ");
  form.celebrations.value = board.celebrations === false ? "off" : "on";
  el("board-form-title").textContent = `Edit board ${board.board_id}`;
  showKind();
  schedulePreview(0);
}

function showKind() {
  const kind = el("b-kind").value;
  for (const node of el("board-form").querySelectorAll("[data-kind]")) node.hidden = node.dataset.kind !== kind;
}

function schedulePreview(delay = 350) {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(preview, delay);
}

async function preview() {
  const seq = ++previewSeq;
  const board = draft();
  try {
    const standings = await call("POST", "/v1/boards/preview", board);
    if (seq !== previewSeq) return; // a newer draft is on its way
    el("board-problems").replaceChildren();
    drawPreview(board, standings);
  } catch (error) {
    if (seq !== previewSeq) return;
    el("board-problems").replaceChildren(...problemItems(error));
    el("preview").tBodies[0].replaceChildren();
    el("preview-battle").replaceChildren();
    el("preview-period").textContent = "fix the board to see it";
  }
  document.body.dataset.previewed = String(seq);
}

function drawPreview(board, standings) {
  el("preview-title").textContent = standings.title;
  el("preview-period").textContent = `${metricLabel(standings.metric)} · ${periodLabel(standings.period_key)} · ${periodDates(standings.period_key)}`;
  el("preview").tBodies[0].replaceChildren(...standings.entries.map((entry) => h("tr", { dataset: { rep: entry.rep_id } },
    h("td", { class: "num" }, String(entry.rank)),
    h("th", { scope: "row" }, entry.name || entry.rep_id),
    h("td", {}, entry.team_id || ""),
    h("td", { class: "num" }, formatMetric(standings.metric, entry.value)),
    h("td", {}, entry.tier ? `${entry.tier.name}${entry.attainment != null ? ` · ${formatPercent(entry.attainment)}` : ""}` : ""),
  )));
  el("preview-empty").hidden = standings.entries.length > 0;
  const battle = standings.battle;
  el("preview-battle").replaceChildren(...(battle ? [h("ol", { class: "battle-preview" }, battle.teams.map((team) => h("li", {},
    h("strong", {}, team.name || team.team_id), " ", formatMetric(standings.metric, team.value))))] : []));
}

async function saveBoard(event) {
  event.preventDefault();
  const board = draft();
  const id = el("b-board_id").value.trim();
  if (!id) {
    el("board-problems").replaceChildren(h("li", {}, "board_id: give the board an id"));
    el("b-board_id").focus();
    return;
  }
  try {
    await call("PUT", `/v1/boards/${encodeURIComponent(id)}`, board);
    say(`Saved board ${id}. Put it on a TV from the rotation below or the Keys page.`);
    await load();
  } catch (error) {
    el("board-problems").replaceChildren(...problemItems(error));
    say(`The board was not saved: ${error.message}`, "error");
  }
}

// --- the list and the rotation ---------------------------------------------------------------------------------------

function keysHref(ids, screen) {
  const query = new URLSearchParams({ role: "screen", boards: ids.join(","), name: `TV: ${ids.join(", ")}` });
  if (screen) query.set("screen", screen);
  return `/console/keys?${query}`;
}

function drawBoards() {
  el("boards").tBodies[0].replaceChildren(...boards.map((board) => {
    const edit = h("button", { type: "button", class: "button quiet small" }, `Edit ${board.board_id}`);
    edit.addEventListener("click", () => { fill(board); el("b-title").focus(); });
    return h("tr", { dataset: { board: board.board_id } },
      h("th", { scope: "row" }, board.board_id),
      h("td", {}, board.title, board.battle ? h("span", { class: "tag" }, "battle") : null),
      h("td", {}, metricLabel(board.metric)),
      h("td", {}, board.window ? "contest" : board.period),
      h("td", {}, (board.scope?.teams || []).join(", ") || h("span", { class: "muted" }, "everyone")),
      h("td", { class: "row-actions" }, edit, h("a", { class: "button quiet small", href: keysHref([board.board_id]) }, "TV key")));
  }));
  el("board-count").textContent = `${boards.length} board${boards.length === 1 ? "" : "s"}`;
  const chosen = new Set(rotationIds());
  el("rotation-boards").replaceChildren(...boards.map((board) => h("label", { class: "check" },
    h("input", { type: "checkbox", value: board.board_id, checked: chosen.has(board.board_id) }), ` ${board.title} (${board.board_id})`)));
  drawRotation();
}

function rotationIds() {
  return [...el("rotation-boards").querySelectorAll("input:checked")].map((box) => box.value);
}

function drawRotation() {
  const ids = rotationIds();
  const every = Math.max(5, Number(el("rotation-every").value) || 20);
  const path = ids.length === 1 ? `/screens/board/${encodeURIComponent(ids[0])}` : `/screens/rotate?${new URLSearchParams({ boards: ids.join(","), every: String(every) })}`;
  el("rotation-url").value = ids.length ? `${location.origin}${path}` : "";
  el("rotation-url").placeholder = "tick at least one board";
  const link = el("rotation-key");
  link.href = ids.length ? keysHref(ids, path) : "/console/keys";
  link.setAttribute("aria-disabled", ids.length ? "false" : "true");
}

async function load() {
  [boards, plans] = await Promise.all([call("GET", "/v1/boards"), call("GET", "/v1/plans")]);
  const teams = await call("GET", "/v1/teams");
  el("team-ids").replaceChildren(...teams.map((team) => h("option", { value: team.team_id }, team.name)));
  const plan = el("b-plan").value;
  el("b-plan").replaceChildren(h("option", { value: "" }, "none"), ...plans.map((p) => h("option", { value: p.plan_id }, `${p.name} (${p.plan_id})`)));
  el("b-plan").value = plan;
  drawBoards();
}

if (await startConsole()) {
  el("b-metric").replaceChildren(...METRICS.map((metric) => h("option", { value: metric }, metricLabel(metric))));
  el("tz-note").textContent = `Contest times are in the business time zone, ${calendar.timezone || "UTC"}.`;
  const form = el("board-form");
  form.addEventListener("input", () => schedulePreview());
  form.addEventListener("change", () => { showKind(); schedulePreview(); });
  form.addEventListener("submit", saveBoard);
  el("board-new").addEventListener("click", () => {
    form.reset();
    el("board-form-title").textContent = "New board";
    showKind();
    schedulePreview(0);
    el("b-board_id").focus();
  });
  el("rotation-boards").addEventListener("change", drawRotation);
  el("rotation-every").addEventListener("input", drawRotation);
  el("rotation-copy").addEventListener("click", async () => {
    say(await copy(el("rotation-url").value, el("rotation-url")) ? "Copied the rotation's address." : "Press Ctrl+C to copy the address.");
  });
  showKind();
  await load();
  await preview();
  document.body.dataset.ready = "1";
}
