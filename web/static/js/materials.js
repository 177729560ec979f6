// The after-call form's "materials still required" (一次性告知): the department's
// checklist (kept by the admin) as boxes to tick, and a field for anything else,
// one item per line. What is chosen is printed on the citizen's slip.
import { setText } from "./i18n.js";

const MAX_ITEMS = 30;

export function renderMaterials(fieldset, checklist, chosen = []) {
  const list = fieldset.querySelector(".materials-list");
  list.replaceChildren();
  for (const item of checklist) {
    const label = document.createElement("label");
    label.className = "material";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = item;
    box.dataset.testid = "material";
    box.checked = chosen.includes(item);
    // The admin's words, as written (in whichever languages they wrote them).
    const text = document.createElement("span");
    text.translate = false;
    text.textContent = item;
    label.append(box, " ", text);
    list.append(label);
  }
  const other = fieldset.querySelector("textarea");
  other.value = chosen.filter((item) => !checklist.includes(item)).join("\n");
  const empty = fieldset.querySelector(".materials-empty");
  empty.hidden = checklist.length > 0;
  if (!empty.dataset.i18n) setText(empty, "expert.materials_none");
}

export function chosenMaterials(fieldset) {
  const ticked = [...fieldset.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value);
  const written = fieldset
    .querySelector("textarea")
    .value.split("\n")
    .map((line) => line.trim().slice(0, 200))
    .filter(Boolean);
  return [...new Set([...ticked, ...written])].slice(0, MAX_ITEMS);
}
