// The roster: teams and reps (PUT /v1/teams/{id}, PUT /v1/reps/{id}), a CSV of reps checked and previewed
// before it is saved in one go (POST /v1/roster/import?dry_run=true, then without), and reps that appear in
// events but not on the roster (GET /v1/roster/unknown-reps), added with one click.

import { h } from "./common.js";
import { call, el, problemItems, say, startConsole } from "./console-common.js";

let teams = [];
let reps = [];
let checked = null; // the CSV text last previewed without errors: Save sends exactly it

function blankToNull(value) {
  const text = String(value ?? "").trim();
  return text === "" ? null : text;
}

function editButton(label, onClick) {
  const button = h("button", { type: "button", class: "button quiet small" }, label);
  button.addEventListener("click", onClick);
  return button;
}

function drawTeams() {
  const members = new Map();
  for (const rep of reps) members.set(rep.team_id, (members.get(rep.team_id) || 0) + 1);
  el("teams").tBodies[0].replaceChildren(...teams.map((team) => h("tr", { dataset: { team: team.team_id } },
    h("th", { scope: "row" }, team.team_id),
    h("td", {}, team.name),
    h("td", {}, team.manager_rep_id || h("span", { class: "muted" }, "none")),
    h("td", { class: "num" }, String(members.get(team.team_id) || 0)),
    h("td", {}, editButton(`Edit ${team.team_id}`, () => fillTeam(team))),
  )));
  el("team-count").textContent = `${teams.length} team${teams.length === 1 ? "" : "s"}`;
  const select = el("rep-team");
  const chosen = select.value;
  select.replaceChildren(h("option", { value: "" }, "no team"),
    ...teams.map((team) => h("option", { value: team.team_id }, `${team.name} (${team.team_id})`)));
  select.value = chosen;
}

function drawReps() {
  const query = el("rep-search").value.trim().toLowerCase();
  const shown = reps.filter((rep) => !query || [rep.rep_id, rep.name, rep.team_id, rep.email]
    .some((field) => String(field || "").toLowerCase().includes(query)));
  el("reps").tBodies[0].replaceChildren(...shown.map((rep) => h("tr", { dataset: { rep: rep.rep_id } },
    h("th", { scope: "row" }, rep.rep_id),
    h("td", {}, rep.name),
    h("td", {}, rep.team_id || h("span", { class: "muted" }, "none")),
    h("td", { class: "wrap" }, rep.email || ""),
    h("td", {}, rep.timezone || ""),
    h("td", {}, editButton(`Edit ${rep.rep_id}`, () => fillRep(rep))),
  )));
  el("rep-count").textContent = query ? `${shown.length} of ${reps.length} reps` : `${reps.length} reps`;
  el("rep-ids").replaceChildren(...reps.map((rep) => h("option", { value: rep.rep_id }, rep.name)));
}

async function drawUnknown() {
  const unknown = await call("GET", "/v1/roster/unknown-reps");
  el("unknown-card").hidden = unknown.length === 0;
  el("unknown").replaceChildren(...unknown.map((rep) => {
    const button = h("button", { type: "button", class: "button small", dataset: { add: rep.rep_id } }, `Add ${rep.rep_id}`);
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await call("PUT", `/v1/reps/${encodeURIComponent(rep.rep_id)}`, { rep_id: rep.rep_id, name: rep.rep_id });
        say(`Added ${rep.rep_id} to the roster under its id: edit it below to give a name and a team.`);
        await load();
        fillRep(reps.find((r) => r.rep_id === rep.rep_id));
      } catch (error) {
        button.disabled = false;
        say(error.message, "error");
      }
    });
    return h("li", {}, button);
  }));
}

async function load() {
  [teams, reps] = await Promise.all([call("GET", "/v1/teams"), call("GET", "/v1/reps")]);
  drawTeams();
  drawReps();
  await drawUnknown();
}

function fillTeam(team) {
  const form = el("team-form");
  form.elements.team_id.value = team.team_id;
  form.elements.name.value = team.name;
  form.elements.manager_rep_id.value = team.manager_rep_id || "";
  el("team-form-title").textContent = `Edit team ${team.team_id}`;
  form.elements.name.focus();
}

function fillRep(rep) {
  if (!rep) return;
  const form = el("rep-form");
  for (const name of ["rep_id", "name", "team_id", "email", "timezone"]) form.elements[name].value = rep[name] || "";
  el("rep-form-title").textContent = `Edit rep ${rep.rep_id}`;
  form.elements.name.focus();
}

/** PUT the form's entry; a stored history goes back unchanged (the API keeps it). */
async function save(kind, plural, form, fields, problems) {
  const body = {};
  for (const name of fields) body[name] = blankToNull(form.elements[name].value);
  const id = body[`${kind}_id`];
  problems.replaceChildren();
  if (!id) {
    problems.replaceChildren(h("li", {}, `${kind}_id: give the ${kind} an id`));
    form.elements[`${kind}_id`].focus();
    return;
  }
  const stored = (kind === "rep" ? reps : teams).find((entry) => entry[`${kind}_id`] === id);
  const history = kind === "rep" ? "team_history" : "manager_history";
  if (stored?.[history]) body[history] = stored[history];
  try {
    await call("PUT", `/v1/${plural}/${encodeURIComponent(id)}`, body);
    say(`Saved ${kind} ${id}.`);
    form.reset();
    await load();
  } catch (error) {
    problems.replaceChildren(...problemItems(error));
    say(`The ${kind} was not saved: ${error.message}`, "error");
  }
}

function drawPreview(result) {
  el("csv-preview").hidden = false;
  const parts = [`${result.rows} row${result.rows === 1 ? "" : "s"}: ${result.added} to add, ${result.changed} to change, ${result.unchanged} unchanged`];
  if (result.errors.length) parts.push(`${result.errors.length} problem${result.errors.length === 1 ? "" : "s"} — fix the file and check it again; nothing is saved while any row is wrong`);
  el("csv-summary").textContent = `${parts.join("; ")}.`;
  el("csv-problems").replaceChildren(...result.errors.map((e) => h("li", {}, `line ${e.row}: ${e.field}: ${e.message}`)));
  el("csv-changes").tBodies[0].replaceChildren(...result.changes.map((change) => h("tr", { dataset: { rep: change.rep_id, action: change.action } },
    h("td", { class: "num" }, String(change.row)),
    h("th", { scope: "row" }, change.rep_id),
    h("td", {}, change.action),
    h("td", { class: "wrap" }, Object.entries(change.fields).map(([field, { from, to }]) => `${field}: ${from ?? "—"} → ${to ?? "—"}`).join("; ")),
  )));
  const savable = result.errors.length === 0 && result.added + result.changed > 0;
  el("csv-save").disabled = !savable;
  el("csv-save").textContent = savable ? `Save ${result.added + result.changed} rep${result.added + result.changed === 1 ? "" : "s"}` : "Save";
  el("csv-save-note").textContent = result.errors.length ? "Fix every problem first." : savable ? "" : "Nothing to change.";
}

async function checkFile(event) {
  event.preventDefault();
  const file = el("csv-file").files[0];
  if (!file) {
    say("Choose a CSV file first.", "error");
    el("csv-file").focus();
    return;
  }
  const text = await file.text();
  checked = null;
  try {
    const result = await call("POST", "/v1/roster/import?dry_run=true", undefined, { raw: text, contentType: "text/csv" });
    drawPreview(result);
    if (!result.errors.length) checked = text;
  } catch (error) {
    el("csv-preview").hidden = false;
    el("csv-summary").textContent = error.message;
    el("csv-problems").replaceChildren(...problemItems(error));
    el("csv-changes").tBodies[0].replaceChildren();
    el("csv-save").disabled = true;
  }
}

async function saveFile() {
  if (checked === null) return;
  el("csv-save").disabled = true;
  try {
    const result = await call("POST", "/v1/roster/import", undefined, { raw: checked, contentType: "text/csv" });
    say(`Saved: ${result.added} added, ${result.changed} changed.`);
    checked = null;
    el("csv-preview").hidden = true;
    el("csv-form").reset();
    await load();
  } catch (error) {
    el("csv-problems").replaceChildren(...problemItems(error));
    say(`Nothing was saved: ${error.message}`, "error");
  }
}

if (await startConsole()) {
  el("team-form").addEventListener("submit", (event) => {
    event.preventDefault();
    save("team", "teams", el("team-form"), ["team_id", "name", "manager_rep_id"], el("team-problems"));
  });
  el("team-form").addEventListener("reset", () => { el("team-form-title").textContent = "Add a team"; });
  el("rep-form").addEventListener("submit", (event) => {
    event.preventDefault();
    save("rep", "reps", el("rep-form"), ["rep_id", "name", "team_id", "email", "timezone"], el("rep-problems"));
  });
  el("rep-form").addEventListener("reset", () => { el("rep-form-title").textContent = "Add a rep"; });
  el("rep-search").addEventListener("input", drawReps);
  el("csv-form").addEventListener("submit", checkFile);
  el("csv-file").addEventListener("change", () => { checked = null; el("csv-save").disabled = true; });
  el("csv-save").addEventListener("click", saveFile);
  await load();
  document.body.dataset.ready = "1";
}
