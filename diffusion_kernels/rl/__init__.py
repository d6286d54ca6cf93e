"""RL post-training pieces for diffusion LMs (docs/rl.md): the :class:`Trajectory` a sampler run
records, TraceRL's and d1's policy log-probabilities on the fused masked cross-entropy (no
``[positions, vocab]`` log-softmax), and the clipped policy loss."""
from .trajectory import Trajectory
from .log_probs import (fused_linear_one_step_log_probs, fused_linear_trajectory_log_probs, one_step_input,
                        one_step_log_probs, trajectory_log_probs)
from .policy_loss import clipped_policy_loss, group_advantages

__all__ = ["Trajectory", "trajectory_log_probs", "one_step_log_probs", "fused_linear_trajectory_log_probs",
           "fused_linear_one_step_log_probs", "one_step_input", "clipped_policy_loss", "group_advantages"]
