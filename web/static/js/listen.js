// A supervisor's leg (issue 23): the seven m-lines of the contract (media/slots.py).
// Listening, every one is receive-only, so that the relay gives this page each
// participant in its slot and takes nothing from it (an offer that would send is
// refused); stepped in, slot 0 also sends the supervisor's camera and microphone
// (`stream`). Each slot's picture and sound play in that slot's <video>.
import { gatheringComplete } from "./peer.js";
import { SLOTS } from "./slots.js";

export class ListenLink {
  // `videos`: one <video> per slot; `screenVideo`: the shared screen; `onState`:
  // the connection's state ("connecting", "connected", "failed", ...).
  constructor({ videos, screenVideo, stream = null, onState = () => {} }) {
    this.videos = videos;
    this.stream = stream;
    this.screenVideo = screenVideo;
    this.onState = onState;
    this.pc = null;
  }

  // `listen`: the answer of POST /api/v1/supervision/{id}/listen (or /join).
  async connect(listen) {
    this.disconnect();
    const iceServers = listen.ice.ice_servers.map((s) => ({ urls: s.urls, username: s.username ?? undefined, credential: s.credential ?? undefined }));
    const pc = new RTCPeerConnection({ iceServers });
    this.pc = pc;
    for (let slot = 0; slot < SLOTS; slot += 1) {
      const own = (kind) => (slot === 0 ? this.stream?.getTracks().find((t) => t.kind === kind) : null);
      const transceiver = (kind) => {
        const track = own(kind);
        return track
          ? pc.addTransceiver(track, { direction: "sendrecv", streams: [this.stream] })
          : pc.addTransceiver(kind, { direction: "recvonly" });
      };
      const audio = transceiver("audio");
      const video = transceiver("video");
      const element = this.videos[slot];
      if (element) element.srcObject = new MediaStream([audio.receiver.track, video.receiver.track]);
    }
    const screen = pc.addTransceiver("video", { direction: "recvonly" });
    if (this.screenVideo) this.screenVideo.srcObject = new MediaStream([screen.receiver.track]);
    pc.onconnectionstatechange = () => {
      if (this.pc === pc) this.onState(pc.connectionState);
    };
    this.onState("connecting");
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc);
    if (this.pc !== pc) return false;
    const response = await fetch(listen.media_url, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${listen.media_token}` },
      body: pc.localDescription.sdp,
    });
    if (response.status !== 201 || this.pc !== pc) {
      this.onState("failed");
      return false;
    }
    await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
    return true;
  }

  // The connection only (a new one may follow with the same camera).
  disconnect() {
    if (this.pc) this.pc.close();
    this.pc = null;
  }

  // The connection, the camera and microphone, and the pictures.
  close() {
    this.disconnect();
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    for (const element of [...this.videos, this.screenVideo]) {
      if (element) element.srcObject = null;
    }
  }
}
