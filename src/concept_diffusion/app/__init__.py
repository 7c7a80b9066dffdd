"""The concept editor: a Gradio app (the `[app]` extra) to encode an image, move its concepts, swap,
traverse and look at the attention maps; every event is also an API endpoint.

    >>> from concept_diffusion.app import build_demo
    >>> build_demo(pipe).launch()

`ConceptEditor` holds the handlers without any Gradio import, so they can be used and tested alone.
"""

from importlib import import_module

_EXPORTS = {
    "ConceptEditor": "concept_diffusion.app.editor",
    "build_demo": "concept_diffusion.app.demo",
    "fit_image": "concept_diffusion.app.images",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'concept_diffusion.app' has no attribute {name!r}")
