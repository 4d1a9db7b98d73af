// A commission statement: the summary (value, quota, attainment, tier, payout), the deals and activities the
// value is made of with the ledger events behind each line, and the adjustments carried for closed periods.
// Printable (the browser's print prints the statement without the page's controls); CSV from the same API.

import { api, formatMetric, formatMoney, formatPercent, h, keyQuery, pathId, periodLabel, requireToken,
  showNotice } from "./common.js";

const statementId = pathId();
const el = (id) => document.getElementById(id);

function row(...cells) {
  return h("tr", {}, ...cells.map((cell) => (cell instanceof Node ? cell : h("td", {}, cell ?? ""))));
}

function number(text) {
  return h("td", { class: "num" }, text);
}

async function main() {
  if (!(await requireToken())) return;
  let statement;
  try {
    statement = await api(`/v1/statements/${encodeURIComponent(statementId)}`);
  } catch (error) {
    showNotice("This statement cannot be shown", error.message);
    return;
  }
  const closed = statement.status === "closed";
  document.title = `salespulse · statement ${statement.period_key}`;
  el("statement-title").textContent = `${statement.plan_name || statement.plan_id} · ${periodLabel(statement.period_key)}`;
  el("statement-sub").textContent = `${statement.rep_id} · ${closed ? `closed ${new Date(statement.closed_at).toLocaleString()}` : "open: the figures move until the period is closed"}`;
  el("status").textContent = closed ? "Closed" : "Open";
  el("csv").href = `/v1/statements/${encodeURIComponent(statementId)}?${keyQuery({ format: "csv" })}`;
  const summary = [
    ["Value", formatMetric(statement.metric, Number(statement.value))],
    ["Quota", formatMetric(statement.metric, Number(statement.quota))],
    ["Attainment", formatPercent(statement.attainment, 1)],
    ["Tier", statement.tier ? statement.tier.name : "none yet"],
    ["Payout for the period", formatMoney(Number(statement.payout))],
    ["Adjustments", formatMoney(Number(statement.adjustments_payout || 0))],
    ["Total payout", formatMoney(Number(statement.total_payout ?? statement.payout))],
  ];
  if (statement.rewards && statement.rewards.length) summary.push(["Rewards", statement.rewards.join(", ")]);
  el("summary").replaceChildren(...summary.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
  const lines = statement.lines.map((line) => line.type === "deal"
    ? row(line.deal_id, line.stage, line.closed_at ? new Date(line.closed_at).toLocaleDateString() : "",
      number(formatMoney(Number(line.amount))), number(line.share === null ? "" : formatPercent(Number(line.share), 0)),
      number(line.credit), h("td", { class: "events" }, line.event_ids.join(" ")))
    : row(`${line.kind} (${line.count})`, "", "", number(""), number(""), number(line.credit),
      h("td", { class: "events" }, `${line.event_ids.length} events`)));
  el("lines").tBodies[0].replaceChildren(...(lines.length ? lines : [row(h("td", { colspan: "7", class: "muted" }, "Nothing credited in this period."))]));
  const adjustments = (statement.adjustments || []).flatMap((group) => [
    ...group.lines.map((line) => row(group.closed_period, line.deal_id || line.kind, number(line.credit),
      h("td", { class: "events" }, line.event_ids.join(" ")))),
    row(group.closed_period, "payout difference", number(formatMoney(Number(group.payout))), ""),
  ]);
  el("adjustments-card").hidden = adjustments.length === 0;
  el("adjustments").tBodies[0].replaceChildren(...adjustments);
  document.body.dataset.ready = "1";
}

main();
