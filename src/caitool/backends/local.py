"""What the engines that run ``--model`` in this process (``hf``, ``vllm``) share: their provenance is the
model :func:`~caitool.models.resolve_model` finds (its name and hash), known before the weights load."""

from __future__ import annotations

from typing import Any

from caitool.backends.base import Backend, BackendOptions
from caitool.models import ResolvedModel, resolve_model


class LocalModelBackend(Backend):
    resolved: ResolvedModel | None = None

    @classmethod
    def describe_options(cls, options: BackendOptions) -> dict[str, Any]:
        return {"backend": cls.name, **resolve_model(options.model).describe()}

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"backend": self.name}
        if self.resolved is not None:
            info.update(self.resolved.describe())
        return info
