"""The learned interpolator: RIFE's IFNet as ECCV2022-RIFE publishes its HD model.

Source: hzwer/ECCV2022-RIFE (MIT License, Copyright (c) Megvii Inc.): `train_log/IFNet_HDv3.py`
and `train_log/RIFE_HDv3.py` of the HD model its README links (the `flownet.pkl` those files
load), and `model/warplayer.py`. Written here from those files, layer for layer, so that
the published weights load into it by name: three IFBlocks refine a flow and a blending
mask coarse to fine (scales 4, 2, 1); each runs on both frame orders and the two answers
are averaged; the middle frame is the two input frames warped by the flow and mixed by
the mask. The distillation block (`block_tea`) is kept so the file loads whole; inference
never runs it. As `inference_video.py` does, frames are padded to a multiple of 32, and
4x and 8x are made by halving recursively (this IFNet makes midpoints only).

Weights are read with `torch.load(weights_only=True)` (tensors only, no code) or from
safetensors; a file that is not this network is refused before any frame is made.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidgen.errors import UsageError
from vidgen.media.post import weights

PAD = 32  # inference_video.py: sizes padded to a multiple of 32 at scale 1


def _conv(in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, bias=True), nn.PReLU(out_planes))


class IFBlock(nn.Module):
    def __init__(self, in_planes: int, c: int = 90):
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_planes, c // 2, 3, 2, 1), _conv(c // 2, c, 3, 2, 1))
        self.convblock0 = nn.Sequential(_conv(c, c), _conv(c, c))
        self.convblock1 = nn.Sequential(_conv(c, c), _conv(c, c))
        self.convblock2 = nn.Sequential(_conv(c, c), _conv(c, c))
        self.convblock3 = nn.Sequential(_conv(c, c), _conv(c, c))
        self.conv1 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.PReLU(c // 2), nn.ConvTranspose2d(c // 2, 4, 4, 2, 1))
        self.conv2 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.PReLU(c // 2), nn.ConvTranspose2d(c // 2, 1, 4, 2, 1))

    def forward(self, x: torch.Tensor, flow: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) * 1.0 / scale
        feat = self.conv0(torch.cat((x, flow), 1))
        feat = self.convblock0(feat) + feat
        feat = self.convblock1(feat) + feat
        feat = self.convblock2(feat) + feat
        feat = self.convblock3(feat) + feat
        flow = F.interpolate(self.conv1(feat), scale_factor=scale, mode="bilinear", align_corners=False) * scale
        mask = F.interpolate(self.conv2(feat), scale_factor=scale, mode="bilinear", align_corners=False)
        return flow, mask


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """model/warplayer.py: backward warping by a flow in pixels (border padding)."""
    batch, _, height, width = flow.shape
    horizontal = torch.linspace(-1.0, 1.0, width, device=flow.device).view(1, 1, 1, width).expand(batch, -1, height, -1)
    vertical = torch.linspace(-1.0, 1.0, height, device=flow.device).view(1, 1, height, 1).expand(batch, -1, -1, width)
    grid = torch.cat([horizontal, vertical], 1)
    flow = torch.cat([flow[:, 0:1] / ((image.shape[3] - 1.0) / 2.0), flow[:, 1:2] / ((image.shape[2] - 1.0) / 2.0)], 1)
    return F.grid_sample(image, (grid + flow).permute(0, 2, 3, 1), mode="bilinear", padding_mode="border", align_corners=True)


class IFNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.block0 = IFBlock(7 + 4)
        self.block1 = IFBlock(7 + 4)
        self.block2 = IFBlock(7 + 4)
        self.block_tea = IFBlock(10 + 4)  # training only (distillation); in the file

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, scales: tuple[float, ...] = (4, 2, 1)) -> torch.Tensor:
        """The frame halfway between img0 and img1 (N, 3, H, W in [0, 1])."""
        warped0, warped1 = img0, img1
        flow = img0.new_zeros(img0.shape[0], 4, *img0.shape[2:])
        mask = img0.new_zeros(img0.shape[0], 1, *img0.shape[2:])
        for block, scale in zip((self.block0, self.block1, self.block2), scales):
            f0, m0 = block(torch.cat((warped0, warped1, mask), 1), flow, scale)
            f1, m1 = block(torch.cat((warped1, warped0, -mask), 1), torch.cat((flow[:, 2:4], flow[:, :2]), 1), scale)
            flow = flow + (f0 + torch.cat((f1[:, 2:4], f1[:, :2]), 1)) / 2
            mask = mask + (m0 + (-m1)) / 2
            warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
        weight = torch.sigmoid(mask)
        return warped0 * weight + warped1 * (1 - weight)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (`module.` prefixes of a DataParallel save removed);
    a file that is not one: UsageError."""
    state = weights.read(path)
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise UsageError(f"{path} holds no state dict of tensors")
    return {key.removeprefix("module."): value for key, value in state.items()}


def weights_problem(path: Path) -> str | None:
    """Why `path` cannot be RIFE HD weights, or None (read, checked name by name and shape by shape)."""
    try:
        state = read_state_dict(path)
    except UsageError as error:
        return error.message.replace(f"{path} ", "").replace(f" {path}", "")
    expected = IFNet().state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        return f"not RIFE weights of ECCV2022-RIFE's HD model (flownet.pkl): {len(missing)} of its {len(expected)} tensors missing, e.g. {missing[0]}"
    wrong = [key for key in expected if state[key].shape != expected[key].shape]
    if wrong:
        return f"not RIFE weights of ECCV2022-RIFE's HD model: {wrong[0]} is {tuple(state[wrong[0]].shape)}, not {tuple(expected[wrong[0]].shape)}"
    return None


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load(path: Path) -> IFNet:
    problem = weights_problem(path)
    if problem:
        raise UsageError(f"--interpolate-model {path}: {problem}")
    net = IFNet()
    net.load_state_dict({key: value for key, value in read_state_dict(path).items() if key in net.state_dict()})
    return net.eval().to(device())


def interpolate(net: IFNet, frames: np.ndarray, factor: int, report: Callable[[int, int], None]) -> np.ndarray:
    """N x n frames (vidgen.media.post.plan's rule): between each pair, N - 1 frames by halving."""
    if factor < 2 or factor & (factor - 1):  # a power of two; plan.plan_problem refuses others before any work
        raise UsageError(f"RIFE makes midpoints: --interpolate 2, 4 or 8 with --interpolate-model, not {factor}")
    count, height, width = frames.shape[:3]
    pad_h, pad_w = -height % PAD, -width % PAD
    on = next(net.parameters()).device
    out = np.repeat(frames, factor, axis=0)  # the input frames in place, the last one held

    def tensor(frame: np.ndarray) -> torch.Tensor:
        image = torch.from_numpy(np.ascontiguousarray(frame)).to(on).permute(2, 0, 1)[None].float() / 255.0
        return F.pad(image, (0, pad_w, 0, pad_h))

    def between(first: torch.Tensor, last: torch.Tensor, parts: int) -> list[torch.Tensor]:
        """The parts - 1 frames evenly between first and last (parts a power of two)."""
        if parts == 1:
            return []
        middle = net(first, last)
        return between(first, middle, parts // 2) + [middle] + between(middle, last, parts // 2)

    with torch.inference_mode():
        following = tensor(frames[0])
        for index in range(count - 1):
            current, following = following, tensor(frames[index + 1])
            for offset, made in enumerate(between(current, following, factor), start=1):
                image = (made[0, :, :height, :width].clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0)
                out[index * factor + offset] = image.cpu().numpy()
            report(index + 1, count - 1)
    return out
