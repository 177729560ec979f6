"""Who talks to whom: socket.io events, department queues, expert presence, the
consultation state machine and chat."""
