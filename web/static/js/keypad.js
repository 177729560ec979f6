// The kiosk's own keys. A kiosk has no keyboard and needs no on-screen keyboard of
// the system (docs/OPERATIONS.md): every field a citizen types into on it brings a
// keypad, and its input has inputmode="none" so that a touch keyboard, where the
// system has one, does not cover the screen. A keyboard or an ID-card reader that
// types like one still works: the fields stay normal inputs.
//
// One keypad is open at a time: opening one closes the one open before.
import { setText } from "./i18n.js";

let openNow = null;

// Draws the keys into `pad` (an element of class "keypad"). `pages`: the keys of
// each page, as [characters, i18n key of the switch that leads to the next page];
// one page needs no switch. The keys type into `target()`, up to its maxLength,
// each sending an "input" event as typing does. `prefix` names the keys' test ids
// (`${prefix}-A`, `-back`, `-clear`, `-switch`, `-done`); `done` false leaves the
// done key out (a form with its own button). `onOpen`/`onClose`: the page's layout.
export function keypad(pad, { pages, target, prefix = "key", done = true, onOpen = () => {}, onClose = () => {} }) {
  let page = 0;
  const control = {
    open() {
      if (openNow && openNow !== control) openNow.close();
      openNow = control;
      pad.hidden = false;
      onOpen();
    },
    close() {
      if (openNow === control) openNow = null;
      pad.hidden = true;
      onClose();
    },
  };
  const key = (label, action, extra = {}) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `key ${extra.className ?? ""}`;
    if (extra.i18n) setText(button, extra.i18n);
    else button.textContent = label;
    button.dataset.testid = `${prefix}-${extra.name ?? label}`;
    button.addEventListener("click", () => {
      action();
      target().dispatchEvent(new Event("input"));
    });
    return button;
  };
  const type = (c) => () => {
    const input = target();
    if (input.maxLength < 0 || input.value.length < input.maxLength) input.value += c;
  };
  const draw = () => {
    const [characters, switchKey] = pages[page];
    const keys = characters.map((c) => key(c, type(c)));
    keys.push(
      key("", () => (target().value = target().value.slice(0, -1)), { i18n: "keypad.back", name: "back", className: "wide" }),
      key("", () => (target().value = ""), { i18n: "keypad.clear", name: "clear", className: "wide" }),
    );
    if (pages.length > 1) {
      keys.push(
        key(
          "",
          () => {
            page = (page + 1) % pages.length;
            draw();
          },
          { i18n: switchKey, name: "switch", className: "wide" },
        ),
      );
    }
    if (done) keys.push(key("", () => control.close(), { i18n: "keypad.done", name: "done", className: "wide" }));
    pad.replaceChildren(...keys);
  };
  draw();
  return control;
}

// Closes whichever keypad is open (a department chosen, the screen changing).
export function closeKeypad() {
  openNow?.close();
}
