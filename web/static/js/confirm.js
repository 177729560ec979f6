// A modal question whose confirming button is data-testid="confirm-yes"; with
// `field` it asks for a value too (data-testid="confirm-input") and resolves to it.
// `yesKey` / `noKey` name the two buttons where "OK" / "Cancel" would not say enough.
import { setText, t } from "./i18n.js";

export function confirmDialog(messageKey, { vars, field, validate, yesKey, noKey } = {}) {
  const dialog = document.getElementById("confirm-dialog");
  setText(dialog.querySelector("[data-role=message]"), messageKey, vars);
  setText(dialog.querySelector('[data-testid="confirm-yes"]'), yesKey ?? "confirm.yes");
  setText(dialog.querySelector('[data-testid="confirm-no"]'), noKey ?? "confirm.no");
  const fieldBox = dialog.querySelector("[data-role=field]");
  const input = dialog.querySelector("[data-role=input]");
  const error = dialog.querySelector("[data-role=error]");
  error.textContent = "";
  fieldBox.hidden = !field;
  input.value = "";
  if (field) {
    setText(dialog.querySelector("[data-role=field-label]"), field.labelKey);
    input.type = field.type ?? "text";
  }
  return new Promise((resolve) => {
    const yes = dialog.querySelector('[data-testid="confirm-yes"]');
    const no = dialog.querySelector('[data-testid="confirm-no"]');
    const done = (value) => {
      yes.removeEventListener("click", onYes);
      no.removeEventListener("click", onNo);
      dialog.removeEventListener("cancel", onNo);
      input.value = "";
      dialog.close();
      resolve(value);
    };
    const onYes = () => {
      if (!field) return done(true);
      const problem = validate?.(input.value);
      if (problem) {
        error.textContent = t(problem);
        return undefined;
      }
      return done(input.value);
    };
    const onNo = () => done(field ? null : false);
    yes.addEventListener("click", onYes);
    no.addEventListener("click", onNo);
    dialog.addEventListener("cancel", onNo);
    dialog.showModal();
    if (field) input.focus();
  });
}
