// The kiosk's device check: open camera and microphone, tell what is missing or
// refused, and show a live microphone level.

function problemOf(error) {
  if (!error) return null;
  if (error.name === "NotAllowedError" || error.name === "SecurityError") return "denied";
  if (error.name === "NotFoundError" || error.name === "OverconstrainedError") return "missing";
  return "unavailable";
}

async function tryOpen(constraints) {
  try {
    return { stream: await navigator.mediaDevices.getUserMedia(constraints), error: null };
  } catch (error) {
    return { stream: null, error };
  }
}

// {stream, camera, microphone}: each "ok", "denied", "missing" or "unavailable".
export async function openDevices() {
  if (!navigator.mediaDevices?.getUserMedia) {
    return { stream: null, camera: "unavailable", microphone: "unavailable" };
  }
  const both = await tryOpen({ audio: true, video: { width: { ideal: 640 }, height: { ideal: 480 } } });
  if (both.stream) return { stream: both.stream, camera: "ok", microphone: "ok" };
  // Find out which one is the problem; keep whichever works.
  const audio = await tryOpen({ audio: true });
  const video = await tryOpen({ video: true });
  const tracks = [...(audio.stream?.getTracks() ?? []), ...(video.stream?.getTracks() ?? [])];
  return {
    stream: tracks.length ? new MediaStream(tracks) : null,
    camera: video.stream ? "ok" : problemOf(video.error),
    microphone: audio.stream ? "ok" : problemOf(audio.error),
  };
}

// Calls onLevel(0..1) about ten times a second until stopped.
export function watchLevel(stream, onLevel) {
  const track = stream?.getAudioTracks()[0];
  if (!track) return () => {};
  const context = new AudioContext();
  const source = context.createMediaStreamSource(new MediaStream([track]));
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const value of samples) sum += value * value;
    onLevel(Math.min(1, Math.sqrt(sum / samples.length) * 4));
  }, 100);
  return () => {
    clearInterval(timer);
    source.disconnect();
    context.close().catch(() => {});
  };
}
