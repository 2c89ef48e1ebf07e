"""A Ray started on this machine listens on 127.0.0.1 only (docs/DESIGN.md, "What a reader sees").

Ray derives every listening address (GCS, raylet's node and object managers, the driver's and the
workers' core-worker gRPC servers, the runtime env agent) from its node IP: 127.0.0.1 binds them to
loopback, any other address to all interfaces. Ray keeps a loopback node IP only where clusters are
off, the default on macOS and Windows and `names.LOOPBACK_ONLY` on Linux, and reads that once, when
`ray` is first imported. Joining a running Ray, the node IP is that Ray's: the setting changes nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from flosssweep.names import LOOPBACK_ONLY


@contextlib.contextmanager
def loopback_only(starts_ray: bool) -> Iterator[None]:
    """Import and start Ray inside this block: where `starts_ray` (this process starts a Ray of its
    own), it binds loopback only. The variable is set for the block alone, so that no later child
    process (a `ray start` joining a cluster, which it would refuse) inherits it; in a process that
    imported Ray before, it could no longer take effect and is not set."""
    if not starts_ray or "ray" in sys.modules:
        yield
        return
    os.environ.update(LOOPBACK_ONLY)
    try:
        yield
    finally:
        for key in LOOPBACK_ONLY:
            os.environ.pop(key, None)


def ray_running() -> bool:
    """Ray was started in this process already (asked without importing it, which would be too early)."""
    loaded = sys.modules.get("ray")
    return loaded is not None and loaded.is_initialized()
