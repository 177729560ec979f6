// The call view shared by the kiosk and the expert desk: media, mute and camera
// toggles, the quality indicator, "show a document", files and chat (with what was
// said before a reload), and what to do when no picture or sound gets through.
import { api } from "./api.js";
import { DocumentCapture } from "./capture.js";
import { chatPanel } from "./chat.js";
import { FilePanel } from "./files.js";
import { setText } from "./i18n.js";
import { MediaLink } from "./peer.js";
import { closePreview } from "./preview.js";
import { QualityIndicator } from "./quality.js";
import { byTestId } from "./session.js";

// Neither picture nor sound from the other side for this long (from the start of the
// call, or since they last came): both sides are told, in words, what they can do.
const MEDIA_WAIT_MS = 15000;
const MEDIA_CHECK_MS = 1000;

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
    this.mySide = mySide;
    this.trouble = document.getElementById("media-trouble");
    this.watched = null;
    this.watchTimer = null;
    this.framesDecoded = 0;
    byTestId("media-use-chat").addEventListener("click", () => {
      this.troubleDismissed = true;
      this.showTrouble(false);
      const input = byTestId("chat-input");
      input.scrollIntoView({ block: "nearest" });
      input.focus();
    });
    // The page's own end button: it asks first, as always.
    byTestId("media-end-call").addEventListener("click", () => byTestId("end-call").click());
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
    this.framesDecoded = figures.framesDecoded;
    this.placeholder.hidden = figures.framesDecoded > 0 || !this.trouble.hidden;
    if (figures.progressed) {
      this.lastMedia = Date.now();
      this.showTrouble(false);
    }
  }

  // From the call's start, once per call: the clock that says media is not coming.
  watchMedia(consultationId) {
    if (this.watched === consultationId) return;
    this.watched = consultationId;
    this.lastMedia = Date.now();
    this.troubleDismissed = false;
    clearInterval(this.watchTimer);
    this.watchTimer = setInterval(() => {
      if (this.media.active && !this.troubleDismissed && Date.now() - this.lastMedia >= MEDIA_WAIT_MS) {
        this.showTrouble(true);
      }
    }, MEDIA_CHECK_MS);
  }

  showTrouble(on) {
    if (on && this.trouble.hidden) setText(this.trouble.querySelector("[data-role=text]"), `media.trouble.${this.mySide}`);
    this.trouble.hidden = !on;
    // "Connecting the picture…" no longer says what is happening under the notice.
    this.placeholder.hidden = on || this.framesDecoded > 0;
  }

  async start(view, stream) {
    if (stream !== undefined && !this.media.stream) this.media.useStream(stream);
    this.watchMedia(view.consultation_id);
    if (view.media) await this.media.start(view.media);
    this.micButton.disabled = !this.media.hasTrack("audio");
    this.cameraButton.disabled = !this.media.hasTrack("video");
    this.files.load();
    this.loadChat();
  }

  // What was said before this page (re)loaded: the server keeps the call's chat.
  async loadChat() {
    const id = this.consultation();
    if (!id) return;
    try {
      const data = await api("GET", `/api/v1/consultations/${id}/chat`);
      for (const message of data.messages) this.chat.add(message);
    } catch {
      // Not in the call (any more): nothing to show.
    }
  }

  reconnectMedia() {
    this.media.reconnect();
  }

  stop() {
    this.media.stop();
    this.capture.close();
    closePreview();
    clearInterval(this.watchTimer);
    this.watchTimer = null;
    this.watched = null;
    this.framesDecoded = 0;
    this.showTrouble(false);
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
