"""Networks with random weights for loader and metric tests (no weights can be downloaded here)."""

from __future__ import annotations

import torch
from torch import nn

from filters.syncnet import SyncNetModel


def kaiming_init(net: nn.Module) -> nn.Module:
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return net


def random_syncnet(seed):
    """A random SyncNetModel in eval mode whose batch-norm statistics are random too (so loading them counts)."""
    torch.manual_seed(seed)
    model = SyncNetModel()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()
