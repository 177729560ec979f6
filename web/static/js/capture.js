// "Show a document": a still from the call's camera or another one (a document
// camera on the kiosk), previewed, then sent as a JPEG like any chosen file.
import { textElement } from "./i18n.js";

const JPEG_QUALITY = 0.9;

export class DocumentCapture {
  constructor({ root, callStream, send, onUrl }) {
    this.panel = root.querySelector("#capture-panel");
    this.video = root.querySelector("#capture-video");
    this.preview = root.querySelector("#capture-preview");
    this.cameraField = root.querySelector("#capture-camera-label");
    this.cameraSelect = root.querySelector("#capture-camera");
    this.take = root.querySelector('[data-testid="capture-take"]');
    this.retake = root.querySelector('[data-testid="capture-retake"]');
    this.sendButton = root.querySelector('[data-testid="capture-send"]');
    this.cancel = root.querySelector('[data-testid="capture-cancel"]');
    this.callStream = callStream; // () => the call's own camera stream
    this.send = send; // (File) => upload
    this.onUrl = onUrl ?? (() => {});
    this.ownStream = null;
    this.blob = null;
    this.url = null;
    this.take.addEventListener("click", () => this.snap());
    this.retake.addEventListener("click", () => this.showLive());
    this.cancel.addEventListener("click", () => this.close());
    this.sendButton.addEventListener("click", () => this.submit());
    this.cameraSelect.addEventListener("change", () => this.useCamera(this.cameraSelect.value));
  }

  async open() {
    this.panel.hidden = false;
    const cameras = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
    this.cameraSelect.replaceChildren();
    cameras.forEach((camera, index) => {
      const option = textElement("option", "capture.camera_n", { n: index + 1 });
      option.value = camera.deviceId;
      this.cameraSelect.append(option);
    });
    this.cameraField.hidden = cameras.length < 2;
    // A second camera is usually the document camera: prefer it.
    await this.useCamera(cameras.length > 1 ? cameras[cameras.length - 1].deviceId : null);
    if (cameras.length > 1) this.cameraSelect.value = cameras[cameras.length - 1].deviceId;
  }

  async useCamera(deviceId) {
    this.stopOwn();
    const callStream = this.callStream();
    const callTrack = callStream?.getVideoTracks()[0];
    if (!deviceId || callTrack?.getSettings().deviceId === deviceId) {
      this.video.srcObject = callStream ?? null;
    } else {
      try {
        this.ownStream = await navigator.mediaDevices.getUserMedia({ video: { deviceId: { exact: deviceId } } });
        this.video.srcObject = this.ownStream;
      } catch {
        this.video.srcObject = callStream ?? null;
      }
    }
    this.showLive();
  }

  showLive() {
    this.dropStill();
    this.video.hidden = false;
    this.preview.hidden = true;
    this.take.hidden = false;
    this.retake.hidden = true;
    this.sendButton.hidden = true;
  }

  async snap() {
    const width = this.video.videoWidth;
    const height = this.video.videoHeight;
    if (!width || !height) return;
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    canvas.getContext("2d").drawImage(this.video, 0, 0, width, height);
    this.blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
    if (!this.blob) return;
    this.url = URL.createObjectURL(this.blob);
    this.onUrl(this.url);
    this.preview.src = this.url;
    this.preview.hidden = false;
    this.video.hidden = true;
    this.take.hidden = true;
    this.retake.hidden = false;
    this.sendButton.hidden = false;
  }

  submit() {
    if (!this.blob) return;
    const stamp = new Date().toISOString().slice(0, 19).replace(/[-:T]/g, "");
    const file = new File([this.blob], `document-${stamp}.jpg`, { type: "image/jpeg" });
    this.send(file);
    this.close();
  }

  dropStill() {
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
    this.blob = null;
    this.preview.removeAttribute("src");
  }

  stopOwn() {
    for (const track of this.ownStream?.getTracks() ?? []) track.stop();
    this.ownStream = null;
  }

  close() {
    this.dropStill();
    this.stopOwn();
    this.video.srcObject = null;
    this.panel.hidden = true;
  }
}
