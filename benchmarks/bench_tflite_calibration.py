"""The int8 TFLite file's activation ranges: min/max against the converter's, in TFLM.

For each chosen (trained) network folder, converts the network with
:func:`optnas.networks.tflite.convert_int8` two ways: every range the calibration min/max
(``minmax``), and the converter's own ranges (``floor``: h-swish inputs start at -3 at the
lowest, where h-swish is 0). Settings are judged on training images that did not calibrate
(mean squared logit error against PyTorch and argmax disagreements); the test split's top1 is
printed for the report only.

    python benchmarks/bench_tflite_calibration.py FOLDER [FOLDER ...] [--calib-images 256] [--seed 0]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from optnas.data.datasets import load_dataset
from optnas.networks import tflite
from optnas.networks.quantization import calibration_indices
from optnas.networks.standalone import load_chosen_network
from optnas.networks.tflm import TFLMRunner


@contextmanager
def variant(name: str) -> Iterator[None]:
    """Convert with the ranges of ``name`` (see the module's doc) while inside."""
    floor = tflite._HSWISH_FLOOR
    if name == "minmax":
        tflite._HSWISH_FLOOR = -np.inf
    try:
        yield
    finally:
        tflite._HSWISH_FLOOR = floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--calib-images", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = load_dataset("digits")
    drawn = calibration_indices(len(splits.train), args.calib_images, args.seed)
    held_out = np.setdiff1d(np.arange(len(splits.train)), drawn)
    for folder in args.folders:
        network, subnet, _ = load_chosen_network(folder)
        network.eval()
        resolution = int(subnet["r"])
        calibration, _ = splits.train.subset(drawn).tensors(resolution)
        train, _ = splits.train.subset(held_out).tensors(resolution)
        test, labels = splits.test.tensors(resolution)
        with torch.no_grad():
            train_float, test_float = network(train).numpy(), network(test).numpy()
        top1_float = 100.0 * float((test_float.argmax(1) == labels.numpy()).mean())
        print(f"{folder} (w={subnet['w']}, r={resolution}): {len(held_out)} held-out training images, "
              f"test top1 float {top1_float:.2f} %")
        for name in ("minmax", "floor"):
            with variant(name):
                model = tflite.convert_int8(network, calibration)
            with TFLMRunner(model.flatbuffer, processes=2) as runner:
                train_int8, test_int8 = runner(train.numpy()), runner(test.numpy())
            top1 = 100.0 * float((test_int8.argmax(1) == labels.numpy()).mean())
            print(f"  {name:6s} held-out train: logit mse {float(((train_int8 - train_float) ** 2).mean()):.5f}, "
                  f"{int((train_int8.argmax(1) != train_float.argmax(1)).sum())} disagree | test: int8 "
                  f"{top1:.2f} %, drop {top1_float - top1:.2f}, "
                  f"{int((test_int8.argmax(1) != test_float.argmax(1)).sum())} disagree", flush=True)


if __name__ == "__main__":
    main()
