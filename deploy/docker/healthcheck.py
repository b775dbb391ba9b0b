#!/usr/bin/env python3
"""Exit 0 if one of the URLs answers 2xx, else 1: the images' HEALTHCHECK.

URLs come from the arguments, else from FEDPILOT_HEALTH_URLS (space-separated). The
server's SuperLink answers GET /health on its Fleet API port. Certificates are not checked:
this asks the process in the same container over loopback, where the server certificate's
names need not include 127.0.0.1. Standard library only, so it runs in any image.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0


def healthy(url: str) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S, context=context) as response:
            return 200 <= int(response.status) < 300
    except (OSError, urllib.error.URLError, ValueError):
        return False


def main(argv: list[str]) -> int:
    urls = argv or os.environ.get("FEDPILOT_HEALTH_URLS", "").split()
    if not urls:
        print("fedpilot-healthcheck: no URL given (arguments or FEDPILOT_HEALTH_URLS)")
        return 1
    for url in urls:
        if healthy(url):
            return 0
    print(f"fedpilot-healthcheck: no answer from {' '.join(urls)}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
