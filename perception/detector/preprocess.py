"""Preprocessing that matches each model family exactly, and the inverse mapping of boxes.

- Ultralytics (YOLOv5/v8/11 exports): letterbox centred, padded with 114, RGB scaled to 0-1; the
  padding split and rounding follow ultralytics' LetterBox (pad - 0.1 / + 0.1 rounding).
- YOLOX: padded at the bottom and right with 114, BGR, 0-255 (YOLOX's `preproc`).
- RT-DETR (Ultralytics): resized to the input without keeping the aspect ratio (its predictor's
  `scale_fill`), RGB scaled to 0-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the network input: scaled (alike both ways unless stretched), then
    offset by (left, top)."""

    scale_x: float
    scale_y: float
    left: int
    top: int
    width: int  # of the original image
    height: int

    def to_image(self, xyxy: np.ndarray) -> np.ndarray:
        """Boxes from network-input pixels back to original-image pixels, clipped to the image."""
        scale = [self.scale_x, self.scale_y, self.scale_x, self.scale_y]
        boxes = (np.asarray(xyxy, np.float32) - [self.left, self.top, self.left, self.top]) / scale
        np.clip(boxes[:, 0::2], 0, self.width, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, self.height, out=boxes[:, 1::2])
        return boxes


def letterbox(
    image: np.ndarray,
    size: tuple[int, int],
    *,
    centre: bool,
    bgr: bool,
    unit_scale: bool,
    stretch: bool = False,
) -> tuple[np.ndarray, Letterbox]:
    """An RGB uint8 image (H x W x 3) as a 1 x 3 x h x w float32 tensor for a network input of `size`
    (h, w), and the transform that maps boxes back."""
    canvas, transform = fit(image, size, centre=centre, stretch=stretch)
    return to_tensor(canvas, bgr=bgr, unit_scale=unit_scale), transform


def fit(
    image: np.ndarray, size: tuple[int, int], *, centre: bool, stretch: bool = False
) -> tuple[np.ndarray, Letterbox]:
    """An RGB uint8 image (H x W x 3) scaled and padded to `size` (h, w), or with `stretch` scaled to it
    alone, still H x W x 3 uint8 (the image itself when it has that size already), and the transform
    that maps boxes back."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, found shape {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    out_h, out_w = size
    if stretch:
        resized = (
            image
            if (out_h, out_w) == (height, width)
            else cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        )
        return resized, Letterbox(out_w / width, out_h / height, 0, 0, width, height)
    scale = min(out_h / height, out_w / width)
    if centre:  # at least a pixel each way: a 1 x 2000 strip must not vanish
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        dw, dh = (out_w - new_w) / 2, (out_h - new_h) / 2
        left, top = round(dw - 0.1), round(dh - 0.1)
    else:
        new_w, new_h = max(1, int(width * scale)), max(1, int(height * scale))
        left = top = 0
    resized = (
        image
        if (new_w, new_h) == (width, height)
        else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    )
    if (new_w, new_h) == (out_w, out_h):
        canvas = resized
    else:
        canvas = np.full((out_h, out_w, 3), PAD_VALUE, np.uint8)
        canvas[top : top + new_h, left : left + new_w] = resized
    return canvas, Letterbox(scale, scale, left, top, width, height)


def to_tensor(image: np.ndarray, *, bgr: bool, unit_scale: bool) -> np.ndarray:
    """H x W x 3 uint8 as 1 x 3 x H x W float32, channels optionally reversed and scaled to 0-1.

    One strided numpy pass, 0.55-1 ms for 640 x 480 on a 2-core AVX2 CPU. cv2.dnn.blobFromImage gives
    the same tensor but took 8 ms inside the detector node there (0.7 ms in some other processes)."""
    channels = image.transpose(2, 0, 1)
    if bgr:
        channels = channels[::-1]
    tensor = np.empty((1, *channels.shape), np.float32)
    if unit_scale:
        np.multiply(channels, np.float32(1 / 255), out=tensor[0], casting="unsafe")
    else:
        np.copyto(tensor[0], channels, casting="unsafe")
    return tensor
