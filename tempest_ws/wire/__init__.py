"""What defines bytes on the wire, shared by the server and the Python client."""
