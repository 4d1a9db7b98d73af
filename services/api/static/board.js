// The sales-floor TV board: live standings from WS /v1/ws/boards/{id}, rank movement, progress to the next
// tier on plan-linked boards, a celebration overlay on each tier crossing, and a rotation of several boards.

import {
  LiveSocket,
  api,
  bandProgress,
  calendar,
  formatClock,
  formatCountdown,
  formatMetric,
  formatPercent,
  h,
  metricLabel,
  params,
  pathId,
  periodDates,
  periodKind,
  periodLabel,
  periodRange,
  renderStatus,
  requireToken,
  serverNow,
  showNotice,
  tierAbove,
  tierAt,
} from "./common.js";

const ROTATING = location.pathname.replace(/\/+$/, "").endsWith("/rotate");
const clamp = (value, low, high) => Math.min(high, Math.max(low, value));
const EVERY_S = clamp(Number(params.get("every")) || 20, 3, 3600);
const CELEBRATE_S = clamp(Number(params.get("celebrate")) || 7, 1, 60);
const MAX_ROWS = clamp(Number(params.get("rows")) || 10, 1, 100);
const ARROW_MS = 20_000;

const plans = new Map();
let teamNames = null;

/** Team names for the rows (fetched once; the team id is shown until they arrive). */
function loadTeamNames() {
  teamNames ||= api("/v1/teams")
    .then((teams) => new Map(teams.map((team) => [team.team_id, team.name])))
    .catch(() => {
      teamNames = null;
      return new Map();
    });
  return teamNames;
}

/** A plan's document (cached per page; reloaded after a reconnect in case an admin changed it). */
function loadPlan(planId, { fresh = false } = {}) {
  if (!planId) return Promise.resolve(null);
  if (fresh || !plans.has(planId)) {
    const request = api(`/v1/plans/${encodeURIComponent(planId)}`, { allow404: true }).catch(() => {
      plans.delete(planId);
      return null;
    });
    plans.set(planId, request);
  }
  return plans.get(planId);
}

/** One board: its own section, socket, standings and memory of each rep's previous rank. */
class BoardView {
  constructor(boardId, container) {
    this.boardId = boardId;
    this.board = null;
    this.plan = null;
    this.standings = null;
    this.rows = new Map();
    this.previous = null;
    this.moves = new Map();
    this.renders = 0;
    this.title = h("h1", { class: "board-title" }, boardId);
    this.period = h("div", { class: "board-period" });
    this.status = h("div", { class: "status", role: "status" });
    this.updated = h("div", { class: "updated" });
    this.columns = h("div", { class: "columns" });
    this.list = h("ol", { class: "entries" });
    this.empty = h("p", { class: "empty", hidden: true }, "No results yet for this period.");
    this.banner = h("div", { class: "banner", hidden: true }, "Connection lost — reconnecting…");
    this.battle = h("div", { class: "battle", hidden: true, "aria-live": "polite" });
    this.root = h(
      "section",
      { class: "board", dataset: { boardId, connection: "connecting" } },
      h(
        "header",
        { class: "board-head" },
        h("div", { class: "board-heading" }, this.title, this.period),
        h("div", { class: "board-meta" }, this.status, this.updated),
      ),
      this.banner,
      this.battle,
      this.columns,
      this.list,
      this.empty,
    );
    container.append(this.root);
    renderStatus(this.status, "connecting");
  }

  start() {
    this.socket = new LiveSocket(`/v1/ws/boards/${encodeURIComponent(this.boardId)}`, {
      onMessage: (message) => this.onMessage(message),
      onState: (state, detail) => this.onState(state, detail),
      onOpen: () => {
        if (this.renders > 0) this.loadConfig(true); // back after a lost connection: the board may have changed
      },
    }).start();
    this.loadConfig(false);
  }

  async loadConfig(fresh) {
    try {
      const board = await api(`/v1/boards/${encodeURIComponent(this.boardId)}`, { allow404: true });
      if (!board) return;
      this.board = board;
      this.plan = board.plan_id ? await loadPlan(board.plan_id, { fresh }) : null;
      this.teams = await loadTeamNames();
      if (this.standings) this.render(this.standings);
    } catch {
      // the socket's state already tells the floor the feed is down; config comes with the next connect
    }
  }

  onState(state, detail) {
    renderStatus(this.status, state, detail);
    this.root.dataset.connection = state;
    this.banner.hidden = !(state === "reconnecting" && this.renders > 0);
    if (state === "refused") {
      this.banner.hidden = false;
      this.banner.textContent = `Not connected: ${detail}`;
    } else {
      this.banner.textContent = "Connection lost — reconnecting…";
    }
    if (this.onChange) this.onChange();
  }

  onMessage(message) {
    if (message.type === "standings") this.render(message);
    else if (message.type === "celebration") celebrations.push(message);
  }

  render(standings) {
    this.standings = standings;
    const metric = standings.metric;
    const currency = this.plan?.currency || undefined;
    this.title.textContent = standings.title || this.boardId;
    this.renderPeriod();
    this.updated.textContent = standings.updated_at
      ? `Updated ${formatClock(standings.updated_at)}`
      : "No sales recorded yet";
    const columns = [
      h("span", { class: "col-rank" }, "#"),
      h("span", { class: "col-name" }, "Rep"),
      this.plan ? h("span", { class: "col-progress" }, `${this.plan.name}: next tier`) : null,
      h("span", { class: "col-value" }, metricLabel(metric)),
    ];
    this.columns.replaceChildren(...columns.filter(Boolean));
    this.root.classList.toggle("with-plan", Boolean(this.plan));
    this.renderBattle(standings.battle, metric, currency);

    const visible = !this.root.hidden;
    const before = new Map();
    if (visible) for (const [repId, row] of this.rows) before.set(repId, row.getBoundingClientRect().top);
    const now = Date.now();
    const entries = (standings.entries || []).slice(0, MAX_ROWS);
    const rows = [];
    for (const entry of entries) {
      let row = this.rows.get(entry.rep_id);
      if (!row) {
        row = this.makeRow(entry.rep_id);
        this.rows.set(entry.rep_id, row);
      }
      if (this.previous) {
        const was = this.previous.get(entry.rep_id);
        const delta = was === undefined ? MAX_ROWS + 1 - entry.rank : was.rank - entry.rank;
        if (delta !== 0) {
          this.moves.set(entry.rep_id, { delta, until: now + ARROW_MS, isNew: was === undefined });
          flash(row, delta > 0 ? "moved-up" : "moved-down");
        } else if (was.value !== entry.value) {
          flash(row, "bumped");
        }
      }
      this.fillRow(row, entry, metric, currency);
      rows.push(row);
    }
    for (const [repId, row] of this.rows) {
      if (!entries.some((e) => e.rep_id === repId)) {
        row.remove();
        this.rows.delete(repId);
      }
    }
    this.list.replaceChildren(...rows);
    this.empty.hidden = rows.length > 0;
    if (visible) slideIntoPlace(rows, before);
    this.previous = new Map(entries.map((e) => [e.rep_id, { rank: e.rank, value: e.value }]));
    this.renders += 1;
    this.root.dataset.renders = String(this.renders);
    document.body.dataset.ready = "1";
    if (this.onChange) this.onChange();
  }

  /** A team battle's head to head: each team's total, its share of the whole, and the running gap. */
  renderBattle(battle, metric, currency) {
    this.root.classList.toggle("battle-board", Boolean(battle));
    this.battle.hidden = !battle;
    if (!battle) return;
    const total = battle.teams.reduce((sum, t) => sum + Math.max(t.value, 0), 0);
    const leader = battle.teams.find((t) => t.team_id === battle.leader);
    const gap = leader
      ? `${leader.name} leads by ${formatMetric(metric, battle.gap, { currency, cents: false })}`
      : "All square";
    const teams = h(
      "div",
      { class: "battle-teams" },
      ...battle.teams.map((t) => {
        const fill = h("span", { class: "fill" });
        fill.style.width = `${total > 0 ? (100 * Math.max(t.value, 0)) / total : 0}%`; // CSSOM: no inline style attribute
        return h(
          "div",
          { class: `battle-team${t.team_id === battle.leader ? " leading" : ""}`, dataset: { teamId: t.team_id, rank: String(t.rank) } },
          h("div", { class: "battle-name" }, t.name),
          h("div", { class: "battle-value" }, formatMetric(metric, t.value, { currency, cents: false })),
          h("div", { class: "battle-members" }, `${t.members} rep${t.members === 1 ? "" : "s"}`),
          h("span", { class: "bar" }, fill),
        );
      }),
    );
    teams.style.setProperty("--teams", String(battle.teams.length));
    this.battle.replaceChildren(teams, h("div", { class: "battle-gap" }, gap));
  }

  renderPeriod() {
    const key = this.standings?.period_key;
    if (!key) return;
    if (periodKind(key) === "window") {
      const range = periodRange(key);
      const now = serverNow();
      const when =
        now < range.start.getTime()
          ? `starts in ${formatCountdown(range.start, now)}`
          : now < range.end.getTime()
            ? `ends in ${formatCountdown(range.end, now)}`
            : "finished";
      this.period.textContent = `Contest · ${periodDates(key)} · ${when}`;
    } else {
      this.period.textContent = `${periodLabel(key)} · ${periodDates(key)}`;
    }
  }

  makeRow(repId) {
    const row = h(
      "li",
      { class: "entry", dataset: { repId } },
      h("span", { class: "rank" }),
      h("span", { class: "move", "aria-hidden": "true" }),
      h("span", { class: "who" }, h("span", { class: "name" }), h("span", { class: "team" })),
      h(
        "span",
        { class: "progress" },
        h("span", { class: "progress-label" }, h("span", { class: "tier" }), h("span", { class: "next" })),
        h("span", { class: "bar" }, h("span", { class: "fill" })),
      ),
      h("span", { class: "value" }),
    );
    return row;
  }

  fillRow(row, entry, metric, currency) {
    row.dataset.rank = String(entry.rank);
    row.classList.toggle("podium", entry.rank <= 3);
    row.querySelector(".rank").textContent = String(entry.rank);
    row.querySelector(".name").textContent = entry.name || entry.rep_id;
    row.querySelector(".team").textContent = this.teams?.get(entry.team_id) || entry.team_id || "";
    row.querySelector(".value").textContent = formatMetric(metric, entry.value, { currency, cents: false });
    this.fillMove(row, entry.rep_id);
    const progress = row.querySelector(".progress");
    progress.hidden = !this.plan;
    if (!this.plan) return;
    const attainment = entry.attainment ?? null;
    const reached = attainment === null ? null : tierAt(this.plan, attainment);
    const next = tierAbove(this.plan, attainment);
    const tier = row.querySelector(".tier");
    tier.textContent = `${formatPercent(attainment ?? 0)} · ${entry.tier?.name || reached?.name || "No tier yet"}`;
    row.querySelector(".next").textContent = next
      ? `→ ${next.name} ${formatPercent(next.threshold)}`
      : "Top tier";
    row.classList.toggle("top-tier", !next);
    row.querySelector(".fill").style.width = `${(bandProgress(this.plan, attainment ?? 0) * 100).toFixed(1)}%`;
  }

  fillMove(row, repId) {
    const move = this.moves.get(repId);
    const cell = row.querySelector(".move");
    if (!move || move.until < Date.now()) {
      this.moves.delete(repId);
      cell.textContent = "";
      cell.className = "move";
      return;
    }
    const up = move.delta > 0;
    cell.className = `move ${up ? "up" : "down"}`;
    cell.textContent = move.isNew ? "↑" : `${up ? "↑" : "↓"}${Math.abs(move.delta)}`;
    cell.title = move.isNew ? "new in the top list" : `${up ? "up" : "down"} ${Math.abs(move.delta)}`;
  }

  /** Expire old arrows and keep the contest countdown moving. */
  tick() {
    for (const [repId, row] of this.rows) this.fillMove(row, repId);
    this.renderPeriod();
  }
}

/** Restart a one-shot highlight animation on a row. */
function flash(row, name) {
  row.classList.remove("moved-up", "moved-down", "bumped");
  void row.offsetWidth; // restart the animation when the same class comes back
  row.classList.add(name);
}

/** Animate rows from where they were to where they are now (FLIP). */
function slideIntoPlace(rows, before) {
  for (const row of rows) {
    const was = before.get(row.dataset.repId);
    if (was === undefined) continue;
    const shift = was - row.getBoundingClientRect().top;
    if (Math.abs(shift) < 1) continue;
    row.style.transition = "none";
    row.style.transform = `translateY(${shift}px)`;
    requestAnimationFrame(() => {
      requestAnimationFrame(() => {
        row.style.transition = "";
        row.style.transform = "";
      });
    });
  }
}

/** Celebration overlay: one crossing at a time for a few seconds, the rest queued; each shown once. */
class Celebrations {
  constructor(el) {
    this.el = el;
    this.queue = [];
    this.seen = new Set();
    this.showing = false;
    this.shown = 0;
  }

  push(message) {
    const tierId = typeof message.tier === "string" ? message.tier : message.tier?.tier_id;
    const key = message.notification_id || [message.rep_id, message.plan_id, message.period_key, tierId].join("|");
    if (this.seen.has(key)) return; // the same crossing arrives once per board in a rotation
    this.seen.add(key);
    this.queue.push(message);
    this.updateMore();
    if (!this.showing) this.next();
  }

  async next() {
    const message = this.queue.shift();
    if (!message) {
      this.showing = false;
      this.el.classList.remove("show");
      this.el.hidden = true;
      return;
    }
    this.showing = true;
    if (message.kind === "achievement") {
      this.show(message, achievementCard(message));
      return;
    }
    const plan = await loadPlan(message.plan_id);
    const tierId = typeof message.tier === "string" ? message.tier : message.tier?.tier_id;
    const tier = (plan?.tiers || []).find((t) => t.tier_id === tierId);
    const tierName = message.tier?.name || tier?.name || tierId || "a new tier";
    const reward = message.reward ?? tier?.reward ?? null;
    this.show(
      message,
      h(
        "div",
        { class: "celebration-card" },
        h("div", { class: "kicker" }, "Tier reached"),
        h("div", { class: "celebration-name" }, message.name || message.rep_id),
        h("div", { class: "celebration-tier" }, "reached ", h("strong", {}, tierName)),
        plan ? h("div", { class: "celebration-plan" }, plan.name) : null,
        reward ? h("div", { class: "celebration-reward" }, h("span", {}, "Reward"), reward) : null,
        h("div", { class: "celebration-more" }),
      ),
    );
  }

  show(message, card) {
    this.el.replaceChildren(confetti(), card);
    this.el.dataset.repId = message.rep_id;
    this.el.dataset.kind = message.kind || "tier";
    sound.play();
    this.el.hidden = false;
    void this.el.offsetWidth;
    this.el.classList.add("show");
    this.shown += 1;
    this.el.dataset.shown = String(this.shown);
    this.updateMore();
    setTimeout(() => this.next(), CELEBRATE_S * 1000);
  }

  updateMore() {
    const more = this.el.querySelector(".celebration-more");
    if (more) more.textContent = this.queue.length ? `+${this.queue.length} more` : "";
  }
}

/** The card of an achievement earned: the badge, who earned it, and what it is. */
function achievementCard(message) {
  const a = message.achievement || {};
  return h(
    "div",
    { class: "celebration-card" },
    h("div", { class: "kicker" }, "Badge earned"),
    h("div", { class: "celebration-badge", "aria-hidden": "true" }, a.badge || "★"),
    h("div", { class: "celebration-name" }, message.name || message.rep_id),
    h("div", { class: "celebration-tier" }, "earned ", h("strong", {}, a.name || a.achievement_id)),
    a.description ? h("div", { class: "celebration-plan" }, a.description) : null,
    h("div", { class: "celebration-more" }),
  );
}

const CONFETTI_COLOURS = ["#ffc94d", "#4cc9f0", "#3ddc97", "#ff5d73", "#b18cff", "#ffffff"];

function confetti() {
  const layer = h("div", { class: "confetti", "aria-hidden": "true" });
  for (let i = 0; i < 80; i++) {
    const piece = h("i");
    piece.style.left = `${Math.random() * 100}%`;
    piece.style.background = CONFETTI_COLOURS[i % CONFETTI_COLOURS.length];
    piece.style.animationDelay = `${(Math.random() * 2.5).toFixed(2)}s`;
    piece.style.animationDuration = `${(2.8 + Math.random() * 2.4).toFixed(2)}s`;
    piece.style.setProperty("--drift", `${Math.round(Math.random() * 160 - 80)}px`);
    piece.style.setProperty("--spin", `${Math.round(Math.random() * 720 - 360)}deg`);
    layer.append(piece);
  }
  return layer;
}

/**
 * The celebration sound (docs/screens.md, "Sound"): off unless the URL says `sound=on`, and silent during quiet
 * hours (`quiet=HH:MM-HH:MM` on the business clock, default 20:00-08:00; `quiet=off` for none). A browser that
 * refuses to play before someone touched the page gets a button that enables it with a tap.
 */
class CelebrationSound {
  constructor() {
    this.on = ["on", "1", "true"].includes((params.get("sound") || "").toLowerCase());
    this.quiet = parseQuiet(params.get("quiet") ?? "20:00-08:00");
    this.played = 0;
    this.skipped = 0;
    this.audio = this.on ? new Audio("/screens/static/celebrate.wav") : null;
    if (this.audio) this.audio.preload = "auto";
    document.body.dataset.sound = this.on ? "on" : "off";
  }

  play() {
    if (!this.audio) return;
    if (inQuietHours(this.quiet, businessMinutes())) {
      this.skipped += 1;
      document.body.dataset.soundsSkipped = String(this.skipped);
      return;
    }
    this.audio.currentTime = 0;
    this.audio.play().then(
      () => {
        this.played += 1;
        document.body.dataset.soundsPlayed = String(this.played);
      },
      () => this.offerToEnable(),
    );
  }

  offerToEnable() {
    if (document.getElementById("sound-enable")) return;
    document.body.dataset.sound = "blocked";
    const button = h("button", { id: "sound-enable", class: "sound-enable", type: "button" }, "\u{1F508} Tap to enable sound");
    button.addEventListener("click", () => {
      this.audio.play().then(() => this.audio.pause()).catch(() => {});
      document.body.dataset.sound = "on";
      button.remove();
    });
    document.body.append(button);
  }
}

/** "22:00-07:00" → [start, end] in minutes of the day; null for "off" or anything else. */
function parseQuiet(text) {
  const found = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$/.exec(text.trim());
  if (!found) return null;
  const [, sh, sm, eh, em] = found.map(Number);
  return [sh * 60 + sm, eh * 60 + em];
}

/** Inside [start, end) of the day, crossing midnight when end ≤ start. */
function inQuietHours(quiet, minute) {
  if (!quiet) return false;
  const [start, end] = quiet;
  return start < end ? start <= minute && minute < end : minute >= start || minute < end;
}

/** Minutes since midnight now, on the business clock (the gateway's time, the business timezone). */
function businessMinutes() {
  const parts = new Intl.DateTimeFormat("en-GB", {
    hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: calendar.timezone || "UTC",
  }).formatToParts(new Date(serverNow()));
  const part = (type) => Number(parts.find((p) => p.type === type)?.value || 0);
  return part("hour") * 60 + part("minute");
}

const sound = new CelebrationSound();
const celebrations = new Celebrations(document.getElementById("celebration"));

async function main() {
  if (!(await requireToken())) return;
  const ids = ROTATING
    ? (params.get("boards") || "")
        .split(",")
        .map((id) => id.trim())
        .filter(Boolean)
    : [pathId()];
  if (!ids.length || !ids[0]) {
    showNotice("Which boards?", "Name the boards to rotate through: /screens/rotate?boards=floor,region-east&every=20");
    return;
  }
  const container = document.getElementById("boards");
  const views = ids.map((id) => new BoardView(id, container));
  views.forEach((view, index) => {
    view.root.hidden = index !== 0;
    view.start();
  });
  setInterval(() => views.forEach((view) => view.tick()), 1000);
  if (views.length > 1) rotate(views);
}

/** Show each board for EVERY_S seconds in turn; every board keeps its own socket so switching is instant. */
function rotate(views) {
  const footer = document.getElementById("rotation");
  const dots = views.map((view) => h("span", { class: "rotation-dot" }, view.boardId));
  const timer = h("div", { class: "rotation-timer" }, h("span"));
  footer.replaceChildren(h("div", { class: "rotation-dots" }, dots), timer);
  footer.hidden = false;
  document.body.classList.add("rotating");
  let current = 0;
  const show = (index) => {
    views.forEach((view, i) => {
      view.root.hidden = i !== index;
      dots[i].classList.toggle("current", i === index);
      dots[i].textContent = view.standings?.title || view.boardId;
    });
    if (views[index].standings) views[index].render(views[index].standings);
    document.body.dataset.board = views[index].boardId;
    const bar = timer.firstElementChild;
    bar.classList.remove("run");
    void bar.offsetWidth;
    bar.style.animationDuration = `${EVERY_S}s`;
    bar.classList.add("run");
  };
  views.forEach((view) => {
    view.onChange = () => {
      dots.forEach((dot, i) => {
        dot.textContent = views[i].standings?.title || views[i].boardId;
      });
    };
  });
  show(0);
  setInterval(() => {
    current = (current + 1) % views.length;
    show(current);
  }, EVERY_S * 1000);
}

main();
