"""Adapters that run the package's decoding core inside serving engines, one module per engine:

* :mod:`~diffusion_kernels.integrations.sglang`: SGLang dLLM algorithms (``DKLowConfidence``,
  ``DKJointThreshold``), a ``sglang.srt.plugins`` entry point.
* :mod:`~diffusion_kernels.integrations.vllm`: a batched remasking policy for vllm-project's
  dllm-plugin, a ``vllm.general_plugins`` entry point.
* :mod:`~diffusion_kernels.integrations.dinfer`: decoders with dInfer's duck-typed interface.

Nothing here is imported by ``import diffusion_kernels``; each module imports its engine only when
it needs it and says which package to install when it is missing. docs/engines.md has the details.
"""
