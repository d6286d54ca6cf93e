"""The decoding core: one step function and the rules it applies, shared by :func:`generate` and
the engine adapters.

* Rules (what a step commits): :class:`TopK`, :class:`Threshold`, :class:`Factor` (the paper's
  rule or Fast-dLLM's code), :class:`DInferThreshold`.
* :class:`Proposal` + :func:`propose`: tokens and confidences (``masked_confidence``).
* :func:`decode_step`: propose, apply a rule, write the committed tokens in place.
* :class:`JointThreshold` + :func:`joint_threshold_step` (with :class:`EditState`): LLaDA2.1's
  joint threshold with token-to-token editing (SGLang ``JointThreshold``).
* Around it for :func:`generate`: step plans (:class:`LLaDAPlan`, :class:`DreamPlan`,
  :class:`UntilDone`), the cache policy (:func:`query_range`), the model call
  (:class:`ModelForward`) and the block loop (:class:`BlockLoop`).
* Block diffusion (exact KV cache): :class:`BlockDiffusionLoop`, SDAR's :class:`DynamicThreshold` /
  :class:`SDARPlan`, Dream's ``origin`` (:class:`RandomTransfer`, :class:`DreamOriginPlan`).
* ``generate(cuda_graph=True)``: :class:`StaticDecodeStep` (the step on static buffers) and
  :class:`StepGraph` (captured once per shape, replayed).
* Self-correction: :class:`ReMDM`, :class:`RemaskLowConfidence` (:func:`remask_step`); the
  log-probability of committed tokens (:func:`proposal_log_prob`; module ``token_log_prob``).
"""
from .cache import query_range
from .forward import ModelForward
from .loop import BlockLoop, StepInfo
from .plans import DreamPlan, LLaDAPlan, StepPlan, UntilDone
from .proposal import Proposal, propose
from .rules import ALG_TEMP_OFFSET, DInferThreshold, Factor, Rule, Threshold, TopK
from .step import StepResult, decode_step
from .editing import EditResult, EditState, JointThreshold, joint_threshold_step
from .block_diffusion import BlockDiffusionLoop, decoded_blocks
from .dynamic_threshold import DynamicThreshold, SDARPlan
from .random_transfer import DreamOriginPlan, RandomTransfer
from .remasking import CommittedRemasking, ReMDM, RemaskLowConfidence, remask_step
from .token_log_prob import proposal_log_prob  # token_log_prob stays the module's name
from .graph import StaticDecodeStep, StepGraph

__all__ = ["Rule", "TopK", "Threshold", "Factor", "DInferThreshold", "ALG_TEMP_OFFSET", "Proposal", "propose",
           "StepResult", "decode_step", "JointThreshold", "EditState", "EditResult", "joint_threshold_step",
           "StepPlan", "LLaDAPlan", "DreamPlan", "UntilDone", "query_range", "ModelForward", "BlockLoop", "StepInfo",
           "BlockDiffusionLoop", "decoded_blocks", "DynamicThreshold", "SDARPlan", "RandomTransfer", "DreamOriginPlan",
           "CommittedRemasking", "ReMDM", "RemaskLowConfidence", "remask_step", "proposal_log_prob",
           "StaticDecodeStep", "StepGraph"]
