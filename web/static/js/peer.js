// The call's media: ONE RTCPeerConnection to the server's relay (WHIP-style POST
// of our offer with the per-call media token). Shared by the kiosk and expert pages.
// The browser always offers; when ICE fails it builds a new connection and
// offers again (the relay cannot restart ICE), keeping the same camera.

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

function gatheringComplete(pc) {
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
  constructor({ localVideo, remoteVideo, onState = () => {}, onStats = () => {} }) {
    this.localVideo = localVideo;
    this.remoteVideo = remoteVideo;
    this.onState = onState;
    this.onStats = onStats;
    this.pc = null;
    this.stream = null;
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
    const remote = new MediaStream();
    for (const kind of ["audio", "video"]) {
      const track = this.stream?.getTracks().find((t) => t.kind === kind);
      if (track) pc.addTransceiver(track, { direction: "sendrecv", streams: [this.stream] });
      else pc.addTransceiver(kind, { direction: "recvonly" });
    }
    pc.ontrack = (event) => {
      remote.addTrack(event.track);
      if (this.remoteVideo && this.remoteVideo.srcObject !== remote) this.remoteVideo.srcObject = remote;
    };
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
  // packets lost since the last report), round-trip time (s), frames per second.
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
    report.forEach((entry) => {
      if (entry.type === "inbound-rtp" && entry.kind === "video") {
        figures.framesDecoded = entry.framesDecoded ?? 0;
        figures.fps = entry.framesPerSecond ?? null;
        figures.packetsLost += entry.packetsLost ?? 0;
        figures.packetsReceived += entry.packetsReceived ?? 0;
      } else if (entry.type === "inbound-rtp" && entry.kind === "audio") {
        figures.audioPacketsReceived = entry.packetsReceived ?? 0;
        figures.packetsLost += entry.packetsLost ?? 0;
        figures.packetsReceived += entry.packetsReceived ?? 0;
      } else if (entry.type === "candidate-pair" && entry.nominated && entry.currentRoundTripTime !== undefined) {
        figures.rtt = entry.currentRoundTripTime;
      }
    });
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
    if (this.remoteVideo) {
      this.remoteVideo.dataset.framesDecoded = String(figures.framesDecoded);
      this.remoteVideo.dataset.audioPackets = String(figures.audioPacketsReceived);
    }
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
    for (const video of [this.localVideo, this.remoteVideo]) {
      if (video) video.srcObject = null;
    }
  }
}
