from caitool.backends.base import Backend, BackendOptions, GenerationSettings, load_backend

__all__ = ["Backend", "BackendOptions", "GenerationSettings", "load_backend"]
