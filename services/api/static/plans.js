// The plan editor (sales ops): a plan as a form — tiers, rates, quota, overrides, gate — with a preview of
// what the draft would pay on real history next to the live plan (POST /v1/plans/what-if) before it is
// published (PUT /v1/plans/{id}). Writes need an admin key: it is taken from ?token= (then removed from the
// address bar) or typed in, and kept in this page's memory only; or, opened from the console, the console's
// session (its cookie, and its CSRF token with each write: docs/console.md).

import { METRICS, formatMoney, h, idList as list, params } from "./common.js";

let adminKey = params.get("token") || "";
let consoleCsrf = ""; // with a console session instead of a key
let plans = [];
let previewed = null; // the JSON of the draft last previewed: publishing asks for a preview of exactly it
const el = (id) => document.getElementById(id);

if (adminKey) {
  params.delete("token");
  const query = params.toString();
  history.replaceState(history.state, "", `${location.pathname}${query ? `?${query}` : ""}`);
}

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: {
      ...(adminKey ? { Authorization: `Bearer ${adminKey}` } : { "X-CSRF-Token": consoleCsrf }),
      "Content-Type": "application/json", Accept: "application/json",
    },
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const answer = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(answer?.detail || `${response.status} ${response.statusText}`);
    error.status = response.status;
    error.errors = answer?.errors || [];
    throw error;
  }
  return answer;
}

function option(value, label = value) {
  return h("option", { value }, label);
}

function input(value, attrs = {}) {
  const field = h("input", attrs);
  field.value = value ?? "";
  return field;
}

function removeButton() {
  const button = h("button", { type: "button", class: "remove", "aria-label": "Remove this row" }, "×");
  button.addEventListener("click", () => { button.closest("tr").remove(); changed(); });
  return button;
}

function tierRow(tier = {}) {
  return h("tr", {},
    h("td", {}, input(tier.tier_id, { "aria-label": "Tier id", class: "t-id" })),
    h("td", {}, input(tier.name, { "aria-label": "Tier name", class: "t-name" })),
    h("td", {}, input(tier.threshold === undefined ? "" : +(tier.threshold * 100).toFixed(4), { "aria-label": "Threshold, % of quota", class: "t-threshold", inputmode: "decimal" })),
    h("td", {}, input(tier.rate === undefined ? "" : +(tier.rate * 100).toFixed(4), { "aria-label": "Rate, %", class: "t-rate", inputmode: "decimal" })),
    h("td", {}, input(tier.reward, { "aria-label": "Reward", class: "t-reward" })),
    h("td", {}, removeButton()));
}

function overrideRow(rep = "", quota = "") {
  return h("tr", {},
    h("td", {}, input(rep, { "aria-label": "Rep id", class: "o-rep" })),
    h("td", {}, input(quota, { "aria-label": "Quota", class: "o-quota", inputmode: "decimal" })),
    h("td", {}, removeButton()));
}

function fill(plan) {
  const form = el("plan-form");
  for (const name of ["plan_id", "name", "metric", "period", "effective_from", "effective_to", "quota", "payout_cap"]) {
    form.elements[name].value = plan[name] ?? "";
  }
  form.elements.gate_metric.value = plan.gate?.metric ?? "";
  form.elements.gate_min.value = plan.gate?.min ?? "";
  form.elements.teams.value = (plan.participants?.teams || []).join(", ");
  form.elements.reps.value = (plan.participants?.reps || []).join(", ");
  el("tiers").tBodies[0].replaceChildren(...(plan.tiers || [{}]).map(tierRow));
  el("overrides").tBodies[0].replaceChildren(...Object.entries(plan.quota_overrides || {}).map(([r, q]) => overrideRow(r, q)));
  changed();
}

const number = (text) => (text.trim() === "" ? null : Number(text.trim().replace(/,/g, "")));

/** The draft plan the form describes (the API checks it: its 422 names the fields to fix). */
function draft() {
  const f = el("plan-form").elements;
  const plan = {
    plan_id: f.plan_id.value.trim(), name: f.name.value.trim(), metric: f.metric.value, period: f.period.value,
    effective_from: f.effective_from.value, effective_to: f.effective_to.value || null, quota: number(f.quota.value),
    payout_cap: number(f.payout_cap.value),
    participants: { teams: list(f.teams.value), reps: list(f.reps.value) },
    tiers: [...el("tiers").tBodies[0].rows].map((row) => ({
      tier_id: row.querySelector(".t-id").value.trim(), name: row.querySelector(".t-name").value.trim(),
      threshold: number(row.querySelector(".t-threshold").value) / 100, rate: number(row.querySelector(".t-rate").value) / 100,
      reward: row.querySelector(".t-reward").value.trim() || null,
    })),
    quota_overrides: Object.fromEntries([...el("overrides").tBodies[0].rows]
      .map((row) => [row.querySelector(".o-rep").value.trim(), number(row.querySelector(".o-quota").value)])
      .filter(([rep]) => rep)),
  };
  if (f.gate_metric.value) plan.gate = { metric: f.gate_metric.value, min: number(f.gate_min.value) ?? 0 };
  return plan;
}

function changed() {
  el("publish").disabled = previewed === null || previewed !== JSON.stringify(draft());
}

function showProblems(error) {
  const items = (error.errors || []).map((e) => h("li", {}, `${e.field || "plan"}: ${e.message}`));
  el("problems").replaceChildren(...(items.length ? items : [h("li", {}, error.message)]));
}

async function preview(event) {
  event.preventDefault();
  el("problems").replaceChildren();
  el("message").textContent = "Computing on history…";
  const plan = draft();
  const body = { plan };
  if (el("f-period-date").value) body.date = el("f-period-date").value;
  let answer;
  try {
    answer = await call("POST", "/v1/plans/what-if", body);
  } catch (error) {
    el("message").textContent = "";
    showProblems(error);
    previewed = null;
    changed();
    return;
  }
  previewed = JSON.stringify(plan);
  changed();
  const total = answer.total_cost;
  el("preview-summary").textContent = `${answer.period_key}: ${answer.participants.length} reps · draft ${formatMoney(Number(total.draft))}`
    + (answer.live_plan ? ` · live ${formatMoney(Number(total.live))} · difference ${formatMoney(Number(total.difference))}` : " · a new plan")
    + ` · computed in ${answer.elapsed_ms} ms`;
  el("preview-table").tBodies[0].replaceChildren(...answer.participants.map((row) => {
    const draftPay = Number(row.draft?.payout ?? 0);
    const livePay = Number(row.live?.payout ?? 0);
    return h("tr", { dataset: { rep: row.rep_id } },
      h("td", {}, row.rep_id),
      h("td", { class: "num" }, (row.draft || row.live).value),
      h("td", {}, `${row.live?.tier?.name || "—"} → ${row.draft?.tier?.name || "—"}`),
      h("td", { class: "num" }, row.live ? formatMoney(livePay) : "—"),
      h("td", { class: "num draft-payout" }, row.draft ? formatMoney(draftPay) : "—"),
      h("td", { class: "num" }, formatMoney(draftPay - livePay)));
  }));
  el("preview-card").hidden = false;
  el("message").textContent = "Preview ready: publish to make it live.";
}

async function publish() {
  const plan = draft();
  try {
    await call("PUT", `/v1/plans/${encodeURIComponent(plan.plan_id)}`, plan);
  } catch (error) {
    showProblems(error);
    return;
  }
  el("message").textContent = `Published ${plan.plan_id}: reps see it on their pages now.`;
  await loadPlans(plan.plan_id);
}

async function loadPlans(selected) {
  plans = await call("GET", "/v1/plans");
  const select = el("plan-select");
  select.replaceChildren(option("", "New plan…"), ...plans.map((p) => option(p.plan_id, p.name)));
  select.value = selected ?? params.get("plan") ?? plans[0]?.plan_id ?? "";
  const plan = plans.find((p) => p.plan_id === select.value);
  fill(plan || { tiers: [{ tier_id: "base", name: "Base", threshold: 0, rate: 0.05 }], period: "month", metric: "revenue" });
  previewed = null;
  changed();
}

async function start() {
  el("key-form").hidden = true;
  let who;
  try {
    who = await call("GET", "/v1/whoami");
  } catch (error) {
    who = { role: `refused: ${error.message}` };
  }
  if (who.role !== "admin") {
    el("key-form").hidden = false;
    el("plan-form").hidden = true;
    el("key-form").querySelector("p").textContent = `That key cannot edit plans (${who.role}). Use an admin key.`;
    return;
  }
  await loadPlans();
  el("plan-form").hidden = false;
  document.body.dataset.ready = "1";
}

function main() {
  for (const id of ["f-metric", "f-gate_metric"]) {
    el(id).replaceChildren(...(id === "f-gate_metric" ? [option("", "no gate")] : []), ...METRICS.map((m) => option(m)));
  }
  el("add-tier").addEventListener("click", () => { el("tiers").tBodies[0].append(tierRow()); changed(); });
  el("add-override").addEventListener("click", () => { el("overrides").tBodies[0].append(overrideRow()); changed(); });
  el("plan-form").addEventListener("submit", preview);
  el("plan-form").addEventListener("input", changed);
  el("publish").addEventListener("click", publish);
  el("plan-select").addEventListener("change", () => {
    const plan = plans.find((p) => p.plan_id === el("plan-select").value);
    fill(plan || { tiers: [{}], period: "month", metric: "revenue" });
    previewed = null;
    changed();
  });
  el("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    adminKey = el("key-input").value.trim();
    el("key-input").value = "";
    start();
  });
  if (adminKey) {
    start();
    return;
  }
  call("GET", "/v1/console/session").then((session) => {
    consoleCsrf = session.csrf;
    start();
  }, () => { el("key-form").hidden = false; });
}

main();
