// The call view shared by the kiosk and the expert desk: media, mute and camera
// toggles, the quality indicator, "show a document", files and chat.
import { DocumentCapture } from "./capture.js";
import { chatPanel } from "./chat.js";
import { FilePanel } from "./files.js";
import { setText } from "./i18n.js";
import { MediaLink } from "./peer.js";
import { closePreview } from "./preview.js";
import { QualityIndicator } from "./quality.js";
import { byTestId } from "./session.js";

export class CallView {
  // `latestDocument`: show the newest document from the other side large (the
  // expert's desk; the kiosk lists documents only, its screen goes to the face).
  constructor({ mySide, send, consultation, download = true, latestDocument = false }) {
    this.consultation = consultation; // () => the open consultation's id
    this.quality = new QualityIndicator(byTestId("connection-quality"));
    this.placeholder = document.getElementById("remote-placeholder");
    this.media = new MediaLink({
      localVideo: byTestId("local-video"),
      remoteVideo: byTestId("remote-video"),
      onStats: (figures) => this.onStats(figures),
    });
    this.files = new FilePanel({
      input: byTestId("file-input"),
      list: byTestId("file-list"),
      consultation,
      download,
      latest: latestDocument ? byTestId("latest-document") : null,
      mySide,
    });
    this.chat = chatPanel({
      list: document.getElementById("chat-list"),
      input: byTestId("chat-input"),
      button: byTestId("chat-send"),
      mySide,
      send: (text) => send("send_chat", { consultation_id: consultation(), text }),
    });
    this.capture = new DocumentCapture({
      root: document,
      callStream: () => this.media.stream,
      send: (file) => this.files.upload(file),
    });
    this.micButton = byTestId("toggle-mic");
    this.cameraButton = byTestId("toggle-camera");
    this.micButton.addEventListener("click", () => this.toggle("audio", this.micButton));
    this.cameraButton.addEventListener("click", () => this.toggle("video", this.cameraButton));
    byTestId("show-document").addEventListener("click", () => this.capture.open());
  }

  toggle(kind, button) {
    const off = button.getAttribute("aria-pressed") !== "true";
    this.media.setEnabled(kind, !off);
    button.setAttribute("aria-pressed", off ? "true" : "false");
    if (kind === "audio") setText(button, off ? "call.unmute" : "call.mute");
    else setText(button, off ? "call.camera_on" : "call.camera_off");
  }

  resetToggles() {
    for (const [button, key] of [
      [this.micButton, "call.mute"],
      [this.cameraButton, "call.camera_off"],
    ]) {
      button.setAttribute("aria-pressed", "false");
      setText(button, key);
    }
  }

  onStats(figures) {
    this.quality.update(figures);
    this.placeholder.hidden = figures.framesDecoded > 0;
  }

  async start(view, stream) {
    if (stream !== undefined && !this.media.stream) this.media.useStream(stream);
    if (view.media) await this.media.start(view.media);
    this.micButton.disabled = !this.media.hasTrack("audio");
    this.cameraButton.disabled = !this.media.hasTrack("video");
    this.files.load();
  }

  reconnectMedia() {
    this.media.reconnect();
  }

  stop() {
    this.media.stop();
    this.capture.close();
    closePreview();
  }

  // Nothing of the last call left on screen.
  clear() {
    this.stop();
    this.chat.clear();
    this.files.clear();
    this.resetToggles();
    this.quality.reset();
    this.placeholder.hidden = false;
  }
}
