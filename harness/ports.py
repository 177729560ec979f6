"""A free TCP port on loopback, for a process the caller is about to start."""

import socket


def free_port() -> int:
    """A port nobody listens on now (the OS's pick). Another process may take it before
    the caller's server binds it: callers that can, bind port 0 themselves instead."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
