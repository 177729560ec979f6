// The kiosk's "larger text" switch: a class on <html> that raises the root font
// size, so that text and the controls around it grow together (app.css). It is
// kept nowhere: the privacy wipe puts it back, and the page loaded anew after
// the wipe starts with normal text.
const LARGER = "text-larger";
let toggle = null;

function render(on) {
  document.documentElement.classList.toggle(LARGER, on);
  toggle?.setAttribute("aria-pressed", on ? "true" : "false");
}

export function initTextSize(button) {
  toggle = button;
  render(false);
  button?.addEventListener("click", () => render(!document.documentElement.classList.contains(LARGER)));
}

export function resetTextSize() {
  render(false);
}
