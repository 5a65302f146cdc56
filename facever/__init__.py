"""facever: face verification toolkit (align, train with Noisy Softmax, embed, evaluate, ensemble).

The Python API (docs/api.md) is a few functions and types, the library paths of the commands:

    import facever

    facever.align("photos", "aligned")
    facever.write_pairs("aligned/test", "pairs.txt", per_fold=30)
    facever.train("aligned/train", "runs/a", recipe="cpu-small")
    model = facever.load_model("runs/a")
    result = facever.evaluate("pairs.txt", facever.embed(model, "aligned/test"))

Importing the package is cheap on purpose: no torch, no CUDA, no side effects. The API's names are
looked up on first use (`facever.api`), and the functions import what they need when they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: The public API: these names, their signatures and what they return are what facever keeps stable.
__all__ = [
    "__version__", "Embeddings", "FaceverError", "align", "embed", "evaluate", "load_embeddings", "load_model",
    "save_embeddings", "train", "verify", "write_pairs",
]

if TYPE_CHECKING:  # for type checkers and editors; at run time the names come from __getattr__ below
    from facever.api import (  # noqa: F401
        Embeddings, FaceverError, align, embed, evaluate, load_embeddings, load_model, save_embeddings, train, verify,
        write_pairs,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        import facever.api

        value = getattr(facever.api, name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'facever' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
