"""Test helpers: the SIMT-emulated CUDA kernels (see emulated.py)."""
