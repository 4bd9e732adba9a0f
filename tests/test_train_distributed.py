"""torchrun scale-out of the shared loop: two Gloo processes on the CPU train exactly what one process does with the
whole batch (gradients averaged over the ranks), and the ranks stay identical."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch

SCRIPT = textwrap.dedent('''
    import sys
    from pathlib import Path

    import torch
    import torch.nn.functional as F
    from torch import nn

    from dualstylegan.train.loop import LoopConfig, Phase, Stage, TrainLoop

    X = torch.randn(24, 4, generator=torch.Generator().manual_seed(5))
    Y = X @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1


    class Regression(Stage):
        """No randomness in the losses: the only difference a rank count could make is the gradient."""

        name = "regression"

        def __init__(self):
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
            self.opt = {"net": torch.optim.Adam(self.net.parameters(), 1e-2)}

        def networks(self):
            return {"net": self.net}

        def optimizers(self):
            return self.opt

        def loss(self, idx, step):
            loss = F.mse_loss(self.net(X[idx]), Y[idx])
            return loss, {"mse": loss.item()}

        def phases(self):
            return [Phase("net", ["net"], self.loss)]


    out, batch = Path(sys.argv[1]), int(sys.argv[2])
    stage = Regression()
    cfg = LoopConfig(steps=6, batch_size=batch, out_dir=out, checkpoint_every=3, sample_every=0, progress=False,
                     tensorboard=False)
    loop = TrainLoop(stage, lambda idx: torch.as_tensor(idx), len(X), cfg)
    loop.run()
    torch.save(stage.net.state_dict(), out / f"rank{loop.dist.rank}.pt")
''')


def test_two_ranks_train_what_one_process_trains_with_the_whole_batch(tmp_path):
    script = tmp_path / "train_regression.py"
    script.write_text(SCRIPT)
    single, multi = tmp_path / "single", tmp_path / "multi"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for cmd in ([sys.executable, str(script), str(single), "4"],
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                 str(script), str(multi), "2"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    one = torch.load(single / "rank0.pt")
    rank0, rank1 = torch.load(multi / "rank0.pt"), torch.load(multi / "rank1.pt")
    torch.manual_seed(0)  # the stage's initial weights
    untrained = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    for k in one:
        assert torch.equal(rank0[k], rank1[k]), f"the ranks diverged at {k}"
        torch.testing.assert_close(rank0[k], one[k], atol=1e-6, rtol=1e-5, msg=k)
    assert all(not torch.equal(one[k], v) for k, v in untrained.state_dict().items())  # it trained
    assert (multi / "checkpoint.pt").is_file()  # written by rank 0
