// A rep's own page: progress in every plan (attainment, tier, gap to the next tier, payout, rewards, pace,
// forecast and the plan's whole ladder), the rep's KPIs, and tier-crossing notifications; live over
// WS /v1/ws/reps/{id}.

import {
  LiveSocket,
  api,
  calendar,
  formatAgo,
  formatClock,
  formatGap,
  formatMetric,
  formatMoney,
  formatPace,
  formatPercent,
  h,
  metricKind,
  metricLabel,
  pathId,
  periodDates,
  periodLabel,
  renderStatus,
  requireToken,
  screenHref,
  serverNow,
  showNotice,
  tierAt,
  unitOf,
} from "./common.js";

const repId = pathId();
const plansById = new Map();
let notifications = [];
let notificationsAvailable = true;

const el = (id) => document.getElementById(id);

async function main() {
  if (!(await requireToken())) return;
  let progress;
  try {
    const [rep, plans, firstProgress] = await Promise.all([
      api(`/v1/reps/${encodeURIComponent(repId)}`, { allow404: true }),
      api("/v1/plans"),
      api(`/v1/reps/${encodeURIComponent(repId)}/progress`, { allow404: true }),
    ]);
    if (!firstProgress) {
      showNotice("No such rep", `There is no rep "${repId}": not on the roster and no sales recorded.`);
      return;
    }
    progress = firstProgress;
    for (const plan of plans) plansById.set(plan.plan_id, plan);
    await renderHeader(rep); // before the page says it is ready: the team name is part of what it shows
  } catch (error) {
    showNotice("This page could not load", error.message);
    return;
  }
  renderPlans(progress.plans);
  loadList("achievements", renderBadges);
  loadList("streaks", renderStreaks);
  loadNotifications();
  loadStatements();
  loadProjection();
  new LiveSocket(`/v1/ws/reps/${encodeURIComponent(repId)}`, {
    onMessage,
    onState: (state, detail) => renderStatus(el("status"), state, detail),
    onOpen: reloadPlans,
  }).start();
}

/** What each plan would pay if every open deal of the rep closed won today at its amount. */
async function loadProjection() {
  const box = el("projection");
  let answer;
  try {
    answer = await api(`/v1/reps/${encodeURIComponent(repId)}/projection`);
  } catch (error) {
    box.replaceChildren(h("p", { class: "muted" }, error.status === 403 ? "Needs your own key." : error.message));
    return;
  }
  const items = answer.plans.map((p) => h("li", { dataset: { planId: p.plan_id } },
    h("strong", {}, plansById.get(p.plan_id)?.name || p.plan_id),
    h("span", { class: "muted" }, ` · ${p.open_deals} open ${p.open_deals === 1 ? "deal" : "deals"}`),
    h("div", {}, `Attainment ${formatPercent(p.now.attainment)} → ${formatPercent(p.if_pipeline_closes.attainment)}`
      + ` · tier ${p.now.tier?.name || "none"} → ${p.if_pipeline_closes.tier?.name || "none"}`),
    h("div", {}, "Payout ", h("span", { class: "projected-payout" },
      `${formatMoney(Number(p.now.payout))} → ${formatMoney(Number(p.if_pipeline_closes.payout))}`))));
  box.replaceChildren(items.length
    ? h("ul", { class: "statements projection" }, ...items)
    : h("p", { class: "muted" }, "No plan covers you in this period."));
  box.dataset.ready = "1";
}

/** The rep's statements (a screen key may not read pay: the list then says so), each linking to its page. */
async function loadStatements() {
  const list = el("statements");
  let answer;
  try {
    answer = await api(`/v1/reps/${encodeURIComponent(repId)}/statements`);
  } catch (error) {
    list.replaceChildren(h("li", { class: "muted" }, error.status === 403 ? "Statements need your own key." : error.message));
    return;
  }
  const items = answer.statements.map((s) => h("li", {},
    h("a", { href: screenHref("statement", s.statement_id) }, `${plansById.get(s.plan_id)?.name || s.plan_id} · ${periodLabel(s.period_key)}`),
    h("span", { class: "muted" }, ` ${s.status === "closed" ? "closed" : "open"} · ${formatMoney(Number(s.total_payout ?? s.payout))}`)));
  list.replaceChildren(...(items.length ? items : [h("li", { class: "muted" }, "No statements yet.")]));
  list.dataset.ready = "1";
}

async function renderHeader(rep) {
  el("rep-name").textContent = rep?.name || repId;
  document.title = `${rep?.name || repId} · salespulse`;
  if (rep?.team_id) {
    const team = await api(`/v1/teams/${encodeURIComponent(rep.team_id)}`, { allow404: true }).catch(() => null);
    const link = h("a", { href: screenHref("team", rep.team_id) }, team?.name || rep.team_id);
    el("rep-team").replaceChildren("Team ", link);
  }
}

let connections = 0;

/** Plans may change while the page is open: fetch them again after each reconnect. */
async function reloadPlans() {
  if (connections++ === 0) return;
  try {
    for (const plan of await api("/v1/plans")) plansById.set(plan.plan_id, plan);
  } catch {
    // keep the ladders already shown
  }
}

function onMessage(message) {
  if (message.type === "progress") {
    renderPlans(message.plans || []);
    renderKpis(message.kpis || {});
    if (Array.isArray(message.achievements)) renderBadges(message.achievements);
    if (Array.isArray(message.streaks)) renderStreaks(message.streaks);
  } else if (message.type === "notification") {
    const id = message.notification_id;
    if (id && notifications.some((n) => n.notification_id === id)) return;
    notifications = [message, ...notifications].slice(0, 20);
    renderNotifications(message);
  }
}

// --- plans ----------------------------------------------------------------------------------------------

function renderPlans(entries) {
  const container = el("plans");
  if (!entries.length) {
    container.replaceChildren(h("section", { class: "card muted" }, "No incentive plan covers you in this period."));
  } else {
    container.replaceChildren(...entries.map((entry) => planCard(entry, plansById.get(entry.plan_id))));
  }
  el("updated").textContent = `Updated ${formatClock(serverNow())}`;
  document.body.dataset.ready = "1";
}

function planCard(p, plan) {
  const currency = plan?.currency || calendar.currency;
  const metric = p.metric;
  const fmt = (amount) => formatMetric(metric, amount, { currency, cents: false });
  const withUnit = (amount) => `${fmt(amount)}${metricKind(metric) === "count" ? ` ${unitOf(metric, amount)}` : ""}`;
  const top = !p.next_tier;
  const tierName = p.tier?.name;
  const paysMoney = (plan?.tiers || []).some((tier) => Number(tier.rate) > 0);

  const hero = h(
    "div",
    { class: "plan-hero" },
    h("div", {}, h("div", { class: "attainment" }, formatPercent(p.attainment)), h("div", { class: "attainment-of" }, `of ${fmt(p.quota)} ${metricKind(metric) === "money" ? "quota" : `${metricLabel(metric).toLowerCase()} quota`}`)),
    h("span", { class: `tier-badge${tierName ? "" : " none"}${top ? " top" : ""}` }, tierName || "No tier yet"),
  );
  const gap = top
    ? h("p", { class: "gap top" }, "Top tier reached")
    : h("p", { class: "gap" }, formatGap(metric, p.gap_to_next, p.next_tier.name, currency));

  const pace = p.pace;
  const forecastTier = plan && p.forecast_attainment !== null ? tierAt(plan, p.forecast_attainment) : null;
  const facts = h(
    "dl",
    { class: "facts" },
    fact("So far", fmt(p.value)),
    paysMoney || !plan
      ? fact(
          "Payout",
          formatMoney(p.payout, currency),
          plan?.payout_cap != null ? `so far, cap ${formatMoney(plan.payout_cap, currency, { cents: false })}` : "so far",
        )
      : fact("Payout", "—", "rewards only"),
    fact(
      "Pace",
      pace === null ? "—" : formatPace(pace),
      pace === null ? "too early to tell" : pace >= 1 ? "ahead of pace" : "behind pace",
      pace === null ? "" : pace >= 1 ? "ahead" : "behind",
    ),
    fact(
      "Forecast",
      p.forecast_attainment === null ? "—" : formatPercent(p.forecast_attainment),
      p.forecast_attainment === null ? "too early to tell" : forecastTier ? `→ ${forecastTier.name}` : "→ no tier",
    ),
  );

  const rewards = h("div", { class: "rewards" });
  if (p.rewards.length) {
    rewards.append(h("strong", {}, "Rewards reached"), h("ul", {}, p.rewards.map((r) => h("li", {}, r))));
  } else {
    const nextReward = (plan?.tiers || []).find((t) => t.reward && t.threshold > p.attainment);
    rewards.append(
      h("span", { class: "muted" }, "No rewards reached yet."),
      nextReward ? h("span", {}, ` Next: ${nextReward.reward} at ${nextReward.name}.`) : null,
    );
  }

  return h(
    "article",
    { class: "card plan", dataset: { planId: p.plan_id } },
    h(
      "header",
      { class: "plan-head" },
      h("h2", { class: "plan-name" }, plan?.name || p.plan_id),
      h("span", { class: "plan-period" }, `${periodLabel(p.period_key)} · ${periodDates(p.period_key)}`),
    ),
    hero,
    gap,
    plan ? track(plan, p) : null,
    facts,
    rewards,
    plan ? ladder(plan, p, withUnit, paysMoney) : null,
  );
}

function fact(label, value, note = null, tone = "") {
  return h("div", {}, h("dt", {}, label), h("dd", { class: tone }, value, note ? h("small", {}, note) : null));
}

/** A bar from 0 to a little past the top tier with a tick per tier threshold. */
function track(plan, p) {
  const thresholds = plan.tiers.map((t) => t.threshold);
  const end = Math.max(thresholds[thresholds.length - 1] * 1.15, p.attainment * 1.05, 0.1);
  const fill = h("div", { class: "track-fill" });
  fill.style.width = `${Math.min(100, (p.attainment / end) * 100).toFixed(2)}%`;
  const ticks = plan.tiers
    .filter((t) => t.threshold > 0)
    .map((t, index) => {
      const at = (t.threshold / end) * 100;
      const tick = h(
        "div",
        {
          class: `track-tick${t.threshold <= p.attainment ? " reached" : ""}${at > 85 ? " edge-right" : ""}${index % 2 ? " low" : ""}`,
        },
        h("span", {}, `${t.name} ${formatPercent(t.threshold)}`),
      );
      tick.style.left = `${at.toFixed(2)}%`;
      return tick;
    });
  return h("div", { class: "track", role: "img", "aria-label": `${formatPercent(p.attainment)} of quota` }, fill, ticks);
}

function ladder(plan, p, fmt, paysMoney) {
  const current = p.tier?.tier_id;
  const rows = plan.tiers.map((t) => {
    const reached = t.threshold <= p.attainment && (t.threshold > 0 || p.tier);
    return h(
      "tr",
      { class: `${reached ? "reached" : ""}${t.tier_id === current ? " current" : ""}`, dataset: { tierId: t.tier_id } },
      h("td", {}, t.name),
      h("td", { class: "num" }, formatPercent(t.threshold), h("small", { class: "amount" }, fmt(t.threshold * p.quota))),
      paysMoney ? h("td", { class: "num" }, formatPercent(Number(t.rate), Number(t.rate) * 100 % 1 ? 1 : 0)) : null,
      h("td", { class: "reward" }, t.reward || "—"),
    );
  });
  const gate = plan.gate
    ? h(
        "p",
        { class: "muted" },
        `Tiers above 100% pay their rate only while ${metricLabel(plan.gate.metric).toLowerCase()} is at least ${formatMetric(plan.gate.metric, plan.gate.min, { currency: plan.currency })}.`,
      )
    : null;
  return h(
    "div",
    { class: "ladder-wrap" },
    h(
      "table",
      { class: "ladder" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", {}, "Tier"),
          h("th", { class: "num" }, "From"),
          paysMoney ? h("th", { class: "num" }, "Rate") : null,
          h("th", {}, "Reward"),
        ),
      ),
      h("tbody", {}, rows),
    ),
    gate,
  );
}

// --- KPIs -----------------------------------------------------------------------------------------------

const KPI_ROWS = ["revenue", "deals_won", "win_rate", "avg_deal_size", "activities"];
const KPI_PERIODS = [
  ["day", "Today"],
  ["week", "Week"],
  ["month", "Month"],
  ["quarter", "Quarter"],
  ["year", "Year"],
];

function renderKpis(kpis) {
  const head = h(
    "tr",
    {},
    h("th", {}, ""),
    KPI_PERIODS.map(([kind, label]) => h("th", { class: `num${kind === "year" ? " hide-narrow" : ""}` }, label)),
  );
  const rows = KPI_ROWS.map((metric) =>
    h(
      "tr",
      { dataset: { metric } },
      h("td", {}, metricLabel(metric)),
      KPI_PERIODS.map(([kind]) =>
        h(
          "td",
          { class: `num${kind === "year" ? " hide-narrow" : ""}` },
          formatMetric(metric, kpis[kind]?.kpis?.[metric] ?? null, { cents: false }),
        ),
      ),
    ),
  );
  el("kpis").replaceChildren(h("div", { class: "kpi-wrap" }, h("table", { class: "kpi-table" }, h("thead", {}, head), h("tbody", {}, rows))));
}

// --- streaks --------------------------------------------------------------------------------------------

/** One of the rep's lists (`/v1/reps/{id}/{what}`) drawn by `render`; nothing to show when it cannot load. */
async function loadList(what, render) {
  try {
    const found = await api(`/v1/reps/${encodeURIComponent(repId)}/${what}`, { allow404: true });
    render(found?.[what] || []);
  } catch {
    render([]);
  }
}

/** Each streak the rep takes part in: the current run in working days, the longest, and a nudge when today is
 * a working day not met yet. */
function renderStreaks(streaks) {
  const list = el("streaks");
  if (!streaks.length) {
    list.replaceChildren(h("li", { class: "muted" }, "No streaks are set up for you."));
    return;
  }
  list.replaceChildren(
    ...streaks.map((s) => {
      const note = s.at_risk
        ? "Not met yet today: keep it alive!"
        : s.met_today
          ? "Met today"
          : s.current
            ? `Since ${s.since}`
            : "Start one today";
      return h(
        "li",
        { class: "streak", dataset: { streakId: s.streak_id, atRisk: String(s.at_risk), current: String(s.current) } },
        h("span", { class: "streak-days" }, `${s.badge} ${s.current} day${s.current === 1 ? "" : "s"}`),
        h("span", { class: "streak-name" }, s.name),
        h("span", { class: "streak-note" }, `${note} · longest ${s.longest}`),
      );
    }),
  );
}

// --- badges ---------------------------------------------------------------------------------------------

/** The achievements earned, newest first: badge, name, and the period it was earned in. */
function renderBadges(earned) {
  const list = el("badges");
  list.dataset.count = String(earned.length);
  if (!earned.length) {
    list.replaceChildren(h("li", { class: "muted" }, "No badges yet: they appear here the moment you earn one."));
    return;
  }
  list.replaceChildren(
    ...earned.map((a) =>
      h(
        "li",
        { class: "earned", title: a.description || a.name, "data-achievement": a.achievement_id },
        h("span", { class: "badge-icon", "aria-hidden": "true" }, a.badge),
        h("span", { class: "badge-name" }, a.name),
        h("span", { class: "badge-when" }, a.period_key === "window" ? formatAgo(a.earned_at) : periodLabel(a.period_key)),
      ),
    ),
  );
}

// --- notifications --------------------------------------------------------------------------------------

async function loadNotifications() {
  try {
    const found = await api(`/v1/notifications?rep_id=${encodeURIComponent(repId)}&limit=20`, { allow404: true });
    notificationsAvailable = Array.isArray(found);
    if (notificationsAvailable) {
      const live = notifications;
      notifications = [...live, ...found.filter((n) => !live.some((l) => l.notification_id === n.notification_id))];
    }
  } catch {
    notificationsAvailable = false;
  }
  renderNotifications(null);
}

function renderNotifications(fresh) {
  const list = el("notifications");
  list.dataset.available = String(notificationsAvailable);
  if (!notifications.length) {
    list.replaceChildren(h("li", { class: "muted" }, "No notifications yet: they appear here the moment you reach a tier."));
    return;
  }
  list.replaceChildren(
    ...notifications.map((n) => {
      if (n.kind === "achievement") return achievementItem(n, n === fresh);
      const plan = plansById.get(n.plan_id);
      const tierName = typeof n.tier === "string" ? n.tier : n.tier?.name || n.tier?.tier_id || "a tier";
      const reward = n.reward ?? (plan?.tiers || []).find((t) => t.tier_id === n.tier?.tier_id)?.reward;
      const when = n.crossed_at || n.at;
      return h(
        "li",
        { class: n === fresh ? "fresh" : "" },
        h("span", { class: "badge", "aria-hidden": "true" }, "★"),
        h(
          "div",
          {},
          h("div", { class: "what" }, `Reached ${tierName} in ${plan?.name || n.plan_name || n.plan_id}`),
          reward ? h("div", {}, `Reward: ${reward}`) : null,
          h("div", { class: "when" }, [n.period_key ? periodLabel(n.period_key) : null, when ? formatAgo(when) : null].filter(Boolean).join(" · ")),
        ),
      );
    }),
  );
}

function achievementItem(n, fresh) {
  const a = n.achievement || {};
  const when = n.crossed_at || n.at;
  return h(
    "li",
    { class: fresh ? "fresh" : "" },
    h("span", { class: "badge", "aria-hidden": "true" }, a.badge || "★"),
    h(
      "div",
      {},
      h("div", { class: "what" }, `Earned ${a.name || a.achievement_id}`),
      a.description ? h("div", {}, a.description) : null,
      h("div", { class: "when" }, [n.period_key && n.period_key !== "window" ? periodLabel(n.period_key) : null, when ? formatAgo(when) : null].filter(Boolean).join(" · ")),
    ),
  );
}

main();
