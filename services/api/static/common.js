// What every screen shares: the API key from the page's own URL (traded for a session cookie on load), REST
// calls, a WebSocket that reconnects by itself with backoff, and the formatting of money, counts, rates and
// periods (CONTRACT §2–§6).

export const params = new URLSearchParams(location.search);
/** The key from `?token=` until it is traded for a session cookie; "" after that (the cookie does the work). */
export let token = params.get("token") || "";
export const locale = navigator.language || "en-US";

/** The business calendar the server fills into the page: timezone, fiscal year start month, currency. */
export const calendar = (() => {
  const meta = document.querySelector('meta[name="salespulse-calendar"]');
  const fallback = { timezone: "UTC", fiscal_year_start_month: 1, currency: "USD" };
  try {
    return { ...fallback, ...JSON.parse(meta ? meta.content : "{}") };
  } catch {
    return fallback;
  }
})();

// The gateway's clock at page load, and how far the device's clock is from it: every "now" on a screen (today's
// date, a contest's countdown, "updated at") is the gateway's, so a TV with a wrong clock shows the right period.
const clockSkewMs = Number.isFinite(calendar.now_ms) ? calendar.now_ms - Date.now() : 0;

/** Now by the gateway's clock, in Unix milliseconds (a pinned, frozen clock always answers its instant). */
export function serverNow() {
  if (calendar.clock_frozen && Number.isFinite(calendar.now_ms)) return calendar.now_ms;
  return Date.now() + clockSkewMs;
}

// --- DOM ------------------------------------------------------------------------------------------------

/** Create an element: h("div", {class: "x", dataset: {id: 1}}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** Create an SVG element with attributes. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Comma-separated ids from a text field: "a, b,,c" → ["a", "b", "c"]. */
export function idList(text) {
  return String(text || "").split(",").map((s) => s.trim()).filter(Boolean);
}

/** The path segment after `/screens/<kind>/`, decoded. */
export function pathId() {
  const parts = location.pathname.split("/").filter(Boolean);
  return parts.length >= 3 ? decodeURIComponent(parts[2]) : "";
}

/** The page's key as a query parameter, when it still has one (no session cookie). */
export function keyQuery(extra = {}) {
  return new URLSearchParams(token ? { ...extra, token } : extra);
}

/** A link to another screen that keeps the key (or, with a session cookie, needs none). */
export function screenHref(kind, id, extra = {}) {
  return `/screens/${kind}/${encodeURIComponent(id)}?${keyQuery(extra)}`;
}

/** Show a full-page message (no key, key rejected, nothing found) instead of the screen. */
export function showNotice(title, detail) {
  const notice = document.getElementById("notice");
  if (!notice) return;
  notice.replaceChildren(h("h1", {}, title), h("p", {}, detail));
  notice.hidden = false;
}

const SESSION_RENEWAL_MS = 60 * 60 * 1000; // the cookie lives 12 h; renewed hourly while the screen runs
let renewal = null;

/**
 * Trade the page's `?token=` (or the session cookie it already has) for a fresh session cookie, and take the
 * key out of the address bar, the history and any URL this page shows. False when no session could be opened.
 */
export async function openSession() {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  try {
    const response = await fetch("/v1/session", { method: "POST", headers, credentials: "same-origin", cache: "no-store" });
    if (!response.ok) return false;
  } catch {
    return false;
  }
  if (token) {
    params.delete("token");
    const query = params.toString();
    history.replaceState(history.state, "", `${location.pathname}${query ? `?${query}` : ""}${location.hash}`);
    token = "";
  }
  if (!renewal) renewal = setInterval(openSession, SESSION_RENEWAL_MS);
  return true;
}

/** A session for this screen, or the key from its URL; otherwise a notice saying how to open it. */
export async function requireToken() {
  if (await openSession()) return true;
  if (token) return true; // the trade failed (an older gateway, a network blip): go on with the key itself
  showNotice(
    "This screen needs an API key",
    "Open it with ?token=<key> at the end of the address: a viewer key is enough (salespulse keys create --role viewer).",
  );
  return false;
}

// --- REST -----------------------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

/** GET a /v1 path with the page's key; `allow404` turns a 404 into null. */
export async function api(path, { allow404 = false } = {}) {
  const response = await fetch(path, {
    headers: token ? { Authorization: `Bearer ${token}`, Accept: "application/json" } : { Accept: "application/json" },
    cache: "no-store",
    credentials: "same-origin",
  });
  if (response.status === 404 && allow404) return null;
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const problem = await response.json();
      detail = problem.detail || problem.title || detail;
    } catch {
      // not a problem document: keep the status line
    }
    throw new ApiError(response.status, detail);
  }
  return response.json();
}

/** Run `work(item)` over `items` with at most `limit` at a time; results in input order. */
export async function mapLimited(items, limit, work) {
  const results = new Array(items.length);
  let next = 0;
  async function lane() {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index], index);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

// --- live feed ------------------------------------------------------------------------------------------

const CLOSE_CATCHING_UP = 1013;

const FATAL_CLOSES = new Map([
  [4401, "The API key was refused"],
  [4403, "The API key may not read this"],
  [4404, "Not found"],
]);

/**
 * A WebSocket to a /v1/ws path that reconnects by itself: 0.5 s, 1 s, 2 s … up to 15 s apart (with jitter),
 * at once when the browser comes back online, and slowly (every 60 s) after the server refused the key.
 * `onState(state, detail)` gets "connecting", "live", "reconnecting" (detail: seconds until the next try),
 * "catching-up" (detail: the server's progress; the socket tries again every 2 s) or "refused" (detail: the
 * server's reason).
 */
export class LiveSocket {
  constructor(path, { onMessage, onState = () => {}, onOpen = () => {} }) {
    this.path = path;
    this.onMessage = onMessage;
    this.onState = onState;
    this.onOpen = onOpen;
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.stopped = false;
    this.state = "connecting";
    this.online = () => {
      if (this.state === "reconnecting") this.connectNow();
    };
    window.addEventListener("online", this.online);
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    if (!token) return `${scheme}//${location.host}${this.path}`; // the session cookie goes with the handshake
    const joiner = this.path.includes("?") ? "&" : "?";
    return `${scheme}//${location.host}${this.path}${joiner}token=${encodeURIComponent(token)}`;
  }

  start() {
    this.stopped = false;
    this.connectNow();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    window.removeEventListener("online", this.online);
    if (this.ws) this.ws.close(1000, "screen closed");
    this.ws = null;
  }

  setState(state, detail) {
    this.state = state;
    this.onState(state, detail);
  }

  connectNow() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
    }
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting", 0);
    const ws = new WebSocket(this.url());
    this.ws = ws;
    let opened = 0;
    ws.onopen = () => {
      opened = Date.now();
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      if (typeof event.data === "string" && event.data.includes('"catching_up"')) return; // see onclose
      if (this.state !== "live") {
        this.attempt = 0;
        this.setState("live");
        this.onOpen();
      }
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onMessage(message);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws || this.stopped) return;
      this.ws = null;
      if (opened && Date.now() - opened > 5000) this.attempt = 0;
      if (event.code === CLOSE_CATCHING_UP) {
        // The pipeline is still catching up with the ledger: show it, not partial numbers; ask again soon.
        this.attempt = 0;
        this.setState("catching-up", event.reason || "");
        this.timer = setTimeout(() => this.connectNow(), 2000);
        return;
      }
      const fatal = FATAL_CLOSES.get(event.code);
      if (fatal) {
        this.attempt += 1;
        this.setState("refused", event.reason || fatal);
        this.timer = setTimeout(() => this.connectNow(), 60_000);
        return;
      }
      this.schedule();
    };
  }

  schedule() {
    const base = Math.min(15, 0.5 * 2 ** this.attempt);
    const delay = base * (0.8 + Math.random() * 0.4);
    this.attempt += 1;
    const due = Date.now() + delay * 1000;
    this.setState("reconnecting", Math.ceil(delay));
    const tick = () => {
      const left = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      if (left <= 0) {
        this.connectNow();
        return;
      }
      this.setState("reconnecting", left);
      this.timer = setTimeout(tick, Math.min(1000, due - Date.now()));
    };
    this.timer = setTimeout(tick, Math.min(1000, delay * 1000));
  }
}

/** Show a connection state in a status pill: sets data-state and a short text. */
export function renderStatus(el, state, detail) {
  if (!el) return;
  el.dataset.state = state;
  const text = {
    connecting: "Connecting…",
    live: "Live",
    reconnecting: detail ? `Reconnecting in ${detail} s…` : "Reconnecting…",
    refused: `Not connected: ${detail || "refused"}`,
    "catching-up": detail ? `Catching up — ${String(detail).replace(/^catching up: /, "")}` : "Catching up…",
    polling: "Refreshing",
  }[state];
  el.replaceChildren(h("span", { class: "dot", "aria-hidden": "true" }), h("span", { class: "status-text" }, text));
  el.title = state === "refused" ? String(detail) : "";
}

// --- numbers --------------------------------------------------------------------------------------------

const MONEY_METRICS = new Set(["revenue", "avg_deal_size"]);
const RATE_METRICS = new Set(["win_rate", "retention_rate"]);

/** "money", "rate" or "count" for a KPI name of CONTRACT §3. */
export function metricKind(metric) {
  if (MONEY_METRICS.has(metric)) return "money";
  if (RATE_METRICS.has(metric)) return "rate";
  return "count";
}

const LABELS = {
  revenue: "Revenue",
  deals_won: "Deals won",
  deals_lost: "Deals lost",
  win_rate: "Win rate",
  avg_deal_size: "Avg deal size",
  renewals_won: "Renewals won",
  renewals_lost: "Renewals lost",
  retention_rate: "Retention",
  activities: "Activities",
};

/** The KPIs of CONTRACT §3 a plan or a board can rank by (besides `activities.<kind>`). */
export const METRICS = Object.keys(LABELS);

/** A KPI's display name: "Revenue", "Activities: calls". */
export function metricLabel(metric) {
  if (LABELS[metric]) return LABELS[metric];
  if (metric.startsWith("activities.")) {
    const kind = metric.slice("activities.".length).replaceAll("_", " ");
    return `${kind.charAt(0).toUpperCase()}${kind.slice(1)}s`;
  }
  return metric;
}

const UNITS = {
  activities: ["activity", "activities"],
  deals_won: ["deal won", "deals won"],
  deals_lost: ["deal lost", "deals lost"],
  renewals_won: ["renewal won", "renewals won"],
  renewals_lost: ["renewal lost", "renewals lost"],
};

/** The unit of a count KPI, singular or plural: "activities", "calls", "deals won". */
export function unitOf(metric, amount) {
  const one = Math.abs(amount) === 1;
  if (UNITS[metric]) return UNITS[metric][one ? 0 : 1];
  if (metric.startsWith("activities.")) {
    const kind = metric.slice("activities.".length).replaceAll("_", " ");
    return one ? kind : `${kind}s`;
  }
  return "";
}

const formatters = new Map();
function formatter(key, options) {
  let found = formatters.get(key);
  if (!found) {
    found = new Intl.NumberFormat(locale, options);
    formatters.set(key, found);
  }
  return found;
}

/** Money in a currency; whole units when `cents` is false (TV boards, large tiles). */
export function formatMoney(amount, currency = calendar.currency || "USD", { cents = true, compact = false } = {}) {
  if (amount === null || amount === undefined) return "—";
  const options = { style: "currency", currency };
  if (compact) Object.assign(options, { notation: "compact", maximumFractionDigits: 1 });
  else if (!cents) Object.assign(options, { minimumFractionDigits: 0, maximumFractionDigits: 0 });
  return formatter(`m|${currency}|${cents}|${compact}`, options).format(amount);
}

/** A plain count: share-weighted counts keep up to two decimals. */
export function formatCount(amount, { compact = false } = {}) {
  if (amount === null || amount === undefined) return "—";
  const options = compact ? { notation: "compact", maximumFractionDigits: 1 } : { maximumFractionDigits: 2 };
  return formatter(`c|${compact}`, options).format(amount);
}

/** A ratio as a percentage: 0.845 → "85%" (digits: fraction digits). */
export function formatPercent(ratio, digits = 0) {
  if (ratio === null || ratio === undefined) return "—";
  return formatter(`p|${digits}`, {
    style: "percent",
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(ratio);
}

/** A KPI value in its own unit. */
export function formatMetric(metric, amount, { currency, cents = true, compact = false } = {}) {
  const kind = metricKind(metric);
  if (kind === "money") return formatMoney(amount, currency, { cents, compact });
  if (kind === "rate") return formatPercent(amount, 0);
  return formatCount(amount, { compact });
}

/** What is left to the next tier, in the plan's units: "$4,200 to Accelerator", "12 activities to Gold". */
export function formatGap(metric, gap, nextTierName, currency) {
  const kind = metricKind(metric);
  let amount;
  if (kind === "money") amount = formatMoney(gap, currency, { cents: gap < 100 && gap % 1 !== 0 });
  else if (kind === "rate") amount = `${formatCount(gap * 100)} points of ${metricLabel(metric).toLowerCase()}`;
  else amount = `${formatCount(gap)} ${unitOf(metric, gap)}`.trim();
  return `${amount} to ${nextTierName}`;
}

/** A pace ratio: "1.08×". */
export function formatPace(pace) {
  if (pace === null || pace === undefined) return "—";
  return `${formatter("pace", { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(pace)}×`;
}

// --- plans ----------------------------------------------------------------------------------------------

/** The tier of a plan reached at `attainment` (largest threshold ≤ attainment), or null. */
export function tierAt(plan, attainment) {
  let reached = null;
  for (const tier of plan?.tiers || []) if (attainment !== null && tier.threshold <= attainment) reached = tier;
  return reached;
}

/** The next tier above `attainment`, or null at the top. */
export function tierAbove(plan, attainment) {
  return (plan?.tiers || []).find((tier) => tier.threshold > (attainment ?? 0)) || null;
}

/** How far along the band from the current tier to the next one: 0–1 (1 at the top). */
export function bandProgress(plan, attainment) {
  const current = tierAt(plan, attainment);
  const next = tierAbove(plan, attainment);
  if (!next) return 1;
  const floor = current ? current.threshold : 0;
  const span = next.threshold - floor;
  return span > 0 ? Math.max(0, Math.min(1, (attainment - floor) / span)) : 1;
}

// --- periods --------------------------------------------------------------------------------------------

const DAY_MS = 86_400_000;

function utcDate(year, monthIndex, day) {
  return new Date(Date.UTC(year, monthIndex, day));
}

/** The kind of a period key: "day", "week", "month", "quarter", "year" or "window" (a contest). */
export function periodKind(key) {
  if (!key) return null;
  if (key.includes("/")) return "window";
  if (/^\d{4}-\d{2}-\d{2}$/.test(key)) return "day";
  if (/^\d{4}-W\d{2}$/.test(key)) return "week";
  if (/^\d{4}-\d{2}$/.test(key)) return "month";
  if (/^FY\d{4}-Q[1-4]$/.test(key)) return "quarter";
  if (/^FY\d{4}$/.test(key)) return "year";
  return null;
}

/**
 * The local dates of a period key as UTC-midnight Dates: {start, end} with `end` exclusive. Fiscal quarters and
 * years follow the fiscal year start month: FY2027 with start month 2 runs from February 2026 to January 2027.
 */
export function periodRange(key, fiscalStart = calendar.fiscal_year_start_month || 1) {
  const kind = periodKind(key);
  if (kind === "day") {
    const [y, m, d] = key.split("-").map(Number);
    const start = utcDate(y, m - 1, d);
    return { kind, start, end: new Date(start.getTime() + DAY_MS) };
  }
  if (kind === "week") {
    const [y, w] = key.split("-W").map(Number);
    const jan4 = utcDate(y, 0, 4);
    const monday = new Date(jan4.getTime() - ((jan4.getUTCDay() + 6) % 7) * DAY_MS);
    const start = new Date(monday.getTime() + (w - 1) * 7 * DAY_MS);
    return { kind, start, end: new Date(start.getTime() + 7 * DAY_MS) };
  }
  if (kind === "month") {
    const [y, m] = key.split("-").map(Number);
    return { kind, start: utcDate(y, m - 1, 1), end: utcDate(y, m, 1) };
  }
  if (kind === "quarter" || kind === "year") {
    const fy = Number(key.slice(2, 6));
    const startYear = fiscalStart === 1 ? fy : fy - 1;
    const q = kind === "quarter" ? Number(key.slice(-1)) : 1;
    const months = kind === "quarter" ? 3 : 12;
    const firstMonth = fiscalStart - 1 + (q - 1) * 3;
    return { kind, start: utcDate(startYear, firstMonth, 1), end: utcDate(startYear, firstMonth + months, 1) };
  }
  if (kind === "window") {
    const [from, to] = key.split("/");
    return { kind, start: new Date(from), end: new Date(to) };
  }
  return null;
}

const DATE_CACHE = new Map();
function dates(options) {
  const key = JSON.stringify(options);
  if (!DATE_CACHE.has(key)) DATE_CACHE.set(key, new Intl.DateTimeFormat(locale, options));
  return DATE_CACHE.get(key);
}

/** "November 2026", "Week 48 · 2026", "Q4 FY2026", "FY2026", "Sun, 29 Nov 2026". */
export function periodLabel(key) {
  const range = periodRange(key);
  if (!range) return key || "";
  switch (range.kind) {
    case "day":
      return dates({ weekday: "short", day: "numeric", month: "short", year: "numeric", timeZone: "UTC" }).format(
        range.start,
      );
    case "week":
      return `Week ${Number(key.split("-W")[1])} · ${key.slice(0, 4)}`;
    case "month":
      return dates({ month: "long", year: "numeric", timeZone: "UTC" }).format(range.start);
    case "quarter":
      return `${key.slice(-2)} ${key.slice(0, 6)}`;
    case "year":
      return key;
    case "window":
      return "Contest";
    default:
      return key;
  }
}

/** The dates a period covers, last day inclusive: "1 Oct – 31 Dec 2026". */
export function periodDates(key) {
  const range = periodRange(key);
  if (!range) return "";
  if (range.kind === "window") {
    const f = dates({ day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
    return `${f.format(range.start)} – ${f.format(range.end)}`;
  }
  const last = new Date(range.end.getTime() - DAY_MS);
  const f = dates({ day: "numeric", month: "short", year: "numeric", timeZone: "UTC" });
  if (range.kind === "day") return f.format(range.start);
  return f.formatRange ? f.formatRange(range.start, last) : `${f.format(range.start)} – ${f.format(last)}`;
}

/** Today's date in the business timezone as "YYYY-MM-DD". */
export function businessToday(now = new Date(serverNow())) {
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone: calendar.timezone || "UTC",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
  }).formatToParts(now);
  const get = (type) => parts.find((p) => p.type === type).value;
  return `${get("year")}-${get("month")}-${get("day")}`;
}

/** A UTC-midnight Date as "YYYY-MM-DD". */
export function isoDate(day) {
  return day.toISOString().slice(0, 10);
}

/** "14:03:22" in the viewer's clock. */
export function formatClock(when) {
  if (!when) return "—";
  return dates({ hour: "2-digit", minute: "2-digit", second: "2-digit" }).format(new Date(when));
}

/** "3 min ago", "yesterday" — for notifications. */
export function formatAgo(when, now = serverNow()) {
  if (!when) return "";
  const seconds = Math.round((new Date(when).getTime() - now) / 1000);
  const rtf = new Intl.RelativeTimeFormat(locale, { numeric: "auto" });
  const abs = Math.abs(seconds);
  if (abs < 60) return rtf.format(seconds, "second");
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), "minute");
  if (abs < 86_400) return rtf.format(Math.round(seconds / 3600), "hour");
  return rtf.format(Math.round(seconds / 86_400), "day");
}

/** "2 h 05 min" until `when`. */
export function formatCountdown(when, now = serverNow()) {
  const minutes = Math.max(0, Math.round((new Date(when).getTime() - now) / 60_000));
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${String(minutes % 60).padStart(2, "0")} min`;
  return `${Math.round(hours / 24)} days`;
}
