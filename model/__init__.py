"""One Fashion-MNIST CNN: data, network, augmentation, training. No Ray here, on purpose.

Names load lazily: `import model.config` (as the result tables do) does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PRESETS": "model.config", "Config": "model.config",
    "build": "model.net", "count_parameters": "model.net", "to_input": "model.net",
    "Augmentation": "model.augment", "augment": "model.augment",
    "CLASSES": "model.data", "DataError": "model.data", "Split": "model.data",
    # Not `train`: that name is the command-line module model.train (python -m model.train).
    "EpochMetrics": "model.trainer", "Trainer": "model.trainer",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'model' has no attribute {name!r}; it exports {', '.join(_EXPORTS)}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
