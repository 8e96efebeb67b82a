"""What a vtremoted announces on mDNS (``_vtremote._tcp``), shared by the server that
announces and the client that browses: the service type, the TXT keys, and the
variable naming the interfaces both use. Data only, no sockets.
"""

from __future__ import annotations

SERVICE_TYPE = "_vtremote._tcp.local."
#: Comma-separated interface addresses mDNS is limited to (server and client).
ENV_INTERFACES = "VTREMOTE_MDNS_INTERFACES"
