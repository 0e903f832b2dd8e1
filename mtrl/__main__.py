"""``python -m mtrl ...`` works like the ``mtrl`` command."""

import sys

from mtrl.cli import main

if __name__ == "__main__":
    sys.exit(main())
