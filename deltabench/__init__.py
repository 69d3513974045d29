"""deltabench: train, run and score text-driven image editing methods on the same images and prompts."""
__version__ = "0.1.0"
