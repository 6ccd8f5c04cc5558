"""What defines bytes on the wire: the envelope, close codes, frames and typed messages."""
