#!/usr/bin/env python3
"""Generate covgap's bundled sample district into data/sample/ (byte-identical on every run).

The generator is the package ``data/samplegen/`` (its docstring describes the model; one module
per idea: settings, geo, admin, roads, fibre, radio, surveys, writers). This script only runs it:

    .venv/bin/python data/generate_sample.py        # or: cd data && python -m samplegen
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from samplegen.__main__ import main  # noqa: E402

if __name__ == "__main__":
    main()
