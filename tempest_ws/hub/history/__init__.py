"""The hub's side of message history: stamp, sequence, replay and mend history topics."""
