"""The learner benchmark's analytic FLOP count on hand-checkable cases."""

from __future__ import annotations

import pytest

from robot_rl.bench.flops import Gemm, update_flops, update_gemms


def test_flops_of_a_tiny_sac_update_by_hand():
    """obs 3, action 1, one hidden layer of 4, batch 2, N = 3 critics, M = 2, SAC actor (2 outputs).

    Critic layers 4→4, 4→1: 16 + 4 = 20 multiply-adds per row and member; actor layers 3→4,
    4→2: 12 + 8 = 20 per row."""
    gemms = update_gemms(obs_dim=3, action_dim=1, hidden=(4,), batch=2, ensemble_size=3, subset_size=2)
    macs = {name: sum(g.flops for g in products) // 2 for name, products in gemms.items()}
    rows = 2
    # target: actor forward (20 per row) + 2 target critics forward (20 per row each)
    assert macs["target"] == rows * (20 + 2 * 20)
    # critic: 3 critics forward (20) + weight gradients (20) + input gradient of the 4→1 layer only (4)
    assert macs["critic"] == rows * 3 * (20 + 20 + 4)
    # actor: actor forward (20) + 3 critics forward (20) and input gradients of both layers (20),
    # actor weight gradients (20) and the input gradient of its 4→2 layer (8)
    assert macs["actor"] == rows * (20 + 3 * (20 + 20) + 20 + 8)
    every_step, every_fourth = update_flops(gemms), update_flops(gemms, actor_update_interval=4)
    assert every_fourth["actor_gflop"] * 4 == pytest.approx(every_step["actor_gflop"])
    assert every_step["total_gflop"] == pytest.approx(sum(macs.values()) * 2 / 1e9)


def test_sb3_and_td3_counting():
    """SB3 adds the critics' weight gradients in the actor step; TD3's actor step evaluates Q_1 only."""
    ours = update_gemms(27, 4, (256, 256), 256, 2, 2)
    sb3 = update_gemms(27, 4, (256, 256), 256, 2, 2, sb3=True)
    critic_weight_grads = sum(Gemm(2, fan_in, 256, fan_out).flops
                              for fan_in, fan_out in ((31, 256), (256, 256), (256, 1)))
    assert sum(g.flops for g in sb3["actor"]) - sum(g.flops for g in ours["actor"]) == critic_weight_grads
    td3 = update_gemms(27, 4, (256, 256), 256, 2, 2, stochastic_actor=False, actor_critics=1)
    assert {g.members for g in td3["actor"]} == {1}
    assert 0.59 < update_flops(ours)["total_gflop"] < 0.6  # the 256×256, batch 256 SAC update of the benchmark
