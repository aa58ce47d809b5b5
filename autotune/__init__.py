"""autotune: a compiler-based autotuning benchmark suite for model quantization."""

__version__ = "0.1.0"
