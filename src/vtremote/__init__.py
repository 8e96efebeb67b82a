"""vtremote: use another machine's video encoders and decoders over the LAN (VTR1 protocol)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
