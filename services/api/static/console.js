// The console's home: health at a glance for people without Grafana (GET /v1/overview every 5 s).

import { formatAgo, formatClock, formatCount, h, serverNow } from "./common.js";
import { call, el, startConsole } from "./console-common.js";

const EVERY_MS = 5000;

function row(...cells) {
  return h("tr", {}, cells);
}

function draw(overview) {
  const now = serverNow();
  el("events-today").textContent = formatCount(overview.events_today);
  el("events-day").textContent = `on ${overview.today} (business day)`;
  const pipeline = overview.pipeline;
  const behind = pipeline.behind ?? 0;
  const state = !pipeline.caught_up ? "catching-up" : behind > 0 || pipeline.waiting_to_publish > 0 ? "busy" : "live";
  el("tile-lag").dataset.state = state;
  el("pipeline-state").textContent = state === "catching-up" ? "Catching up" : behind > 0 ? `${formatCount(behind)} behind` : "Up to date";
  el("pipeline-note").textContent = state === "catching-up"
    ? `${formatCount(pipeline.behind)} events to go${pipeline.eta_seconds ? `, about ${Math.ceil(pipeline.eta_seconds)} s` : ""}`
    : `boards last changed ${(formatAgo(pipeline.last_board_change_at, now) || "never")} · ${formatCount(pipeline.waiting_to_publish)} waiting to publish`;
  const failing = overview.notifications;
  el("tile-notifications").dataset.state = failing.failed > 0 ? "bad" : failing.retrying > 0 ? "busy" : "live";
  el("notifications-failing").textContent = formatCount(failing.failed);
  el("notifications-note").textContent = `${formatCount(failing.retrying)} retrying`;

  el("sources").tBodies[0].replaceChildren(...overview.sources.map((s) => h("tr", { dataset: { source: s.source } },
    h("th", { scope: "row" }, s.source),
    h("td", { title: s.last_accepted_at }, formatAgo(s.last_accepted_at, now)),
    h("td", { class: "num" }, formatCount(s.events_today)),
    h("td", {}, s.last_event_id
      ? h("a", { href: `${overview.links.events}${encodeURIComponent(s.last_event_id)}` }, "last event (ingest audit)")
      : h("span", { class: "muted" }, "none today")),
  )));
  // A connector that is set up but has sent nothing yet is a row too: silence is what the page is for.
  const named = new Set(overview.sources.map((s) => s.source));
  for (const connector of overview.connectors) {
    const waiting = `${formatCount(connector.pending)} waiting, ${formatCount(connector.rejected)} refused`;
    const line = named.has(connector.connector)
      ? el("sources").querySelector(`tr[data-source="${CSS.escape(connector.connector)}"]`)
      : el("sources").tBodies[0].appendChild(row(h("th", { scope: "row" }, connector.connector),
        h("td", { class: "muted" }, connector.enabled ? "no events yet" : "off"), h("td", { class: "num" }, "0"),
        h("td", {})));
    if (!line) continue;
    line.dataset.source = connector.connector;
    line.lastElementChild.append(h("div", { class: connector.rejected ? "error" : "muted" },
      h("a", { href: overview.links.connectors }, waiting)));
  }
  el("sources-empty").hidden = overview.sources.length + overview.connectors.length > 0;
  el("failing").tBodies[0].replaceChildren(...failing.recent.map((n) => row(
    h("th", { scope: "row" }, h("a", { href: `/v1/notifications?rep_id=${encodeURIComponent(n.rep_id)}` }, n.rep_id)),
    h("td", {}, n.channel),
    h("td", { class: n.status === "failed" ? "error" : "" }, n.status),
    h("td", { class: "num" }, String(n.attempts)),
    h("td", { class: "wrap" }, n.last_error || ""),
  )));
  el("failing-empty").hidden = failing.recent.length > 0;
  const links = overview.links;
  el("links").replaceChildren(
    h("li", {}, h("a", { href: links.ready }, "Readiness (/v1/ready)"), " — each check of the pipeline"),
    h("li", {}, h("a", { href: links.connectors }, "CRM connectors"), " — changes waiting and records refused (ingest service)"),
    h("li", {}, h("a", { href: links.metrics }, "Metrics"), " — what Prometheus and Grafana read"),
    h("li", {}, h("a", { href: "/screens/" }, "Screens"), " — every board, team and rep page"),
  );
  el("checked").textContent = `checked ${formatClock(now)}`;
}

async function refresh() {
  try {
    draw(await call("GET", "/v1/overview"));
  } catch (error) {
    el("checked").textContent = `could not check: ${error.message}`;
  }
  document.body.dataset.ready = "1";
}

if (await startConsole()) {
  await refresh();
  setInterval(refresh, EVERY_MS);
}
