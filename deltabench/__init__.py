"""deltabench: train, run and score text-driven image editing methods on the same images and prompts.

The Python API (loaded on first use, so ``import deltabench`` stays light)::

    import deltabench
    df = deltabench.run(methods=["deltaedit", "styleclip"], world="synthfaces")  # summary table
    img = deltabench.edit("face.png", "face with glasses")                      # a PIL image
    scores = deltabench.score("inputs/", "edits/", [("face", "smiling face")])   # one row per pair
    info = deltabench.fit("styleclip-gd", world="synthfaces")                    # fit into the method cache
    deltabench.register_method("mine", MyMethod)                                 # then run(methods=["mine"])
"""

from importlib import metadata as _metadata

try:  # one literal, in pyproject.toml: the installed package's metadata
    __version__ = _metadata.version("deltabench")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["run", "edit", "fit", "score", "register_method", "EditMethod", "__version__"]


def __getattr__(name: str):
    if name in ("run", "edit", "fit", "score"):
        from deltabench import api

        return getattr(api, name)
    if name in ("register_method", "EditMethod"):
        from deltabench import methods

        return getattr(methods, name)
    raise AttributeError(f"module 'deltabench' has no attribute {name!r}")
