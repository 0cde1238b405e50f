"""Liveness probe of a worker (the image's HEALTHCHECK): GET /healthz on the web port,
over HTTPS when WEB_TLS_CERT is set.  /healthz needs no token and reveals nothing.

    python scripts/healthcheck.py [PORT]      exit 0 = healthy, 1 = not
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request


def main(argv: list[str]) -> int:
    port = int(argv[1]) if len(argv) > 1 else 6066
    scheme = "https" if os.environ.get("WEB_TLS_CERT") else "http"
    # loopback to this very container: the certificate names the service, not 127.0.0.1
    context = ssl._create_unverified_context() if scheme == "https" else None
    try:
        with urllib.request.urlopen(
            f"{scheme}://127.0.0.1:{port}/healthz", timeout=4, context=context
        ) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
