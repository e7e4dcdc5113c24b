"""``agent.compile``: the update's objectives under ``torch.compile`` (inductor).

An objective (a loss computation) is compiled together with its backward: inductor fuses the
elementwise work around the matmuls, which stay the same library calls (oneDNN or MKL, see
:mod:`robot_rl.agents.kernels`). Two settings make it pay, and keep it exact:

* the partitioner (which forward values the backward gets) is AOTAutograd's plain one: the
  backward reads the activations the forward made, such as a ReLU's output. The default
  (min-cut) partitioner saves ReLU masks as bool tensors instead, which inductor's CPU code
  writes byte by byte (torch 2.13: 1.1 ms for one 2×256×256 mask, where the eager ReLU backward
  takes 50 µs), and SAC's update then runs at 0.66× eager;
* random numbers come from torch's own generator (``fallback_random``), so a seeded compiled run
  draws what the eager one does.

Imported only when a learner compiles: importing inductor takes about a second.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import torch
from torch._functorch.partitioners import default_partition
from torch._inductor.custom_graph_pass import CustomPartitionerFn

Fn = TypeVar("Fn", bound=Callable[..., Any])


def _drop_unused_random_ops(graph_module: torch.fx.GraphModule) -> None:
    """Remove random ops whose result nothing reads. The plain partitioner copies them into the
    backward graph (e.g. REDQ's ``randperm`` of the target subset), where they would advance the
    generator a second time and desynchronise the run from an eager one."""
    graph = graph_module.graph
    for node in reversed(graph.nodes):
        if node.op == "call_function" and not node.users \
                and torch.Tag.nondeterministic_seeded in getattr(node.target, "tags", ()):
            graph.erase_node(node)
    graph_module.recompile()


class SaveForwardActivations(CustomPartitionerFn):
    """The plain partitioner (see the module doc), as an inductor option."""

    def __call__(self, joint: torch.fx.GraphModule, joint_inputs: Any,
                 **kwargs: Any) -> tuple[torch.fx.GraphModule, torch.fx.GraphModule]:
        forward, backward = default_partition(joint, joint_inputs, num_fwd_outputs=kwargs["num_fwd_outputs"],
                                              static_lifetime_input_indices=kwargs.get("static_lifetime_input_indices"))
        _drop_unused_random_ops(backward)
        return forward, backward

    def uuid(self) -> str:
        return "robot_rl.SaveForwardActivations.v1"  # part of inductor's cache key: change with the code


def compile_objective(fn: Fn) -> Fn:
    """``fn`` under ``torch.compile`` with the settings above and static shapes. Compiled at the
    first call (SAC's two objectives: 15-20 s, 2-3 s from inductor's disk cache); a new batch size
    or network shape compiles again."""
    return torch.compile(fn, dynamic=False, options={"fallback_random": True,
                                                     "custom_partitioner_fn": SaveForwardActivations()})
