// A modal confirmation whose confirming button is data-testid="confirm-yes".
import { t } from "./i18n.js";

export function confirmDialog(messageKey) {
  const dialog = document.getElementById("confirm-dialog");
  dialog.querySelector("[data-role=message]").textContent = t(messageKey);
  return new Promise((resolve) => {
    const yes = dialog.querySelector('[data-testid="confirm-yes"]');
    const no = dialog.querySelector('[data-testid="confirm-no"]');
    const done = (value) => {
      yes.removeEventListener("click", onYes);
      no.removeEventListener("click", onNo);
      dialog.close();
      resolve(value);
    };
    const onYes = () => done(true);
    const onNo = () => done(false);
    yes.addEventListener("click", onYes);
    no.addEventListener("click", onNo);
    dialog.showModal();
  });
}
