// The call's media: ONE RTCPeerConnection to the server's relay (WHIP-style POST
// of our offer with the per-call media token). Shared by the kiosk and expert pages.
// The browser always offers; when ICE fails it builds a new connection and
// offers again (the relay cannot restart ICE), keeping the same camera.
//
// The offer has FIXED slots (docs/PROTOCOL.md, "Media"), seven m-lines in this
// order: own microphone and camera, sent and receiving slot 0 (mids 0, 1); slots 1
// and 2 received only (mids 2, 3 and 4, 5); a screen (mid 6), sent while this
// participant shares one and receiving another's. People joining and leaving change
// no m-line: the relay starts or stops forwarding into a slot, the page shows or
// hides its tile (slots.js). Sharing a screen puts a track on mid 6 (replaceTrack),
// never a new offer.
import { SLOTS } from "./slots.js";

const GATHER_TIMEOUT_MS = 4000;
const STATS_INTERVAL_MS = 1000;
const FAILED_GRACE_MS = 3000;

// Camera and microphone, or whatever part of them is there (null for nothing).
export async function localMedia() {
  const attempts = [
    { audio: true, video: { width: { ideal: 640 }, height: { ideal: 480 } } },
    { audio: true, video: false },
  ];
  for (const constraints of attempts) {
    try {
      return await navigator.mediaDevices.getUserMedia(constraints);
    } catch {
      // Try with less; a side without camera or microphone still receives.
    }
  }
  return null;
}

export function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

export class MediaLink {
  // `remoteVideos`: one <video> per slot (SLOTS of them); `screenVideo`: the shared
  // screen received; `onScreenEnded`: this side's screen capture stopped by itself
  // (the browser's own "stop sharing").
  constructor({ localVideo, remoteVideos, screenVideo = null, onState = () => {}, onStats = () => {}, onScreenEnded = () => {} }) {
    this.localVideo = localVideo;
    this.remoteVideos = remoteVideos;
    this.screenVideo = screenVideo;
    this.onState = onState;
    this.onStats = onStats;
    this.onScreenEnded = onScreenEnded;
    this.pc = null;
    this.stream = null;
    this.screenTrack = null;
    this.screenSender = null;
    this.receivers = []; // per slot: {audio, video} RTCRtpReceiver; then the screen's
    this.access = null;
    this.location = null;
    this.statsTimer = null;
    this.failTimer = null;
    this.generation = 0;
    this.previous = null;
  }

  // A stream already opened (the kiosk's device check) is used for the call.
  useStream(stream) {
    this.stream = stream;
    if (stream && this.localVideo) this.localVideo.srcObject = stream;
  }

  hasTrack(kind) {
    return Boolean(this.stream?.getTracks().some((track) => track.kind === kind));
  }

  // Muting keeps the track (and the connection) and sends silence / black frames.
  setEnabled(kind, enabled) {
    for (const track of this.stream?.getTracks() ?? []) {
      if (track.kind === kind) track.enabled = enabled;
    }
  }

  get active() {
    return this.access !== null;
  }

  async start(access) {
    if (this.access && this.access.token === access.token) return;
    this.access = access;
    if (!this.stream) {
      this.stream = await localMedia();
      if (this.stream && this.localVideo) this.localVideo.srcObject = this.stream;
    }
    await this.connect();
    clearInterval(this.statsTimer);
    this.statsTimer = setInterval(() => this.report(), STATS_INTERVAL_MS);
  }

  async connect() {
    const generation = ++this.generation;
    if (this.pc) this.pc.close();
    // STUN/TURN as the deployment configured them, TURN with credentials that
    // expire (fetched for each connection); none when there are none or the
    // request fails (the relay is then reached directly, as on a hall's LAN).
    let iceServers = [];
    try {
      const response = await fetch("/api/v1/ice-servers", { credentials: "same-origin" });
      if (response.ok) iceServers = (await response.json()).ice_servers;
    } catch {
      iceServers = [];
    }
    if (generation !== this.generation) return;
    const pc = new RTCPeerConnection({ iceServers });
    this.pc = pc;
    this.addTransceivers(pc);
    pc.onconnectionstatechange = () => this.stateChanged(pc, generation);
    this.onState("connecting");
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc);
    if (generation !== this.generation || !this.access) return;
    let response;
    try {
      response = await fetch(this.access.url, {
        method: "POST",
        headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${this.access.token}` },
        body: pc.localDescription.sdp,
      });
    } catch {
      this.retrySoon(generation);
      return;
    }
    if (response.status !== 201) {
      this.onState(response.status === 404 ? "ended" : "failed");
      if (response.status >= 500) this.retrySoon(generation);
      return;
    }
    this.location = response.headers.get("Location");
    const answer = await response.text();
    if (generation !== this.generation) return;
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
  }

  // The seven m-lines, in the contract's order. Each slot's picture and sound play
  // in that slot's <video> from the receivers' own tracks (they exist before any
  // packet comes, and unmute when the relay starts forwarding into the slot).
  addTransceivers(pc) {
    const own = (kind) => this.stream?.getTracks().find((t) => t.kind === kind);
    this.receivers = [];
    for (let slot = 0; slot < SLOTS; slot += 1) {
      const pair = {};
      for (const kind of ["audio", "video"]) {
        const track = slot === 0 ? own(kind) : null;
        const transceiver = track
          ? pc.addTransceiver(track, { direction: "sendrecv", streams: [this.stream] })
          : pc.addTransceiver(kind, { direction: "recvonly" });
        pair[kind] = transceiver.receiver;
      }
      this.receivers.push(pair);
    }
    // The screen: sent by whoever shares (no track until then), received otherwise.
    const screen = pc.addTransceiver(this.screenTrack ?? "video", { direction: "sendrecv" });
    this.screenSender = screen.sender;
    this.screenReceiver = screen.receiver;
    this.remoteVideos.forEach((video, slot) => {
      if (video) video.srcObject = new MediaStream([this.receivers[slot].audio.track, this.receivers[slot].video.track]);
    });
    if (this.screenVideo) this.screenVideo.srcObject = new MediaStream([screen.receiver.track]);
  }

  // This side's screen (a track of getDisplayMedia) goes out on mid 6, or stops.
  async shareScreen(track) {
    if (this.screenTrack && this.screenTrack !== track) this.screenTrack.stop();
    this.screenTrack = track;
    if (track) {
      track.contentHint = "detail";
      track.addEventListener("ended", () => {
        if (this.screenTrack !== track) return;
        this.screenTrack = null;
        this.screenSender?.replaceTrack(null).catch(() => {});
        this.onScreenEnded();
      });
    }
    await this.screenSender?.replaceTrack(track ?? null).catch(() => {});
  }

  get sharing() {
    return this.screenTrack !== null;
  }

  stateChanged(pc, generation) {
    if (generation !== this.generation) return;
    const state = pc.connectionState;
    this.onState(state);
    clearTimeout(this.failTimer);
    if (state === "failed") this.retrySoon(generation, 0);
    else if (state === "disconnected") this.retrySoon(generation, FAILED_GRACE_MS);
  }

  retrySoon(generation, delay = 1000) {
    clearTimeout(this.failTimer);
    this.failTimer = setTimeout(() => {
      if (generation === this.generation && this.access) this.connect();
    }, delay);
  }

  // A new connection now (after the network came back), keeping the camera.
  reconnect() {
    if (this.access && (!this.pc || this.pc.connectionState !== "connected")) this.connect();
  }

  // Figures of the last interval for the quality indicator: loss (fraction of
  // packets lost since the last report, all that comes in), round-trip time (s),
  // frames per second (the best of the slots: a camera switched off elsewhere is not
  // this link's fault). Each slot's <video> (and the shared screen's) carries its own
  // frames decoded and audio packets received (data-frames-decoded, data-audio-packets).
  async report() {
    if (!this.pc) return;
    const pc = this.pc;
    const report = await pc.getStats();
    const figures = {
      framesDecoded: 0,
      audioPacketsReceived: 0,
      packetsLost: 0,
      packetsReceived: 0,
      rtt: null,
      fps: null,
      loss: null,
      connection: pc.connectionState,
    };
    // Which slot a stream is for: by its track (trackIdentifier), else by its mid.
    const slotOfTrack = new Map();
    this.receivers.forEach((pair, slot) => {
      slotOfTrack.set(pair.audio.track.id, slot);
      slotOfTrack.set(pair.video.track.id, slot);
    });
    const screenTrack = this.screenReceiver?.track.id;
    const perSlot = this.receivers.map(() => ({ frames: 0, audio: 0 }));
    let screenFrames = 0;
    report.forEach((entry) => {
      if (entry.type === "inbound-rtp") {
        figures.packetsLost += entry.packetsLost ?? 0;
        figures.packetsReceived += entry.packetsReceived ?? 0;
        const mid = Number.parseInt(entry.mid ?? "", 10);
        const isScreen = entry.trackIdentifier ? entry.trackIdentifier === screenTrack : mid === 2 * SLOTS;
        if (isScreen) {
          screenFrames = entry.framesDecoded ?? 0;
          return;
        }
        const slot = slotOfTrack.get(entry.trackIdentifier) ?? (Number.isInteger(mid) ? Math.floor(mid / 2) : 0);
        if (!perSlot[slot]) return;
        if (entry.kind === "video") {
          perSlot[slot].frames = entry.framesDecoded ?? 0;
          figures.framesDecoded += entry.framesDecoded ?? 0;
          if (entry.framesPerSecond !== undefined && (figures.fps === null || entry.framesPerSecond > figures.fps)) {
            figures.fps = entry.framesPerSecond;
          }
        } else if (entry.kind === "audio") {
          perSlot[slot].audio = entry.packetsReceived ?? 0;
          figures.audioPacketsReceived += entry.packetsReceived ?? 0;
        }
      } else if (entry.type === "candidate-pair" && entry.nominated && entry.currentRoundTripTime !== undefined) {
        figures.rtt = entry.currentRoundTripTime;
      }
    });
    if (pc !== this.pc) return;
    // Whether pictures or sound came in since the last report (of this connection:
    // a new one counts from zero).
    const media = figures.framesDecoded + figures.audioPacketsReceived;
    figures.progressed = this.previous && this.previous.pc === pc ? media > this.previous.media : media > 0;
    if (this.previous && this.previous.pc === pc) {
      const lost = figures.packetsLost - this.previous.lost;
      const received = figures.packetsReceived - this.previous.received;
      figures.loss = lost + received > 0 ? Math.max(0, lost) / (Math.max(0, lost) + received) : null;
      figures.stalled = received <= 0;
    }
    this.previous = { pc, lost: figures.packetsLost, received: figures.packetsReceived, media };
    this.remoteVideos.forEach((video, slot) => {
      if (!video) return;
      video.dataset.framesDecoded = String(perSlot[slot].frames);
      video.dataset.audioPackets = String(perSlot[slot].audio);
    });
    if (this.screenVideo) this.screenVideo.dataset.framesDecoded = String(screenFrames);
    figures.slots = perSlot;
    figures.screenFrames = screenFrames;
    this.onStats(figures);
  }

  // Everything off: connection, camera, pictures (the kiosk's privacy wipe relies on it).
  // No DELETE: the pages stop only when the call has ended, and the relay has
  // then closed both sides already.
  stop() {
    this.generation += 1;
    clearInterval(this.statsTimer);
    clearTimeout(this.failTimer);
    this.access = null;
    this.location = null;
    this.previous = null;
    if (this.pc) this.pc.close();
    this.pc = null;
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    this.screenTrack?.stop();
    this.screenTrack = null;
    this.screenSender = null;
    this.screenReceiver = null;
    this.receivers = [];
    for (const video of [this.localVideo, ...this.remoteVideos, this.screenVideo]) {
      if (!video) continue;
      video.srcObject = null;
      delete video.dataset.framesDecoded;
      delete video.dataset.audioPackets;
    }
  }
}
