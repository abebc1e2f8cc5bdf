"""caitool: Constitutional AI from the command line (and from Python: :func:`caitool.pipeline` for the
stages that run on a model, :func:`caitool.train` for the training stages)."""

from caitool.pipeline import Pipeline, pipeline, train

__all__ = ["Pipeline", "pipeline", "train"]
__version__ = "0.1.0"
