"""The 15 CIFAR-10-C corruptions (Hendrycks & Dietterich 2019) at 5 severities, in NumPy/SciPy/PIL.

Parameters are those of the CIFAR-10-C generator (``make_cifar_c.py``), written for 32×32
images; they are applied at whatever resolution the images have. Where the generator used
tools that are not dependencies here, the same operation is written out (README, "Out of
distribution"): ImageMagick's motion blur is a one-sided Gaussian line kernel, the frost
photographs are replaced by procedural ice textures, skimage's HSV round trip for brightness
by its closed form, and the elastic transform's two interpolations (affine warp, then
displacement) are composed into one.

Every function takes a float array N×H×W×3 in [0, 1] and a NumPy generator and returns a new
array of the same shape in [0, 1].
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

SEVERITIES = (1, 2, 3, 4, 5)
# The standard 15, in the order of the CIFAR-10-C paper's tables.
CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)


def corrupt(images: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Return the images with one corruption at one severity.

    Args:
        images: float array N×H×W×3 in [0, 1] (square images).
        name: one of :data:`CORRUPTIONS`.
        severity: 1 (mildest) to 5.
        rng: the random generator (noise, textures, angles).
    """
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1 to 5, got {severity}")
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be N×H×W×3 and square, got shape {images.shape}")
    out = _FUNCTIONS[name](images, severity - 1, rng)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# --- noise -------------------------------------------------------------------------------


def _gaussian_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.04, 0.06, 0.08, 0.09, 0.10][s]
    return x + rng.normal(size=x.shape, scale=c)


def _shot_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = [500, 250, 100, 75, 50][s]
    return rng.poisson(x * c) / c


def _impulse_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    # skimage's salt & pepper: a fraction c of all values, half set to 1, half to 0.
    c = [0.01, 0.02, 0.03, 0.05, 0.07][s]
    hit = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    return np.where(hit, salt.astype(np.float32), x)


# --- blur --------------------------------------------------------------------------------


def _gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    # OpenCV's GaussianBlur kernel of a given size.
    offsets = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    return np.outer(kernel, kernel)


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    extent = np.arange(-8, 9) if radius <= 8 else np.arange(-math.ceil(radius), math.ceil(radius) + 1)
    gx, gy = np.meshgrid(extent, extent)
    disk = ((gx**2 + gy**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    return ndimage.correlate(disk, _gaussian_kernel(3 if radius <= 8 else 5, alias_blur), mode="mirror")


def _filter_channels(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    # cv2.filter2D: correlation with reflect-101 borders (SciPy's "mirror").
    return ndimage.correlate(x, kernel[None, :, :, None], mode="mirror")


def _defocus_blur(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    radius, alias = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][s]
    return _filter_channels(x, _disk(radius, alias))


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    # skimage.filters.gaussian on each image's channels: truncate 4, "nearest" borders.
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="nearest", truncate=4.0)


def _glass_blur(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    sigma, delta, iterations = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][s]
    x = np.floor(_gaussian(x, sigma) * 255) / 255  # the generator rounds to uint8 here
    n, size = len(x), x.shape[1]
    rows = np.arange(n)
    # Local pixel swaps, scanned as in the generator; each image draws its own offsets.
    for _ in range(iterations):
        for h in range(size - delta, delta, -1):
            for w in range(size - delta, delta, -1):
                dx, dy = rng.integers(-delta, delta, size=(2, n))
                hp, wp = h + dy, w + dx
                here, there = x[rows, h, w].copy(), x[rows, hp, wp].copy()
                x[rows, h, w], x[rows, hp, wp] = there, here
    return _gaussian(x, sigma)


def _shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    # Shift with edge replication, as ImageMagick's virtual pixels.
    size_y, size_x = image.shape[:2]
    ys = np.clip(np.arange(size_y) - dy, 0, size_y - 1)
    xs = np.clip(np.arange(size_x) - dx, 0, size_x - 1)
    return image[ys][:, xs]


def _motion(image: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's motion blur: a one-sided Gaussian-weighted line of 2·radius + 1 taps."""
    width = 2 * radius + 1
    kernel = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    kernel /= kernel.sum()
    direction = (math.sin(math.radians(angle)), math.cos(math.radians(angle)))
    out = np.zeros_like(image)
    for i in range(width):
        dy = -math.ceil(i * direction[0] - 0.5)
        dx = -math.ceil(i * direction[1] - 0.5)
        if abs(dy) >= image.shape[0] or abs(dx) >= image.shape[1]:
            break
        out += kernel[i] * _shift(image, dx, dy)
    return out


def _motion_blur(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    radius, sigma = [(10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)][s]
    angles = rng.uniform(-45, 45, size=len(x))
    return np.stack([_motion(image, radius, sigma, angle) for image, angle in zip(x, angles)])


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom the centre of each image by ``factor`` and crop back to the original size."""
    size = x.shape[1]
    crop = math.ceil(size / factor)
    top = (size - crop) // 2
    zoomed = ndimage.zoom(x[:, top : top + crop, top : top + crop], (1, factor, factor, 1), order=1)
    trim = (zoomed.shape[1] - size) // 2
    return zoomed[:, trim : trim + size, trim : trim + size]


def _zoom_blur(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    stop = [1.06, 1.11, 1.16, 1.21, 1.26][s]
    factors = np.arange(1, stop, 0.01)
    out = np.zeros_like(x)
    for factor in factors:
        out += _clipped_zoom(x, factor)
    return (x + out) / (len(factors) + 1)


# --- weather -----------------------------------------------------------------------------


def _gray(x: np.ndarray) -> np.ndarray:
    return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])[..., None]


def _snow(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    loc, scale, zoom, threshold, radius, sigma, blend = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ][s]
    n, size = len(x), x.shape[1]
    layer = rng.normal(size=(n, size, size, 1), loc=loc, scale=scale)
    layer = _clipped_zoom(layer, zoom)
    layer[layer < threshold] = 0
    layer = np.round(np.clip(layer, 0, 1) * 255) / 255  # the generator keeps it as 8-bit gray
    angles = rng.uniform(-135, -45, size=n)
    layer = np.stack([_motion(image, radius, sigma, angle) for image, angle in zip(layer, angles)])
    x = blend * x + (1 - blend) * np.maximum(x, _gray(x) * 1.5 + 0.5)
    return x + layer + np.rot90(layer, k=2, axes=(1, 2))


def _plasma(n: int, size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square plasma fractals of side ``size`` (a power of two), scaled to [0, 1]."""
    maps = np.zeros((n, size, size))
    # As in the generator, the noise is uniform(-wibble, wibble) times wibble.
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        # Diamond: each square's centre is the mean of its corners plus noise.
        corners = maps[:, 0::step, 0::step]
        mean = (corners + np.roll(corners, -1, 1) + np.roll(corners, -1, 2)
                + np.roll(np.roll(corners, -1, 1), -1, 2)) / 4
        maps[:, half::step, half::step] = mean + wibble * rng.uniform(-wibble, wibble, mean.shape)
        # Square: each edge midpoint is the mean of its four diamond neighbours plus noise.
        for rows, cols in ((slice(0, None, step), slice(half, None, step)),
                           (slice(half, None, step), slice(0, None, step))):
            rr = np.arange(size)[rows][:, None]
            cc = np.arange(size)[cols][None, :]
            neighbours = (maps[:, (rr - half) % size, cc] + maps[:, (rr + half) % size, cc]
                          + maps[:, rr, (cc - half) % size] + maps[:, rr, (cc + half) % size]) / 4
            maps[:, rr, cc] = neighbours + wibble * rng.uniform(-wibble, wibble, neighbours.shape)
        step, wibble = half, wibble / decay
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    return (maps - low) / np.where(high > low, high - low, 1.0)


def _fractal(x: np.ndarray, decay: float, rng: np.random.Generator) -> np.ndarray:
    size = x.shape[1]
    side = 1 << max(5, (size - 1).bit_length())  # CIFAR-10-C: 32
    return _plasma(len(x), side, decay, rng)[:, :size, :size, None]


def _frost(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    keep, amount = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][s]
    # Procedural stand-in for the frost photographs: fine fractal ice, sharpened into
    # crystal-like ridges, bluish white like the photographs.
    texture = _fractal(x, 1.6, rng)
    ridges = 1 - np.abs(2 * texture - 1)
    ice = 0.45 + 0.55 * np.clip(0.4 * texture + 0.8 * ridges**3, 0, 1)
    tint = np.array([0.85, 0.92, 1.0], dtype=np.float32)
    return keep * x + amount * ice * tint


def _fog(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    amount, decay = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][s]
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    x = x + amount * _fractal(x, decay, rng)
    return x * peak / (peak + amount)


# --- digital -----------------------------------------------------------------------------


def _brightness(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    # Adding c to HSV's V with H and S kept scales RGB by V'/V (V = max channel).
    c = [0.05, 0.1, 0.15, 0.2, 0.3][s]
    value = x.max(axis=3, keepdims=True)
    brighter = np.clip(value + c, 0, 1)
    return np.where(value > 0, x * brighter / np.where(value > 0, value, 1), brighter)


def _contrast(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.75, 0.5, 0.4, 0.3, 0.15][s]
    means = x.mean(axis=(1, 2), keepdims=True)
    return (x - means) * c + means


def _elastic_transform(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    size = x.shape[1]
    alpha, sigma, affine = (size * f for f in [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),
                                               (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)][s])
    centre, square = size // 2, size // 3
    source = np.array([[centre + square, centre + square],
                       [centre + square, centre - square],
                       [centre - square, centre - square]], dtype=np.float64)
    ys, xs = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    out = np.empty_like(x)
    for i, image in enumerate(x):
        target = source + rng.uniform(-affine, affine, size=source.shape)
        # The affine map taking the target points back to the source ones (cv2.warpAffine
        # samples the source at the inverse map); points are (x, y).
        solve = np.linalg.lstsq(np.c_[target, np.ones(3)], source, rcond=None)[0]
        dx, dy = (ndimage.gaussian_filter(rng.uniform(-1, 1, size=(size, size)), sigma, mode="reflect",
                                          truncate=3) * alpha for _ in range(2))
        px, py = xs + dx, ys + dy
        src_x = solve[0, 0] * px + solve[1, 0] * py + solve[2, 0]
        src_y = solve[0, 1] * px + solve[1, 1] * py + solve[2, 1]
        for channel in range(3):
            out[i, :, :, channel] = ndimage.map_coordinates(
                image[:, :, channel], [src_y, src_x], order=1, mode="mirror"
            )
    return out


def _pil_each(x: np.ndarray, operation: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    as_bytes = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    return np.stack([np.asarray(operation(Image.fromarray(image)), dtype=np.float32) / 255
                     for image in as_bytes])


def _pixelate(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.95, 0.9, 0.85, 0.75, 0.65][s]
    size = x.shape[1]
    small = max(1, int(size * c))
    return _pil_each(x, lambda image: image.resize((small, small), Image.BOX).resize((size, size), Image.BOX))


def _jpeg_compression(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    quality = [80, 65, 58, 50, 40][s]

    def compress(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return Image.open(buffer)

    return _pil_each(x, compress)


_FUNCTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "elastic_transform": _elastic_transform,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
}
