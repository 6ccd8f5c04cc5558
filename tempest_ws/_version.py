"""The version of tempest_ws, in a module of its own so any module can read it.

``tempest_ws.__version__`` is this value; the build reads it from here.
"""

from __future__ import annotations

__version__ = "0.1.0"
