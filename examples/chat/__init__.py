"""A chat demo for tempest_ws: FastAPI, the in-memory hub and a small browser page.

Run it with ``python -m examples.chat`` (or ``make demo``) and open
http://127.0.0.1:8000. `examples.chat.app.create_app()` builds the app.
"""
