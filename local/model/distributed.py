"""DistributedDataParallel on the CPU, the module inside a wrapper, a process's share of work
and its gathering, and leaving the group."""

import gc

import torch
from torch.nn.parallel import DistributedDataParallel


def wrap_in_ddp(modules, find_unused_parameters):
    """Wrap each trainable module of ``modules`` in DDP, in place, with no device IDs (gloo).

    SpeechBrain's Brain converts BatchNorm layers to SyncBatchNorm first,
    which runs on CUDA only; on the CPU the modules are wrapped as they are.

    Arguments
    ---------
    modules : torch.nn.ModuleDict
        The Brain's modules.
    find_unused_parameters : bool
        As for DDP.
    """
    for name, module in modules.items():
        if any(p.requires_grad for p in module.parameters()):
            modules[name] = DistributedDataParallel(
                module, find_unused_parameters=find_unused_parameters)


def unwrapped(module):
    """The module inside a DistributedDataParallel wrapper (or the module itself).

    Arguments
    ---------
    module : torch.nn.Module
        A module, wrapped or not.

    Returns
    -------
    torch.nn.Module
        The module that does the work.

    Example
    -------
    >>> linear = torch.nn.Linear(2, 2)
    >>> unwrapped(linear) is linear
    True
    """
    return getattr(module, "module", module)


def process_share(items):
    """This process's share of ``items`` under DDP: its rank's run of them; all outside a group.

    The shares follow one another in rank order, so that their union
    (:func:`gathered_on_main`) is in the order of ``items``, as one process
    would have them: a clustering turns on that order.

    Arguments
    ---------
    items : list
        The same list on every process.

    Returns
    -------
    list
        Disjoint shares that together make ``items``.

    Example
    -------
    >>> process_share(["u1", "u2", "u3"])
    ['u1', 'u2', 'u3']
    """
    items = list(items)
    if not torch.distributed.is_initialized():
        return items
    rank, processes = torch.distributed.get_rank(), torch.distributed.get_world_size()
    return items[rank * len(items) // processes:(rank + 1) * len(items) // processes]


def buffers_of_main(modules):
    """Copy the main process's buffers of ``modules`` (BatchNorm running statistics) into every
    process's, in place; nothing outside a process group.

    DDP on the CPU keeps BatchNorm layers, whose running statistics each
    process updates with its own batches; DDP gives them the main process's
    only at the start of each training forward pass. Before the processes
    embed their shares with the model in evaluation mode, each would
    otherwise embed with the statistics of its own last batch, not those of
    the model that the main process checkpoints and verifies.

    Arguments
    ---------
    modules : torch.nn.ModuleDict
        The Brain's modules, wrapped or not, the same on every process.

    Example
    -------
    >>> norm = torch.nn.BatchNorm1d(2)
    >>> buffers_of_main(torch.nn.ModuleDict({"norm": norm}))
    >>> norm.running_var
    tensor([1., 1.])
    """
    if not torch.distributed.is_initialized():
        return
    for buffer in modules.buffers():
        torch.distributed.broadcast(buffer, src=0)


def gathered_on_main(vectors):
    """Every process's ``{key: tensor [dim]}`` merged on the main process; ``{}`` on the others.

    Outside a process group, ``vectors`` itself. Each process's share travels
    as one stacked tensor: pickling it is a small fraction of pickling each
    vector alone, with 10^5 of them.

    Arguments
    ---------
    vectors : dict
        ``{key: tensor [dim]}`` on the CPU, this process's share.

    Returns
    -------
    dict
        The union of the shares, in rank order, on the main process.
    """
    if not torch.distributed.is_initialized():
        return vectors
    share = (list(vectors), torch.stack(list(vectors.values())) if vectors else None)
    main = torch.distributed.get_rank() == 0
    shares = [None] * torch.distributed.get_world_size() if main else None
    torch.distributed.gather_object(share, shares, dst=0)
    return {key: vector for keys, stacked in (shares or []) if keys
            for key, vector in zip(keys, stacked)}


def leave_process_group():
    """Leave the DDP process group, if any: the last thing a script does, failed or not.

    Every process leaves the group before exiting, so that no process exits
    while gloo's threads of another are still at work. The Brain's DDP
    wrappers hold the group and outlive a script's ``main()`` in reference
    cycles: collected first, they let the group go here rather than in
    whatever garbage collection runs during interpreter shutdown, where
    gloo's threads were seen to abort a process ("terminate called without
    an active exception").
    """
    if torch.distributed.is_initialized():
        gc.collect()
        torch.distributed.destroy_process_group()
