"""Real input data for a graph input: samples read from ``.npy``, ``.npz`` or a folder of ``.npy`` files.

A spec names them per input (``inputs: {x: {data: samples.npy}}``). The samples lie along the first axis: each is
one sample of the input (the call's shape without its batch dimension), and a call of batch ``b`` stacks ``b`` of
them. The cell's input pool takes consecutive samples, cycling through the data, from a start the seed chooses;
never-seen inputs of the audits (other seeds) start elsewhere, so they are new samples when the data holds more
than the pool. The record keeps the SHA-256 of what was read (``workload.inputs[].data_sha256``).

* ``.npy``: one array, ``[samples, ...]``;
* ``.npz``: the array named like the input;
* a folder: every ``*.npy`` in it, in name order, one sample each (a leading dimension of 1 is dropped).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchkit.errors import WorkloadError
from benchkit.workloads.model import file_sha256

MAX_DATA_BYTES = 4 << 30
"""Largest data read for one input (4 GiB): the pool uses a few of its samples; a bigger file is a mistake."""


@dataclass(frozen=True, eq=False)
class InputData:
    """The samples of one input and where they came from."""

    samples: np.ndarray  # [samples, *sample shape]
    sha256: str  # of the file's bytes; for a folder, of each file's name and SHA-256 in order
    source: str  # the file or folder name as the record shows it

    def take(self, batch: int, call: int, seed: int) -> np.ndarray:
        """The samples of pool call ``call`` for a call of ``batch``: consecutive, cycling, from the seed's start."""
        n = len(self.samples)
        start = int(np.random.default_rng([int(seed), 0xDA7A]).integers(n))
        idx = (start + call * batch + np.arange(batch)) % n
        return np.ascontiguousarray(self.samples[idx])


def _load_npy(path: Path, where: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)  # data, never objects: a pickle could run code
    except (OSError, ValueError, EOFError) as e:
        raise WorkloadError(f"{where}: {path} is not a readable .npy array ({e})") from None


def load_input_data(path: Path, name: str, dtype: np.dtype, where: str) -> InputData:
    """Read the samples of input ``name`` from ``path``; errors name ``where`` (the spec field) and the file."""
    if not path.exists():
        raise WorkloadError(f"{where}: data not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".npy" and p.is_file())
        if not files:
            raise WorkloadError(f"{where}: folder {path} holds no .npy files (one sample per file)")
        if sum(p.stat().st_size for p in files) > MAX_DATA_BYTES:
            raise WorkloadError(f"{where}: folder {path} holds more than {MAX_DATA_BYTES >> 30} GiB")
        arrays, h = [], hashlib.sha256()
        for p in files:
            arrays.append(_load_npy(p, where))
            h.update(f"{p.name}  {file_sha256(p)}\n".encode())
        if len({a.shape for a in arrays}) > 1:
            raise WorkloadError(f"{where}: the .npy files in {path} have different shapes: "
                                f"{sorted(map(list, {a.shape for a in arrays}))[:3]}")
        samples, digest, source = np.stack(arrays), h.hexdigest(), path.name + "/"
    elif path.suffix == ".npz":
        if path.stat().st_size > MAX_DATA_BYTES:
            raise WorkloadError(f"{where}: {path} is larger than {MAX_DATA_BYTES >> 30} GiB")
        try:
            with np.load(path, allow_pickle=False) as z:
                if name not in z.files:
                    raise WorkloadError(f"{where}: {path} has no array named {name!r} (the input's name); it holds "
                                        f"{', '.join(z.files) or 'nothing'}")
                samples = z[name]
        except (OSError, ValueError, EOFError) as e:
            raise WorkloadError(f"{where}: {path} is not a readable .npz archive ({e})") from None
        digest, source = file_sha256(path), f"{path.name}:{name}"
    elif path.suffix == ".npy":
        if path.stat().st_size > MAX_DATA_BYTES:
            raise WorkloadError(f"{where}: {path} is larger than {MAX_DATA_BYTES >> 30} GiB")
        samples, digest, source = _load_npy(path, where), file_sha256(path), path.name
    else:
        raise WorkloadError(f"{where}: {path}: expected a .npy file, a .npz archive or a folder of .npy files")
    if samples.ndim == 0 or samples.shape[0] == 0:
        raise WorkloadError(f"{where}: {path} holds no samples (shape {list(samples.shape)}); samples lie along "
                            "the first axis")
    if samples.dtype.hasobject or samples.dtype.kind not in "biuf":
        raise WorkloadError(f"{where}: {path} holds {samples.dtype} values; expected numbers for a {dtype} input")
    if not np.can_cast(samples.dtype, dtype, casting="same_kind"):
        raise WorkloadError(f"{where}: {path} holds {samples.dtype} values, which do not convert to the input's "
                            f"{dtype} without changing kind (e.g. floats into an integer input)")
    return InputData(samples.astype(dtype, copy=False), digest, source)


def check_sample_shape(data: InputData, call_shape: tuple[int, ...], where: str) -> InputData:
    """The data with each sample of the call's shape without its batch dimension (samples saved with a batch
    dimension of 1 of their own, ``[samples, 1, ...]``, are taken as ``[samples, ...]``)."""
    want = tuple(call_shape[1:])
    got = tuple(data.samples.shape[1:])
    if got == want:
        return data
    if got[:1] == (1,) and got[1:] == want:
        return InputData(data.samples.reshape((-1, *want)), data.sha256, data.source)
    raise WorkloadError(f"{where}: samples of {data.source} have shape {list(got)}; the input takes "
                        f"{list(call_shape)} per call, so each sample must be {list(want)} (samples along the "
                        "first axis)")


__all__ = ["InputData", "load_input_data", "check_sample_shape", "MAX_DATA_BYTES"]
