// The index page: links to the four pages, no login needed.
import { initLanguage } from "./i18n.js";

initLanguage(document.querySelector('[data-testid="lang-toggle"]'));
document.getElementById("login-view").hidden = true;
document.getElementById("app-view").hidden = false;
document.body.dataset.ready = "true";
