"""A process's share of work under DDP, the gathering of the shares, the main process's
BatchNorm statistics and the wrapping of the trainable modules, in two gloo processes."""

import os

import torch

from local.model.distributed import (
    buffers_of_main,
    gathered_on_main,
    leave_process_group,
    process_share,
    unwrapped,
    wrap_in_ddp,
)
from tests.conftest import in_two_processes

ITEMS = [f"u{i}" for i in range(5)]


def shares_in_process(rank, folder):
    """One DDP process of two: what it got of each function is saved, after it left the group."""
    share = process_share(ITEMS)
    gathered = gathered_on_main({utt: torch.full((3,), float(utt[1:])) for utt in share})
    # Of one item, the main process's share is empty.
    alone = gathered_on_main({utt: torch.ones(2) for utt in process_share(["only"])})
    norm = torch.nn.BatchNorm1d(2)
    norm.running_mean.fill_(rank + 1.0)
    norm.running_var.fill_(10.0 * (rank + 1))
    norm.num_batches_tracked.fill_(rank + 3)
    buffers_of_main(torch.nn.ModuleDict({"norm": norm}))
    trained, frozen = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).requires_grad_(False)
    modules = torch.nn.ModuleDict({"trained": trained, "frozen": frozen})
    wrap_in_ddp(modules, find_unused_parameters=False)
    wrapped = {name: (type(module).__name__, getattr(module, "find_unused_parameters", None))
               for name, module in modules.items()}
    inside = (unwrapped(modules["trained"]) is trained, unwrapped(modules["frozen"]) is frozen)
    leave_process_group()
    left = not torch.distributed.is_initialized()
    torch.save({"share": share, "gathered": gathered, "alone": alone,
                "buffers": [norm.running_mean, norm.running_var, norm.num_batches_tracked],
                "wrapped": wrapped, "inside": inside, "left": left},
               os.path.join(folder, f"rank{rank}.pt"))


def test_the_shares_the_gathering_and_the_buffers_of_two_processes(tmp_path):
    in_two_processes(shares_in_process, str(tmp_path))
    main, other = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    # Shares in rank order, together the items in their order.
    assert main["share"] + other["share"] == ITEMS and len(main["share"]) == 2
    assert list(main["gathered"]) == ITEMS and other["gathered"] == {}
    for utt, vector in main["gathered"].items():
        torch.testing.assert_close(vector, torch.full((3,), float(utt[1:])))
    assert list(main["alone"]) == ["only"] and other["alone"] == {}
    for got in (main, other):
        torch.testing.assert_close(got["buffers"], [torch.full((2,), 1.0), torch.full((2,), 10.0),
                                                    torch.tensor(3)])
        assert got["wrapped"] == {"trained": ("DistributedDataParallel", False),
                                 "frozen": ("Linear", None)}
        assert got["inside"] == (True, True) and got["left"]


def test_outside_a_process_group_every_item_is_this_processs_and_nothing_moves():
    norm = torch.nn.BatchNorm1d(2)
    norm.running_mean.fill_(4.0)
    buffers_of_main(torch.nn.ModuleDict({"norm": norm}))
    torch.testing.assert_close(norm.running_mean, torch.full((2,), 4.0))
    vectors = {"u1": torch.ones(2)}
    assert process_share(iter(ITEMS)) == ITEMS and gathered_on_main(vectors) is vectors
    leave_process_group()  # nothing to leave
