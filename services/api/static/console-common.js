// What every console page shares: the admin session (an admin key traded once for an HttpOnly cookie; writes
// carry the session's CSRF token), calls to the admin API with its problems shown as they are, the navigation
// bar, and small form helpers. The console writes only through the public admin API (docs/console.md).

import { h, params } from "./common.js";

const CSRF_HEADER = "X-CSRF-Token";
let csrf = "";
export const el = (id) => document.getElementById(id);

/** An API failure: the problem document's detail, status and per-field errors. */
export class ProblemError extends Error {
  constructor(status, detail, errors = [], body = null) {
    super(detail);
    this.status = status;
    this.errors = errors;
    this.body = body;
  }
}

/** Call the admin API: JSON in and out (or `raw` text with its content type); writes carry the CSRF token. */
export async function call(method, path, body, { raw = null, contentType = "application/json" } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers[CSRF_HEADER] = csrf;
  if (body !== undefined || raw !== null) headers["Content-Type"] = contentType;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", cache: "no-store",
    body: raw !== null ? raw : body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    throw new ProblemError(response.status, answer?.detail || `${response.status} ${response.statusText}`,
      answer?.errors || [], answer);
  }
  return answer;
}

async function trade(key) {
  const response = await fetch("/v1/console/session", {
    method: "POST", headers: { Authorization: `Bearer ${key}`, Accept: "application/json" },
    credentials: "same-origin", cache: "no-store",
  });
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw new ProblemError(response.status, answer?.detail || `${response.status}`);
  return answer;
}

function signInForm(reason) {
  const input = h("input", { id: "signin-key", type: "password", autocomplete: "off", required: true,
    "aria-describedby": "signin-help" });
  const problem = h("p", { id: "signin-problem", class: "problems", role: "alert" }, reason || "");
  const form = h("form", { id: "signin", class: "card signin" },
    h("h2", {}, "Sign in to the console"),
    h("p", { id: "signin-help", class: "muted" },
      "Paste an admin key (salespulse keys create --role admin, or SALESPULSE_ADMIN_KEY). It is traded for a ",
      "session cookie that ends after 12 hours or when you sign out; the key itself is not kept."),
    h("label", { for: "signin-key" }, "Admin key"), input,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button" }, "Sign in")),
    problem);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await trade(input.value.trim());
      location.reload();
    } catch (error) {
      problem.textContent = error.message;
      input.focus();
    }
  });
  return form;
}

const PAGES = [
  ["/console/", "Health"],
  ["/console/roster", "Roster"],
  ["/console/boards", "Boards"],
  ["/console/keys", "Keys"],
];

function navigation(session) {
  const signOut = h("button", { type: "button", class: "button quiet", id: "sign-out" }, "Sign out");
  signOut.addEventListener("click", async () => {
    await call("DELETE", "/v1/console/session").catch(() => null);
    location.assign("/console/");
  });
  const here = location.pathname.replace(/\/+$/, "") || "/console";
  return h("nav", { class: "console-nav", "aria-label": "Console" },
    h("a", { class: "brand", href: "/console/" }, "salespulse"),
    h("ul", {}, PAGES.map(([href, label]) => h("li", {},
      h("a", { href, "aria-current": here === href.replace(/\/+$/, "") ? "page" : null }, label)))),
    h("a", { href: "/screens/admin/plans", class: "plain" }, "Plans ↗"),
    h("span", { class: "muted who" }, `Signed in: ${session.name}`),
    signOut);
}

/**
 * Open the console page: trade `?token=` (an admin key) when the address has one and take it out of the
 * address bar, then read the session; without one, show the sign-in form and stop. Resolves to the session.
 */
export async function startConsole() {
  const key = params.get("token");
  let reason = "";
  if (key) {
    params.delete("token");
    const query = params.toString();
    history.replaceState(history.state, "", `${location.pathname}${query ? `?${query}` : ""}`);
    try {
      await trade(key);
    } catch (error) {
      reason = error.message;
    }
  }
  const main = document.querySelector("main");
  let session = null;
  try {
    session = await call("GET", "/v1/console/session");
  } catch (error) {
    if (error.status !== 401 && error.status !== 403) reason = reason || error.message;
  }
  if (!session) {
    main.hidden = true;
    main.before(signInForm(reason));
    el("signin-key").focus();
    document.body.dataset.ready = "1";
    return null;
  }
  csrf = session.csrf;
  document.body.prepend(navigation(session));
  main.hidden = false;
  return session;
}

/** Show a page-level message: `kind` "ok" or "error"; announced to screen readers. */
export function say(text, kind = "ok") {
  const box = el("message");
  if (!box) return;
  box.textContent = text;
  box.dataset.kind = kind;
}

/** Field problems from a 422 as list items ("field: message"). */
export function problemItems(error) {
  const items = (error.errors || []).map((e) => h("li", {}, `${e.row ? `line ${e.row}: ` : ""}${e.field ? `${e.field}: ` : ""}${e.message}`));
  return items.length ? items : [h("li", {}, error.message)];
}

/** Copy text to the clipboard, falling back to selecting it for Ctrl+C when the browser refuses. */
export async function copy(text, field) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (field) {
      field.focus();
      field.select();
    }
    return false;
  }
}
