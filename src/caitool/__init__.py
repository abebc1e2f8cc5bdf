"""caitool: Constitutional AI from the command line (and from Python: :func:`caitool.pipeline`)."""

from caitool.pipeline import Pipeline, pipeline

__all__ = ["Pipeline", "pipeline"]
__version__ = "0.1.0"
