// The socket.io connection, authenticated by the page's session cookie.
import { io } from "../vendor/socket.io/socket.io.esm.min.js";

export class SignalError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// The page's "#connection" banner shows while the socket is down.
export function connectSignal({ onConnect, onDisconnect } = {}) {
  // The websocket only: any process of the deployment can take it (no sticky
  // sessions); lost, it comes back with back-off and jitter (randomizationFactor 0.5).
  const socket = io({ transports: ["websocket"], reconnectionDelayMax: 3000 });
  const banner = document.getElementById("connection");
  const down = (reason) => {
    if (banner) banner.hidden = false;
    onDisconnect?.(reason);
  };
  socket.on("connect", () => {
    if (banner) banner.hidden = true;
    onConnect?.(socket);
  });
  socket.on("disconnect", down);
  socket.on("connect_error", () => down("connect_error"));
  return {
    socket,
    on: (event, handler) => socket.on(event, handler),
    async send(event, payload = {}) {
      const ack = await socket.timeout(10000).emitWithAck(event, payload);
      if (ack && ack.error) throw new SignalError(ack.error.code, ack.error.message);
      return ack ? ack.result : null;
    },
    close: () => socket.disconnect(),
  };
}
