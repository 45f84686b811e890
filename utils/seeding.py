"""Same config and seed give the same numbers on the same machine."""
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        # deterministic mode also fills every new uninitialised tensor with NaN, a debugging aid
        # costing a fill per torch.empty; every kernel we use writes its whole output, so the
        # numbers do not depend on it (torch documents this switch for that case)
        torch.utils.deterministic.fill_uninitialized_memory = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def prepare_device(n_gpu_use: int) -> tuple[torch.device, list[int]]:
    """The device to train on: CUDA when asked for and present, else the CPU."""
    n_gpu = torch.cuda.device_count()
    if n_gpu_use > 0 and n_gpu == 0:
        print("Warning: n_gpu > 0 in the config but no GPU is available; training on the CPU.")
        n_gpu_use = 0
    n_gpu_use = min(n_gpu_use, n_gpu)
    device = torch.device("cuda:0" if n_gpu_use > 0 else "cpu")
    return device, list(range(n_gpu_use))
