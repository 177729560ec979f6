// The login form every page shares, and the switch between login and the page itself.
import { api } from "./api.js";
import { applyTranslations, initLanguage, setText, t } from "./i18n.js";

function byTestId(id) {
  return document.querySelector(`[data-testid="${id}"]`);
}

export { byTestId };

// How long a locked-out login waits, as a person says it: whole minutes from a
// minute on (rounded up), seconds below.
export function waitText(seconds) {
  if (seconds >= 60) return { key: "time.minutes", vars: { m: Math.ceil(seconds / 60) } };
  return { key: "time.seconds", vars: { s: Math.max(1, Math.ceil(seconds)) } };
}

export async function startPage({ roles, onLogin }) {
  initLanguage(byTestId("lang-toggle"));
  const loginView = document.getElementById("login-view");
  const appView = document.getElementById("app-view");
  const form = document.getElementById("login-form");
  const message = document.getElementById("login-message");
  const logout = byTestId("logout");

  async function enter(me) {
    if (!roles.includes(me.role)) {
      message.textContent = t("login.wrong_role");
      await api("POST", "/api/v1/logout").catch(() => {});
      return;
    }
    loginView.hidden = true;
    appView.hidden = false;
    const who = document.getElementById("who");
    if (who) who.textContent = me.display_name;
    await onLogin(me);
    applyTranslations();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    delete message.dataset.i18n;
    try {
      const me = await api("POST", "/api/v1/login", {
        username: byTestId("login-username").value.trim(),
        password: byTestId("login-password").value,
      });
      byTestId("login-password").value = "";
      await enter(me);
    } catch (err) {
      if (err.status === 429 && err.retryAfter !== null) {
        setText(message, "login.throttled_for", { wait: waitText(err.retryAfter) });
      } else {
        setText(message, err.status === 429 ? "login.throttled" : err.status === 401 ? "login.failed" : "error.generic");
      }
    }
  });
  logout?.addEventListener("click", async () => {
    await api("POST", "/api/v1/logout").catch(() => {});
    window.location.reload();
  });

  try {
    const me = await api("GET", "/api/v1/me");
    await enter(me);
  } catch {
    loginView.hidden = false;
    appView.hidden = true;
  }
  document.body.dataset.ready = "true";
}
