"""``python -m samlab.bench`` (see :mod:`samlab.bench`)."""

import sys

from samlab.bench.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
