"""covgap: where a district still has no mobile signal and no fibre broadband.

The library is organised as small modules named by noun; the command line
(``covgap.cli``) is a thin layer over :func:`covgap.pipeline.run_pipeline`.
"""

__version__ = "0.1.0"
