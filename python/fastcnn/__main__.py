"""`python -m fastcnn` and the `fastcnn` console script."""

from __future__ import annotations

import sys

from fastcnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
