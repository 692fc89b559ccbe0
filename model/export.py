"""A trained network as files: a PyTorch checkpoint that rebuilds from its own config, and ONNX.

model.pt = {"format": 1, "config": Config.to_flat(), "state_dict": {...}, "metadata": {...}},
plain types and tensors only, so `torch.load(path, weights_only=True)` reads it (no pickled
classes, no code runs on load). The network is rebuilt by `model.net.build` from the config alone.

model.onnx takes float32 pixels in [0, 1], shape (batch, 1, 28, 28), as input "images" (the
batch dimension is dynamic), and returns "logits" (batch, 10). Normalization is part of the
network, so nothing has to be done to the pixels beyond dividing by 255.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.config import Config
from model.net import build, to_input

FORMAT = 1
INPUT_NAME, OUTPUT_NAME, BATCH_DIM = "images", "logits", "batch"


def _atomic_target(path: Path) -> Path:
    """A temporary name next to `path` (same filesystem, so os.replace is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a string")
            _check_plain(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        raise TypeError(f"{where}: {type(value).__name__} is not a plain value (str, int, float, bool, None, list, dict)")


def save_model(
    path: str | os.PathLike, cfg: Config, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write model.pt atomically: the config, the weights (moved to the CPU) and plain metadata."""
    path = Path(path)
    meta = dict(metadata or {})
    _check_plain(meta, "metadata")
    weights = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    # Refuse a state_dict that does not fit the config now, not when someone loads the file.
    build(cfg).load_state_dict(weights)
    payload = {"format": FORMAT, "config": cfg.to_flat(), "state_dict": weights, "metadata": meta}
    tmp = _atomic_target(path)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw payload of model.pt, read with weights_only=True."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "config" not in payload:
        raise ValueError(f"{path}: not a model checkpoint of format {FORMAT} (expected keys config, state_dict)")
    return payload


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Config, nn.Module]:
    """(config, network in eval mode on `device`) rebuilt from model.pt's config alone."""
    payload = load_checkpoint(path)
    cfg = Config.from_flat(payload["config"])
    net = build(cfg)
    net.load_state_dict(payload["state_dict"])
    return cfg, net.to(device).eval()


def export_onnx(net: nn.Module, path: str | os.PathLike, opset: int | None = None) -> Path:
    """Write `net` (a copy in eval mode on the CPU) as ONNX with a dynamic batch; atomic."""
    import copy

    path = Path(path)
    exported = copy.deepcopy(net).cpu().eval().to(memory_format=torch.contiguous_format)
    example = torch.rand(4, 1, 28, 28)  # not 1: a batch of one could be specialised away
    tmp = _atomic_target(path)
    try:
        torch.onnx.export(
            exported,
            (example,),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim(BATCH_DIM, min=1)},),
            opset_version=opset,
            dynamo=True,
            external_data=False,  # one self-contained file
            verbose=False,
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def onnx_logits(path: str | os.PathLike, images: np.ndarray, batch: int = 2048) -> np.ndarray:
    """ONNX Runtime (CPU) logits float32 (N, 10) for uint8 (N, 28, 28) or float (N, 1, 28, 28) in [0, 1]."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.asarray(images)
    if x.dtype == np.uint8:
        x = x.astype(np.float32)[:, None] / 255.0
    x = x.astype(np.float32, copy=False)
    out = [session.run([OUTPUT_NAME], {INPUT_NAME: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.empty((0, 10), np.float32)


def torch_logits(net: nn.Module, images: np.ndarray, batch: int = 2048) -> np.ndarray:
    """PyTorch (CPU, eval mode, float32) logits (N, 10) for uint8 (N, 28, 28) images."""
    net = net.eval()
    device = next(net.parameters()).device
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch])).to(device)
            out.append(net(to_input(x)).float().cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, 10), np.float32)
