// Keys: create a scoped key (POST /v1/keys) shown once with its screen's address and a QR code, list keys with
// their role, scope, last use and expiry (GET /v1/keys), and revoke one (DELETE /v1/keys/{id}): a TV open with it
// closes within seconds, saying the key was revoked.

import { formatAgo, h, params, serverNow } from "./common.js";
import { call, copy, el, problemItems, say, startConsole } from "./console-common.js";

let session = null;

function showRole() {
  const role = el("k-role").value;
  for (const node of el("key-create").querySelectorAll("[data-role]")) node.hidden = node.dataset.role !== role;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function drawKeys(keys) {
  const now = serverNow();
  const showEnded = el("show-ended").checked;
  el("keys").tBodies[0].replaceChildren(...keys.filter((key) => showEnded || key.state === "active").map((key) => {
    const cells = [
      h("th", { scope: "row" }, key.name),
      h("td", {}, key.role),
      h("td", {}, key.scope),
      h("td", { title: when(key.last_used_at) }, key.last_used_at ? formatAgo(key.last_used_at, now) : h("span", { class: "muted" }, "never")),
      h("td", {}, key.expires_at ? when(key.expires_at) : h("span", { class: "muted" }, "never")),
      h("td", { class: key.state === "active" ? "" : "muted" }, key.state),
    ];
    const actions = h("td", { class: "row-actions" });
    if (key.state === "active") {
      const revoke = h("button", { type: "button", class: "button danger small", dataset: { revoke: key.key_id } }, `Revoke ${key.name}`);
      revoke.addEventListener("click", () => revokeKey(key, revoke));
      actions.append(revoke);
    }
    return h("tr", { dataset: { key: key.key_id, state: key.state } }, cells, actions);
  }));
}

async function load() {
  drawKeys(await call("GET", "/v1/keys"));
}

async function revokeKey(key, button) {
  const mine = session && session.key_id === key.key_id;
  const question = mine
    ? `Revoke ${key.name}? It is the key this console was opened with: you will be signed out.`
    : `Revoke ${key.name}? Screens open with it close within seconds.`;
  if (!window.confirm(question)) return;
  button.disabled = true;
  try {
    await call("DELETE", `/v1/keys/${encodeURIComponent(key.key_id)}`);
    say(`Revoked ${key.name}: screens open with it close within seconds.`);
    await load();
  } catch (error) {
    button.disabled = false;
    say(error.message, "error");
  }
}

async function createKey(event) {
  event.preventDefault();
  const form = el("key-create").elements;
  const role = form.role.value;
  const body = { name: form.name.value.trim(), role };
  if (role === "screen") body.boards = [...el("k-boards").querySelectorAll("input:checked")].map((box) => box.value);
  if (role === "rep") body.rep_id = form.rep_id.value || null;
  if (role === "manager") body.team_id = form.team_id.value || null;
  if (form.expires_in.value) body.expires_in = form.expires_in.value;
  if (role === "screen" && form.screen.value) body.screen = form.screen.value;
  el("key-problems").replaceChildren();
  try {
    const created = await call("POST", "/v1/keys", body);
    showCreated(created);
    el("key-create").reset();
    el("k-screen-note").hidden = true;
    showRole();
    await load();
  } catch (error) {
    el("key-problems").replaceChildren(...problemItems(error));
    say(`No key was created: ${error.message}`, "error");
  }
}

function showCreated(created) {
  el("created-url").value = created.url || "";
  el("created-key").value = created.key;
  el("open-url").hidden = !created.url;
  if (created.url) el("open-url").href = created.url;
  el("created-qr").hidden = !created.qr_svg;
  if (created.qr_svg) el("created-qr").src = created.qr_svg;
  el("created-title").textContent = `Key “${created.name}” created: copy it now`;
  el("created").dataset.keyId = created.key_id;
  el("created").hidden = false;
  el("created").focus();
  say(`Created ${created.name} (${created.scope}).`);
}

async function options() {
  const [boards, reps, teams] = await Promise.all([call("GET", "/v1/boards"), call("GET", "/v1/reps"), call("GET", "/v1/teams")]);
  const wanted = new Set((params.get("boards") || "").split(",").filter(Boolean));
  el("k-boards").replaceChildren(...boards.map((board) => h("label", { class: "check" },
    h("input", { type: "checkbox", value: board.board_id, checked: wanted.has(board.board_id) }), ` ${board.title} (${board.board_id})`)));
  if (!boards.length) el("k-boards").replaceChildren(h("span", { class: "muted" }, "No boards yet: create one on the Boards page."));
  el("k-rep").replaceChildren(...reps.map((rep) => h("option", { value: rep.rep_id }, `${rep.name} (${rep.rep_id})`)));
  el("k-team").replaceChildren(...teams.map((team) => h("option", { value: team.team_id }, `${team.name} (${team.team_id})`)));
}

session = await startConsole();
if (session) {
  await options();
  // Arriving from the Boards page: a TV key for a board or a rotation, ready to create.
  if (params.get("role")) el("k-role").value = params.get("role");
  if (params.get("name")) el("k-name").value = params.get("name");
  if (params.get("screen")) {
    el("k-screen").value = params.get("screen");
    el("k-screen-note").textContent = `The key will open ${params.get("screen")}.`;
    el("k-screen-note").hidden = false;
  }
  showRole();
  el("k-role").addEventListener("change", showRole);
  el("key-create").addEventListener("submit", createKey);
  el("show-ended").addEventListener("change", load);
  el("copy-url").addEventListener("click", async () => say(await copy(el("created-url").value, el("created-url")) ? "Copied the address." : "Press Ctrl+C to copy."));
  el("copy-key").addEventListener("click", async () => say(await copy(el("created-key").value, el("created-key")) ? "Copied the key." : "Press Ctrl+C to copy."));
  el("created-done").addEventListener("click", () => {
    el("created-url").value = "";
    el("created-key").value = "";
    el("created-qr").removeAttribute("src");
    el("created").hidden = true;
  });
  await load();
  document.body.dataset.ready = "1";
}
