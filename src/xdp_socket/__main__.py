"""``python -m xdp_socket``: the same as the ``xdp-socket`` command."""

import sys

from .cli.main import entry

if __name__ == "__main__":
    sys.exit(entry())
