// A manager's team page: the team's KPIs for a period, a chart of the period so far, and the reps ordered by
// pace in one plan with those behind pace marked. Reps' progress arrives live over one rep socket each.

import {
  LiveSocket,
  api,
  businessToday,
  calendar,
  formatClock,
  formatGap,
  formatMetric,
  formatPace,
  formatPercent,
  h,
  isoDate,
  mapLimited,
  metricLabel,
  params,
  pathId,
  periodDates,
  periodLabel,
  periodRange,
  renderStatus,
  requireToken,
  screenHref,
  serverNow,
  showNotice,
  svg,
} from "./common.js";

const teamId = pathId();
const PERIODS = ["week", "month", "quarter", "year"];
const period = PERIODS.includes(params.get("period")) ? params.get("period") : "month";
const MAX_SOCKETS = 24;
const POLL_MS = 30_000;
const el = (id) => document.getElementById(id);

const state = {
  team: null,
  members: [],
  plans: new Map(),
  progress: new Map(), // rep_id -> progress entries
  planId: params.get("plan"),
  sockets: new Map(), // rep_id -> connection state
  kpis: null,
  buckets: [],
};

async function main() {
  if (!(await requireToken())) return;
  try {
    const [team, reps, plans] = await Promise.all([
      api(`/v1/teams/${encodeURIComponent(teamId)}`, { allow404: true }),
      api("/v1/reps"),
      api("/v1/plans"),
    ]);
    if (!team) {
      showNotice("No such team", `There is no team "${teamId}".`);
      return;
    }
    state.team = team;
    state.members = reps.filter((rep) => rep.team_id === teamId).sort((a, b) => a.name.localeCompare(b.name));
    for (const plan of plans) state.plans.set(plan.plan_id, plan);
  } catch (error) {
    showNotice("This page could not load", error.message);
    return;
  }
  renderHeader();
  await refreshTeam({ full: true });
  followReps();
}

function renderHeader() {
  const { team, members } = state;
  document.title = `${team.name} · salespulse`;
  el("team-name").textContent = team.name;
  const manager = members.find((rep) => rep.rep_id === team.manager_rep_id);
  el("team-sub").textContent = [
    manager ? `Manager: ${manager.name}` : null,
    `${members.length} ${members.length === 1 ? "rep" : "reps"}`,
  ]
    .filter(Boolean)
    .join(" · ");
  el("period-tabs").replaceChildren(
    ...PERIODS.map((kind) =>
      h(
        "a",
        { href: screenHref("team", teamId, pick({ period: kind, plan: state.planId })), class: kind === period ? "current" : "" },
        kind.charAt(0).toUpperCase() + kind.slice(1),
      ),
    ),
  );
}

function pick(object) {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value));
}

// --- team KPIs and the chart ----------------------------------------------------------------------------

let refreshing = null;
let refreshAgain = false;
let lastRefresh = 0;

/** Fetch the team's KPIs (and the chart's buckets: all of them once, then only the current one). */
async function refreshTeam({ full = false } = {}) {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      const kpis = await api(`/v1/teams/${encodeURIComponent(teamId)}/kpis?period=${period}`);
      state.kpis = kpis;
      if (full || !state.buckets.length) state.buckets = buckets(kpis.period_key);
      const today = businessToday();
      const due = state.buckets.filter((b) => b.date <= today && (full || b.current || b.kpis === undefined));
      await mapLimited(due, 4, async (bucket) => {
        const found = await api(
          `/v1/teams/${encodeURIComponent(teamId)}/kpis?period=${bucket.kind}&date=${bucket.date}`,
        );
        bucket.kpis = found.kpis;
      });
      renderTiles(kpis); // with the chart, so the two never disagree
      renderCharts();
      el("updated").textContent = `Updated ${formatClock(serverNow())}`;
      lastRefresh = Date.now();
      markReady();
    } catch (error) {
      el("tiles").dataset.error = error.message;
    }
  })();
  await refreshing;
  refreshing = null;
  if (refreshAgain) {
    refreshAgain = false;
    scheduleRefresh();
  }
}

let refreshTimer = null;
/** At most one team refresh every 5 s however often reps change. */
function scheduleRefresh() {
  if (refreshTimer) return;
  const wait = Math.max(500, 5000 - (Date.now() - lastRefresh));
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    refreshTeam();
  }, wait);
}

const TILES = ["revenue", "deals_won", "win_rate", "avg_deal_size", "activities", "retention_rate"];

function renderTiles(kpis) {
  el("period-label").textContent = `${periodLabel(kpis.period_key)} · ${periodDates(kpis.period_key)}`;
  el("tiles").replaceChildren(
    ...TILES.map((metric) =>
      h(
        "div",
        { class: "tile", dataset: { metric } },
        h("dt", {}, metricLabel(metric)),
        h("dd", {}, formatMetric(metric, kpis.kpis[metric] ?? null, { currency: calendar.currency, cents: false })),
      ),
    ),
  );
}

/** The chart's buckets: days of a week or month, months of a quarter or year. */
function buckets(periodKey) {
  const range = periodRange(periodKey);
  const today = businessToday();
  const out = [];
  if (period === "week" || period === "month") {
    for (let day = range.start; day < range.end; day = new Date(day.getTime() + 86_400_000)) {
      const date = isoDate(day);
      out.push({ kind: "day", date, current: date === today, label: String(day.getUTCDate()) });
    }
  } else {
    for (let m = range.start; m < range.end; m = new Date(Date.UTC(m.getUTCFullYear(), m.getUTCMonth() + 1, 1))) {
      const date = isoDate(m);
      const next = isoDate(new Date(Date.UTC(m.getUTCFullYear(), m.getUTCMonth() + 1, 1)));
      const label = new Intl.DateTimeFormat(navigator.language, { month: "short", timeZone: "UTC" }).format(m);
      out.push({ kind: "month", date, current: date <= today && today < next, label });
    }
  }
  return out;
}

function renderCharts() {
  const unit = period === "week" || period === "month" ? "day" : "month";
  el("charts").replaceChildren(
    chartCard("revenue", `Revenue this ${period}, by ${unit}`),
    chartCard("activities", `Activities this ${period}, by ${unit}`),
  );
}

function chartCard(metric, title) {
  const known = state.buckets.filter((b) => b.kpis);
  const total = known.reduce((sum, b) => sum + (b.kpis[metric] || 0), 0);
  const fmt = (amount, compact = false) => formatMetric(metric, amount, { currency: calendar.currency, cents: false, compact });
  return h(
    "section",
    { class: "card chart", dataset: { metric } },
    h("div", { class: "card-head" }, h("h2", {}, title), h("span", { class: "total" }, fmt(total))),
    sparkline(state.buckets, metric, fmt),
  );
}

/** Daily (or monthly) bars and the cumulative line, as inline SVG. */
function sparkline(all, metric, fmt) {
  const width = 560;
  const height = 190;
  const pad = { left: 6, right: 6, top: 14, bottom: 24 };
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const slot = innerW / Math.max(1, all.length);
  let running = 0;
  const points = [];
  all.forEach((bucket, index) => {
    if (!bucket.kpis) return;
    running += bucket.kpis[metric] || 0;
    points.push({ index, bucket, amount: bucket.kpis[metric] || 0, cumulative: running });
  });
  const maxCumulative = Math.max(1, running);
  const maxAmount = Math.max(1, ...points.map((p) => p.amount));
  const x = (index) => pad.left + slot * index + slot / 2;
  const yLine = (value) => pad.top + innerH - (value / maxCumulative) * innerH;
  const bars = points.map((p) => {
    const barH = (p.amount / maxAmount) * innerH * 0.45;
    return svg(
      "rect",
      {
        class: `chart-bar${p.bucket.current ? " today" : ""}`,
        x: (x(p.index) - slot * 0.34).toFixed(1),
        y: (pad.top + innerH - barH).toFixed(1),
        width: (slot * 0.68).toFixed(1),
        height: Math.max(0, barH).toFixed(1),
        rx: 2,
      },
      svg("title", {}, `${p.bucket.date}: ${fmt(p.amount)}`),
    );
  });
  const line = points.map((p, i) => `${i ? "L" : "M"}${x(p.index).toFixed(1)},${yLine(p.cumulative).toFixed(1)}`).join("");
  const area = points.length
    ? `${line}L${x(points[points.length - 1].index).toFixed(1)},${pad.top + innerH}L${x(points[0].index).toFixed(1)},${pad.top + innerH}Z`
    : "";
  const last = points[points.length - 1];
  const labels = [0, Math.floor((all.length - 1) / 2), all.length - 1]
    .filter((index, i, list) => all[index] && list.indexOf(index) === i)
    .map((index) => svg("text", { class: "chart-axis", x: x(index), y: height - 6, "text-anchor": "middle" }, all[index].label));
  return svg(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `cumulative ${metricLabel(metric).toLowerCase()}: ${fmt(running)}` },
    svg("line", { class: "chart-grid", x1: pad.left, x2: width - pad.right, y1: pad.top + innerH, y2: pad.top + innerH }),
    svg("line", { class: "chart-grid", x1: pad.left, x2: width - pad.right, y1: pad.top, y2: pad.top, "stroke-dasharray": "3 5" }),
    bars,
    area ? svg("path", { class: "chart-area", d: area }) : null,
    line ? svg("path", { class: "chart-line", d: line }) : null,
    last ? svg("circle", { class: "chart-dot", cx: x(last.index), cy: yLine(last.cumulative), r: 4.5 }) : null,
    labels,
  );
}

// --- reps by pace ---------------------------------------------------------------------------------------

/** Follow each member's progress: a rep socket each for a normal team, polling for a very large one. */
function followReps() {
  const { members } = state;
  if (!members.length) {
    renderReps();
    renderStatus(el("status"), "live");
    return;
  }
  if (members.length > MAX_SOCKETS) {
    const poll = async () => {
      await mapLimited(members, 4, async (rep) => {
        const found = await api(`/v1/reps/${encodeURIComponent(rep.rep_id)}/progress`).catch(() => null);
        if (found) state.progress.set(rep.rep_id, found.plans);
      });
      renderStatus(el("status"), "polling");
      renderReps();
      refreshTeam();
    };
    poll();
    setInterval(poll, POLL_MS);
    return;
  }
  for (const rep of members) {
    state.sockets.set(rep.rep_id, "connecting");
    new LiveSocket(`/v1/ws/reps/${encodeURIComponent(rep.rep_id)}`, {
      onMessage: (message) => {
        if (message.type !== "progress") return;
        const had = state.progress.has(rep.rep_id);
        state.progress.set(rep.rep_id, message.plans || []);
        scheduleRender();
        if (had) scheduleRefresh();
      },
      onState: (connection, detail) => {
        state.sockets.set(rep.rep_id, connection);
        renderConnection(detail);
        if (connection === "live" && lastRefresh && Date.now() - lastRefresh > 2000) scheduleRefresh();
      },
    }).start();
  }
}

/** One status for all the sockets: the worst of them. */
function renderConnection(detail) {
  const states = [...state.sockets.values()];
  const worst =
    ["refused", "catching-up", "reconnecting", "connecting", "live"].find((s) => states.includes(s)) || "live";
  const detailed = worst === "refused" || worst === "reconnecting" || worst === "catching-up";
  renderStatus(el("status"), worst, detailed ? detail : undefined);
  document.body.dataset.connection = worst;
}

let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    renderReps();
  });
}

/** The plan shown: ?plan=, else the one covering most members, then one over the page's own period. */
function currentPlanId() {
  const counts = new Map();
  for (const entries of state.progress.values()) {
    for (const entry of entries) counts.set(entry.plan_id, (counts.get(entry.plan_id) || 0) + 1);
  }
  if (state.planId && counts.has(state.planId)) return { planId: state.planId, counts };
  const score = (planId) => counts.get(planId) * 2 + (state.plans.get(planId)?.period === period ? 1 : 0);
  let best = null;
  for (const planId of counts.keys()) if (!best || score(planId) > score(best)) best = planId;
  return { planId: best, counts };
}

function renderReps() {
  const { planId, counts } = currentPlanId();
  el("plan-tabs").replaceChildren(
    ...[...counts.keys()].map((id) =>
      h(
        "a",
        { href: screenHref("team", teamId, pick({ period, plan: id })), class: id === planId ? "current" : "" },
        state.plans.get(id)?.name || id,
      ),
    ),
  );
  const table = el("reps");
  if (!planId) {
    const waiting = state.progress.size < state.members.length;
    table.replaceChildren(
      h("tbody", {}, h("tr", {}, h("td", { class: "muted" }, waiting ? "Loading reps…" : "No plan covers this team's reps."))),
    );
    markReady();
    return;
  }
  const plan = state.plans.get(planId);
  const currency = plan?.currency || calendar.currency;
  const rows = [];
  const outside = [];
  for (const rep of state.members) {
    const entry = (state.progress.get(rep.rep_id) || []).find((e) => e.plan_id === planId);
    if (entry) rows.push({ rep, entry });
    else outside.push(rep);
  }
  // Ahead first; reps with no pace yet (the first 1 % of a period) by attainment after them.
  rows.sort(
    (a, b) =>
      (b.entry.pace ?? -1) - (a.entry.pace ?? -1) ||
      b.entry.attainment - a.entry.attainment ||
      a.rep.name.localeCompare(b.rep.name),
  );
  const fmt = (amount) => formatMetric(plan?.metric || rows[0]?.entry.metric, amount, { currency, cents: false });
  const body = [];
  let markedLine = false;
  for (const { rep, entry } of rows) {
    const behind = entry.pace !== null && entry.pace < 1;
    if (behind && !markedLine) {
      body.push(h("tr", { class: "pace-line" }, h("td", { colspan: 7 }, "Behind pace")));
      markedLine = true;
    }
    const bar = h("span", { class: "mini-bar" }, h("i"));
    bar.firstElementChild.style.width = `${Math.min(100, entry.attainment * 100).toFixed(1)}%`;
    body.push(
      h(
        "tr",
        { class: behind ? "behind-pace" : "", dataset: { repId: rep.rep_id, pace: entry.pace ?? "" } },
        h(
          "td",
          {},
          h("a", { class: "rep-name", href: screenHref("rep", rep.rep_id) }, rep.name),
          behind ? h("span", { class: "flag" }, "Behind pace") : null,
        ),
        h("td", { class: "num" }, formatPercent(entry.attainment), bar),
        h("td", {}, entry.tier?.name || "—"),
        h("td", { class: `num ${behind ? "behind" : entry.pace === null ? "" : "ahead"}` }, formatPace(entry.pace)),
        h("td", { class: "num hide-narrow" }, entry.forecast_attainment === null ? "—" : formatPercent(entry.forecast_attainment)),
        h("td", { class: "num" }, fmt(entry.value)),
        h(
          "td",
          { class: "num hide-narrow" },
          entry.next_tier ? formatGap(entry.metric, entry.gap_to_next, entry.next_tier.name, currency) : "Top tier",
        ),
      ),
    );
  }
  for (const rep of outside) {
    body.push(
      h(
        "tr",
        { class: "muted", dataset: { repId: rep.rep_id } },
        h("td", {}, h("a", { href: screenHref("rep", rep.rep_id) }, rep.name)),
        h("td", { colspan: 6 }, state.progress.has(rep.rep_id) ? "not on this plan" : "loading…"),
      ),
    );
  }
  table.replaceChildren(
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, "Rep"),
        h("th", { class: "num" }, "Attainment"),
        h("th", {}, "Tier"),
        h("th", { class: "num" }, "Pace"),
        h("th", { class: "num hide-narrow" }, "Forecast"),
        h("th", { class: "num" }, plan ? metricLabel(plan.metric) : "Value"),
        h("th", { class: "num hide-narrow" }, "To next tier"),
      ),
    ),
    h("tbody", {}, body),
  );
  const periodKey = rows[0]?.entry.period_key;
  el("plan-period").textContent = periodKey ? `${plan?.name || planId} · ${periodLabel(periodKey)}` : "";
  markReady();
}

/** Tests and screenshots wait for data-ready: every rep's progress and the team's figures are in. */
function markReady() {
  const complete = state.progress.size >= state.members.length && lastRefresh > 0;
  document.body.dataset.ready = complete ? "1" : "";
}

main();
