// The front window: find consultations by case number.
import { api } from "./api.js";
import { t } from "./i18n.js";
import { byTestId, startPage } from "./session.js";

async function search(caseNumber) {
  const list = byTestId("consultation-list");
  list.replaceChildren();
  let data;
  try {
    data = await api("GET", `/api/v1/consultations?case_number=${encodeURIComponent(caseNumber)}`);
  } catch {
    data = { consultations: [] };
  }
  if (data.consultations.length === 0) {
    const empty = document.createElement("li");
    empty.className = "muted";
    empty.textContent = t("clerk.none");
    list.append(empty);
    return;
  }
  for (const record of data.consultations) {
    const row = document.createElement("li");
    row.dataset.testid = "consultation-row";
    row.tabIndex = 0;
    const when = new Date(record.waiting_at * 1000).toLocaleString(document.documentElement.lang);
    row.textContent = `${record.case_number ?? ""} · ${record.department} · ${when} · ${t(
      `clerk.state.${record.state}`,
    )}`;
    row.addEventListener("click", () => {
      for (const other of list.children) other.classList.remove("selected");
      row.classList.add("selected");
    });
    list.append(row);
  }
}

startPage({
  roles: ["clerk", "admin"],
  onLogin: async () => {
    const input = byTestId("case-search");
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && input.value.trim()) search(input.value.trim());
    });
  },
});
