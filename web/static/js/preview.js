// A document opened large in a dialog, with Print. Printing prints only the
// dialog's document (see @media print in app.css).
//
// Where nothing may be saved (the kiosk calls drawInPage()), the page draws every
// document itself onto canvases: images, and PDF pages rendered by the vendored
// pdf.js (web/static/vendor/pdfjs). No frame, no browser PDF viewer with its
// download button, no <img> or link a browser offers to save, page turns as big
// as every kiosk button. Elsewhere (the staff's desks) an image is an <img> and a
// PDF opens in the browser's viewer in a frame, with its zoom and search.
import { setText, textElement } from "./i18n.js";

const PDFJS = "/static/vendor/pdfjs/";
const PRINT_PAGES_MAX = 50;
// Rendered at up to this many canvas pixels: a huge page at a high zoom would
// otherwise ask the GPU for more than it has.
const CANVAS_PIXELS_MAX = 16 * 1024 * 1024;

let frame = null;
let inPage = false;
let pdfjs = null;
// The document on screen: drawing a page checks it is still the one asked for.
let shown = null;

export function drawInPage() {
  inPage = true;
}

async function loadPdfjs() {
  if (!pdfjs) {
    pdfjs = await import("../vendor/pdfjs/pdf.min.mjs");
    pdfjs.GlobalWorkerOptions.workerSrc = `${PDFJS}pdf.worker.min.mjs`;
  }
  return pdfjs;
}

function dialogParts() {
  const dialog = document.getElementById("preview-dialog");
  return {
    dialog,
    body: dialog.querySelector("[data-role=body]"),
    title: dialog.querySelector("[data-role=title]"),
    buttons: dialog.querySelector(".dialog-buttons"),
    print: dialog.querySelector('[data-testid="preview-print"]'),
    close: dialog.querySelector('[data-testid="preview-close"]'),
  };
}

function isPdf(file) {
  return file.media_type === "application/pdf";
}

function isImage(file) {
  return file.media_type.startsWith("image/");
}

// Draw an image onto a canvas no wider than `width` CSS px (a still: nothing to save).
async function drawImage(canvas, url, width, maxHeight) {
  const image = new Image();
  image.src = url;
  await image.decode();
  const scale = Math.min(1, width / image.naturalWidth, maxHeight / image.naturalHeight);
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(image.naturalWidth * scale * ratio));
  canvas.height = Math.max(1, Math.round(image.naturalHeight * scale * ratio));
  canvas.style.width = `${Math.round(image.naturalWidth * scale)}px`;
  canvas.getContext("2d").drawImage(image, 0, 0, canvas.width, canvas.height);
  image.removeAttribute("src");
}

// A file list's small picture of an image: an <img> on the desks, a canvas where
// nothing may be saved.
export function thumbnail(view, url, onOpen) {
  let element;
  if (inPage) {
    element = document.createElement("canvas");
    element.setAttribute("role", "img");
    element.setAttribute("aria-label", view.name);
    drawImage(element, url, 160, 120).catch(() => element.remove());
  } else {
    element = document.createElement("img");
    element.alt = view.name;
    element.src = url;
  }
  element.className = "preview";
  element.addEventListener("click", onOpen);
  return element;
}

// ---- the kiosk's own PDF pages ---------------------------------------------

function pageButton(key, testid, onClick) {
  const button = textElement("button", key, null, "secondary page-turn");
  button.type = "button";
  button.dataset.testid = testid;
  button.dataset.previewControl = "";
  button.addEventListener("click", onClick);
  return button;
}

async function drawPdfPage(state) {
  const { doc, canvas, number } = state;
  const page = await doc.getPage(number);
  if (shown !== state) return;
  const base = page.getViewport({ scale: 1 });
  // Fit the dialog's width (about an A4 page's width on a portrait kiosk: its
  // body text is then as large as on paper); "larger" doubles it.
  const fit = Math.max(200, state.body.clientWidth - 8) / base.width;
  const ratio = window.devicePixelRatio || 1;
  let scale = fit * state.zoom * ratio;
  const pixels = base.width * base.height * scale * scale;
  if (pixels > CANVAS_PIXELS_MAX) scale *= Math.sqrt(CANVAS_PIXELS_MAX / pixels);
  const viewport = page.getViewport({ scale });
  state.task?.cancel();
  const target = document.createElement("canvas");
  target.width = Math.floor(viewport.width);
  target.height = Math.floor(viewport.height);
  state.task = page.render({ canvas: target, viewport });
  try {
    await state.task.promise;
  } catch {
    return; // cancelled by a newer page turn
  }
  if (shown !== state) return;
  canvas.width = target.width;
  canvas.height = target.height;
  // Shown at its fitted size whatever the resolution it was drawn at.
  canvas.style.width = `${Math.floor(base.width * fit * state.zoom)}px`;
  canvas.getContext("2d").drawImage(target, 0, 0);
  target.width = 0;
  canvas.dataset.page = String(number);
  canvas.setAttribute("aria-label", state.name);
  state.body.scrollTo(0, 0);
  setText(state.label, "preview.page", { n: number, total: doc.numPages });
  state.prev.disabled = number <= 1;
  state.next.disabled = number >= doc.numPages;
  state.body.dataset.rendered = "true";
}

async function openPdfInPage(file, url, parts) {
  const canvas = document.createElement("canvas");
  canvas.className = "pdf-page";
  canvas.dataset.testid = "preview-canvas";
  canvas.setAttribute("role", "img");
  const label = textElement("p", "preview.loading", null, "page-label");
  label.dataset.testid = "preview-page";
  label.setAttribute("role", "status");
  const state = { doc: null, canvas, number: 1, zoom: 1, body: parts.body, label, name: file.name, task: null };
  state.prev = pageButton("preview.prev", "preview-prev", () => turn(state, -1));
  state.next = pageButton("preview.next", "preview-next", () => turn(state, 1));
  state.zoomButton = pageButton("preview.zoom_in", "preview-zoom", () => {
    state.zoom = state.zoom === 1 ? 2 : 1;
    state.zoomButton.setAttribute("aria-pressed", state.zoom === 1 ? "false" : "true");
    drawPdfPage(state);
  });
  state.zoomButton.setAttribute("aria-pressed", "false");
  state.prev.disabled = true;
  state.next.disabled = true;
  parts.body.append(canvas);
  parts.buttons.prepend(state.prev, label, state.next, state.zoomButton);
  shown = state;
  try {
    const lib = await loadPdfjs();
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const data = new Uint8Array(await response.arrayBuffer());
    if (shown !== state) return;
    state.loading = lib.getDocument({
      data,
      cMapUrl: `${PDFJS}cmaps/`,
      cMapPacked: true,
      standardFontDataUrl: `${PDFJS}standard_fonts/`,
      wasmUrl: `${PDFJS}wasm/`,
      // The pages' policy allows no WebAssembly: pdf.js uses its JavaScript decoders.
      useWasm: false,
      enableXfa: false,
      isEvalSupported: false,
      stopAtErrors: false,
    });
    state.doc = await state.loading.promise;
    if (shown !== state) return;
    await drawPdfPage(state);
  } catch {
    if (shown !== state) return;
    canvas.remove();
    setText(label, "preview.failed");
    parts.body.dataset.rendered = "failed";
  }
}

function turn(state, step) {
  if (!state.doc) return;
  const number = Math.min(state.doc.numPages, Math.max(1, state.number + step));
  if (number === state.number) return;
  state.number = number;
  drawPdfPage(state);
}

// Printing a PDF drawn in the page: every page (up to PRINT_PAGES_MAX) rendered
// for paper into a container only print media shows, removed after printing.
async function printPdf(state) {
  if (!state?.doc) return;
  const sheets = document.createElement("div");
  sheets.className = "print-pages";
  const pages = Math.min(state.doc.numPages, PRINT_PAGES_MAX);
  for (let n = 1; n <= pages; n += 1) {
    const page = await state.doc.getPage(n);
    const viewport = page.getViewport({ scale: 2 });
    const canvas = document.createElement("canvas");
    canvas.width = Math.floor(viewport.width);
    canvas.height = Math.floor(viewport.height);
    await page.render({ canvas, viewport, intent: "print" }).promise;
    sheets.append(canvas);
  }
  if (shown !== state) return;
  state.body.append(sheets);
  document.body.classList.add("printing-pages");
  window.addEventListener(
    "afterprint",
    () => {
      document.body.classList.remove("printing-pages");
      for (const canvas of sheets.querySelectorAll("canvas")) canvas.width = 0;
      sheets.remove();
    },
    { once: true },
  );
  window.print();
}

async function openImageInPage(file, url, parts) {
  const canvas = document.createElement("canvas");
  canvas.className = "image-page";
  canvas.dataset.testid = "preview-canvas";
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", file.name);
  parts.body.append(canvas);
  const state = { canvas, body: parts.body };
  shown = state;
  try {
    await drawImage(canvas, url, Math.max(200, parts.body.clientWidth - 8), window.innerHeight * 0.7);
    if (shown === state) parts.body.dataset.rendered = "true";
  } catch {
    if (shown !== state) return;
    canvas.remove();
    parts.body.append(textElement("p", "preview.failed"));
    parts.body.dataset.rendered = "failed";
  }
}

// ---- the dialog -------------------------------------------------------------

export function openPreview(file, url) {
  closePreview();
  const parts = dialogParts();
  parts.title.textContent = file.name;
  delete parts.body.dataset.rendered;
  if (inPage) {
    if (isPdf(file)) openPdfInPage(file, url, parts);
    else if (isImage(file)) openImageInPage(file, url, parts);
    else parts.body.append(textElement("p", "files.no_preview_here", null, "muted"));
    parts.print.hidden = !isPdf(file) && !isImage(file);
    parts.print.onclick = () => (isPdf(file) ? printPdf(shown) : window.print());
  } else if (isPdf(file)) {
    frame = document.createElement("iframe");
    frame.src = url;
    frame.title = file.name;
    parts.body.append(frame);
    parts.print.onclick = () => frame?.contentWindow?.print();
  } else {
    const image = document.createElement("img");
    image.src = url;
    image.alt = file.name;
    parts.body.append(image);
    parts.print.onclick = () => window.print();
  }
  parts.close.onclick = () => closePreview();
  parts.dialog.onclose = () => closePreview();
  document.body.classList.add("previewing");
  parts.dialog.showModal();
}

export function closePreview() {
  const parts = dialogParts();
  const state = shown;
  shown = null;
  // The loading task owns the document and its worker: destroying it frees both.
  state?.task?.cancel();
  state?.loading?.destroy().catch(() => {});
  // Canvases emptied before they go: nothing of the document stays in memory.
  for (const canvas of parts.body.querySelectorAll("canvas")) canvas.width = 0;
  parts.body.replaceChildren();
  delete parts.body.dataset.rendered;
  for (const control of parts.buttons.querySelectorAll("[data-preview-control], .page-label")) control.remove();
  parts.title.textContent = "";
  parts.print.hidden = false;
  document.body.classList.remove("previewing");
  frame = null;
  parts.dialog.onclose = null;
  if (parts.dialog.open) parts.dialog.close();
}
