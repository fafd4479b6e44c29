"""covgap: where a district still has no mobile signal and no fibre broadband.

The library is organised as small modules named by noun; the command line
(``covgap.cli``) is a thin layer over :func:`covgap.pipeline.run_pipeline`.

The main entry points are importable from here (loaded on first use, so ``import covgap``
and ``covgap --help`` stay fast)::

    import covgap
    config = covgap.load_config("covgap.toml")
    results = covgap.run_pipeline(config)       # covgap.Results: villages, zones, scorecards...
    results.villages[["name", "verdict_4g", "evidence_share"]]
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name → the module that defines it.
_EXPORTS = {
    "load_config": "covgap.config", "Config": "covgap.config",
    "run_pipeline": "covgap.pipeline", "load_layers": "covgap.pipeline", "ingest_measurements": "covgap.pipeline",
    "analyse": "covgap.pipeline",
    "Layers": "covgap.model", "ReadReport": "covgap.model", "Results": "covgap.model",
    "CellClass": "covgap.cellstats",
    "write_outputs": "covgap.outputs", "write_maps": "covgap.maps", "write_partner_packages": "covgap.partners",
    "CovgapError": "covgap.errors", "InputError": "covgap.errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'covgap' has no attribute {name!r}")
