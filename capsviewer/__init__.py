"""capsviewer: explore Capsule Networks (Sabour, Frosst & Hinton 2017).

The numerical core (``maths``, ``models``, ``data``, ``training``, ``analysis``) never imports
Qt, so it can be used and tested headless; the desktop app builds on top of it.
"""

import sys

__version__ = "0.1.0"


def lazy_exports(package: str, exports: dict[str, str]):
    """A package's ``__getattr__`` (PEP 562) that imports each name of ``exports`` (name →
    module in ``package``) on first use: ``capsviewer.data`` and ``capsviewer.training`` do
    not import torch when imported, so ``capsviewer --help`` and the app's window need none."""
    import importlib

    namespace = sys.modules[package].__dict__

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        namespace[name] = value
        return value

    return __getattr__
