// The call view shared by the kiosk and the expert desk: media, mute and camera
// toggles, the quality indicator, "show a document", files and chat (with what was
// said before a reload), and what to do when no picture or sound gets through; the
// pictures of everyone else in the call (tiles.js) and a shared screen.
import { api } from "./api.js";
import { DocumentCapture } from "./capture.js";
import { chatPanel } from "./chat.js";
import { FilePanel } from "./files.js";
import { setText } from "./i18n.js";
import { MediaLink } from "./peer.js";
import { closePreview } from "./preview.js";
import { QualityIndicator } from "./quality.js";
import { byTestId } from "./session.js";
import { TileBoard } from "./tiles.js";

// Neither picture nor sound from the other side for this long (from the start of the
// call, or since they last came): both sides are told, in words, what they can do.
const MEDIA_WAIT_MS = 15000;
const MEDIA_CHECK_MS = 1000;

export class CallView {
  // `latestDocument`: show the newest document from the other side large (the
  // expert's desk; the kiosk lists documents only, its screen goes to the face).
  // `departmentName`: a department's code -> its name ({zh, en}); `onScreenEnded`:
  // this side's screen sharing stopped from the browser's own control.
  constructor({ mySide, send, consultation, download = true, latestDocument = false, departmentName, myName = null, onScreenEnded = () => {}, rowActions = null, onView = null }) {
    this.consultation = consultation; // () => the open consultation's id
    this.quality = new QualityIndicator(byTestId("connection-quality"));
    this.placeholder = document.getElementById("remote-placeholder");
    this.transferNote = document.getElementById("transfer-note");
    const videos = document.querySelector(".videos");
    this.tiles = new TileBoard({ root: videos, mySide, list: byTestId("participant-list"), departmentName });
    this.media = new MediaLink({
      localVideo: byTestId("local-video"),
      remoteVideos: this.tiles.videos,
      screenVideo: this.tiles.screenVideo,
      onStats: (figures) => this.onStats(figures),
      onScreenEnded,
    });
    this.loaded = null; // the consultation whose files and chat were loaded
    // Shown on every page while the call is recorded; either side may stop it.
    this.recording = byTestId("recording-indicator");
    // A supervisor listening now (the staff's views say so, unless the deployment
    // hides it); the kiosk instead always shows that calls may be listened to.
    this.listened = byTestId("being-listened");
    this.monitorNotice = byTestId("monitor-notice");
    // The answer is this page's new view of the call (``onView``: the page applies it).
    byTestId("record-stop").addEventListener("click", async () => {
      const id = consultation();
      if (!id) return;
      const view = await send("stop_recording", { consultation_id: id }).catch(() => null);
      if (!view) return;
      if (onView) onView(view);
      else this.recording.hidden = view.recording !== "on";
    });
    this.you = null; // this page's position in the call
    this.files = new FilePanel({
      input: byTestId("file-input"),
      list: byTestId("file-list"),
      consultation,
      download,
      latest: latestDocument ? byTestId("latest-document") : null,
      mySide,
      rowActions,
      myPosition: () => this.you,
    });
    this.chat = chatPanel({
      list: document.getElementById("chat-list"),
      input: byTestId("chat-input"),
      button: byTestId("chat-send"),
      mySide,
      send: (text) => send("send_chat", { consultation_id: consultation(), text }),
      myPosition: () => this.you,
      myName,
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
    // Nobody else in the call (a transfer waits): nothing is coming, which says
    // nothing of the connection.
    if (this.tiles.present > 0) this.quality.update(figures);
    else this.quality.reset();
    this.framesDecoded = figures.framesDecoded;
    this.placeholder.hidden = figures.framesDecoded > 0 || !this.trouble.hidden || !this.transferNote.hidden;
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
      // Only while someone else is in the call: alone (a transfer waits) nothing comes.
      if (this.tiles.present === 0) this.lastMedia = Date.now();
      else if (this.media.active && !this.troubleDismissed && Date.now() - this.lastMedia >= MEDIA_WAIT_MS) {
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

  // A view of the call (on every change: joins, leaves, a screen, invitations): the
  // tiles follow it; media starts once; files and chat load once per call.
  async start(view, stream) {
    if (stream !== undefined && !this.media.stream) this.media.useStream(stream);
    this.watchMedia(view.consultation_id);
    this.you = Number.isInteger(view.you) ? view.you : null;
    this.recording.hidden = view.recording !== "on";
    this.listened.hidden = !view.listened;
    this.monitorNotice.hidden = this.you !== 0;
    this.tiles.update(view);
    const load = this.loaded !== view.consultation_id;
    this.loaded = view.consultation_id;
    if (view.media) await this.media.start(view.media);
    this.micButton.disabled = !this.media.hasTrack("audio");
    this.cameraButton.disabled = !this.media.hasTrack("video");
    if (load) {
      this.files.load();
      this.loadChat();
    }
  }

  // Said over the pictures while the call waits for someone (a transfer): the key
  // and its values, or null for nothing.
  showNote(key, vars) {
    if (key) {
      setText(this.transferNote, key, vars);
      this.showTrouble(false);
    }
    this.transferNote.hidden = !key;
    this.placeholder.hidden = Boolean(key) || this.framesDecoded > 0 || !this.trouble.hidden;
  }

  // This side's screen: a track of getDisplayMedia, or null to stop.
  async shareScreen(track) {
    await this.media.shareScreen(track);
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

  // After the page's connection came back: media if it was lost, and what was said
  // and sent meanwhile.
  reconnectMedia() {
    this.media.reconnect();
    if (this.loaded) {
      this.files.load();
      this.loadChat();
    }
  }

  stop() {
    this.media.stop();
    this.capture.close();
    closePreview();
    clearInterval(this.watchTimer);
    this.watchTimer = null;
    this.watched = null;
    this.loaded = null;
    this.framesDecoded = 0;
    this.showTrouble(false);
    this.showNote(null);
    this.tiles.clear();
    this.recording.hidden = true;
    this.listened.hidden = true;
    this.monitorNotice.hidden = true;
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
