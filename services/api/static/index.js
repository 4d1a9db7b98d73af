// The screens' index: every board, team and rep with a link to its screen (the key is carried along).

import { api, h, keyQuery, requireToken, screenHref, showNotice } from "./common.js";

async function main() {
  if (!(await requireToken())) return;
  let boards, teams, reps;
  try {
    [boards, teams, reps] = await Promise.all([api("/v1/boards"), api("/v1/teams"), api("/v1/reps")]);
  } catch (error) {
    showNotice("The screens could not load", error.message);
    return;
  }
  const list = (items, render) => h("ul", { class: "index-list" }, items.map((item) => h("li", {}, render(item))));
  const rotateAll = `/screens/rotate?${keyQuery({ boards: boards.map((b) => b.board_id).join(","), every: "20" })}`;
  document.getElementById("boards").replaceChildren(
    list(boards, (b) => h("a", { href: screenHref("board", b.board_id) }, b.title)),
    boards.length > 1 ? h("p", {}, h("a", { href: rotateAll }, "All boards in rotation, 20 s each")) : null,
  );
  document.getElementById("teams").replaceChildren(
    list(teams, (t) => h("a", { href: screenHref("team", t.team_id) }, t.name)),
  );
  document.getElementById("reps").replaceChildren(
    list(
      [...reps].sort((a, b) => a.name.localeCompare(b.name)),
      (r) => h("a", { href: screenHref("rep", r.rep_id) }, r.name),
    ),
  );
  document.body.dataset.ready = "1";
}

main();
