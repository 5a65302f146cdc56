"""facever: face verification toolkit (align, train with Noisy Softmax, embed, evaluate, ensemble).

Importing the package is cheap on purpose: no torch, no CUDA, no side effects. Heavy modules are
imported by the code paths that need them.
"""

__version__ = "0.1.0"
