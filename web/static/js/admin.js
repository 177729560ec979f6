// Administration: departments and accounts.
import { api } from "./api.js";
import { t } from "./i18n.js";
import { byTestId, startPage } from "./session.js";

function row(text, disabled) {
  const item = document.createElement("li");
  item.textContent = disabled ? `${text} (${t("admin.disabled")})` : text;
  return item;
}

startPage({
  roles: ["admin"],
  onLogin: async () => {
    const [departments, accounts] = await Promise.all([
      api("GET", "/api/v1/departments"),
      api("GET", "/api/v1/accounts"),
    ]);
    byTestId("department-list").replaceChildren(
      ...departments.departments.map((d) => row(`${d.code} · ${d.name_zh} · ${d.name_en}`, d.disabled)),
    );
    byTestId("account-list").replaceChildren(
      ...accounts.accounts.map((a) =>
        row(`${a.username} · ${t(`role.${a.role}`)}${a.department ? ` · ${a.department}` : ""}`, a.disabled),
      ),
    );
  },
});
