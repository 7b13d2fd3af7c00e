"""DistributedDataParallel on the CPU, and the module inside a wrapper."""

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
