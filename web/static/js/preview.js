// A document opened large in a dialog (image, or PDF in a frame), with Print.
// Printing an image prints only the dialog's picture (see @media print in app.css).

let frame = null;

export function openPreview(file, url) {
  const dialog = document.getElementById("preview-dialog");
  const body = dialog.querySelector("[data-role=body]");
  dialog.querySelector("[data-role=title]").textContent = file.name;
  body.replaceChildren();
  frame = null;
  if (file.media_type === "application/pdf") {
    frame = document.createElement("iframe");
    frame.src = url;
    frame.title = file.name;
    body.append(frame);
  } else {
    const image = document.createElement("img");
    image.src = url;
    image.alt = file.name;
    body.append(image);
  }
  const print = dialog.querySelector('[data-testid="preview-print"]');
  const close = dialog.querySelector('[data-testid="preview-close"]');
  print.onclick = () => {
    if (frame?.contentWindow) frame.contentWindow.print();
    else window.print();
  };
  close.onclick = () => closePreview();
  document.body.classList.add("previewing");
  dialog.showModal();
}

export function closePreview() {
  const dialog = document.getElementById("preview-dialog");
  dialog.querySelector("[data-role=body]").replaceChildren();
  dialog.querySelector("[data-role=title]").textContent = "";
  document.body.classList.remove("previewing");
  frame = null;
  if (dialog.open) dialog.close();
}
