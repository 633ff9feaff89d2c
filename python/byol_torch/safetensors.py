"""The safetensors format, read and written without the `safetensors` package: an 8-byte little-endian header
length, a JSON header (dtype, shape, byte range of each tensor; `__metadata__` strings), then the raw data.

The reader trusts nothing: the header length, every shape and every byte range are checked against the file before
anything is allocated. The writer writes a temporary file beside the target and renames it (atomic).
"""
import json
import os
import struct

import numpy as np
import torch

_DTYPES = {'F32': ('<f4', 4), 'F64': ('<f8', 8), 'F16': ('<f2', 2), 'BF16': (None, 2), 'I64': ('<i8', 8), 'I32': ('<i4', 4)}
_MAX_HEADER = 100 * 2**20


class SafetensorsError(ValueError):
    """A file that is not a readable safetensors file; the message names it."""


def read(path):
    """(tensors, metadata): a dict name → float32 (or integer) CPU tensor, in file order, and the metadata strings."""
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsError(f'{path}: too short for a safetensors file ({size} bytes)')
        n = struct.unpack('<Q', head)[0]
        if n > min(size - 8, _MAX_HEADER):
            raise SafetensorsError(f'{path}: a header of {n} bytes in a file of {size} (not safetensors, or truncated)')
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise SafetensorsError(f'{path}: its header is not JSON ({e})') from None
        if not isinstance(header, dict):
            raise SafetensorsError(f'{path}: its header is not a JSON object')
        body = size - 8 - n
        meta = header.pop('__metadata__', {}) or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise SafetensorsError(f'{path}: __metadata__ must map names to strings')
        tensors = {}
        for name, entry in header.items():
            if not isinstance(entry, dict):
                raise SafetensorsError(f'{path}: entry {name!r} is not an object')
            dtype, shape, offsets = entry.get('dtype'), entry.get('shape'), entry.get('data_offsets')
            if dtype not in _DTYPES:
                raise SafetensorsError(f'{path}: {name} has dtype {dtype!r}; this reader takes {", ".join(_DTYPES)}')
            if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
                raise SafetensorsError(f'{path}: {name} has shape {shape!r}; expected a list of non-negative integers')
            if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
                raise SafetensorsError(f'{path}: {name} has data_offsets {offsets!r}; expected [begin, end]')
            begin, end = offsets
            count = 1
            for d in shape:
                count *= d
            width = _DTYPES[dtype][1]
            if not (0 <= begin <= end <= body) or end - begin != count * width:
                raise SafetensorsError(f'{path}: {name} ({dtype} {shape}) spans bytes {begin}..{end} of {body} (truncated or damaged)')
            f.seek(8 + n + begin)
            raw = f.read(end - begin)
            if dtype == 'BF16':
                bits = np.frombuffer(raw, dtype='<u2').astype(np.uint32) << 16
                arr = bits.view(np.float32)
            else:
                arr = np.frombuffer(raw, dtype=_DTYPES[dtype][0])
                if arr.dtype.kind == 'f' and arr.dtype != np.float32:
                    arr = arr.astype(np.float32)
            tensors[name] = torch.from_numpy(arr.copy()).reshape(shape)
    return tensors, dict(meta)


def encode(tensors, metadata=None):
    """The bytes of a safetensors file of float32 tensors (a dict name → tensor, written in its order)."""
    header = {}
    if metadata:
        header['__metadata__'] = {k: str(v) for k, v in metadata.items()}
    chunks = []
    offset = 0
    for name, t in tensors.items():
        a = t.detach().to('cpu', torch.float32).contiguous().numpy().astype('<f4', copy=False)
        header[name] = {'dtype': 'F32', 'shape': list(a.shape), 'data_offsets': [offset, offset + a.nbytes]}
        chunks.append(a.tobytes())
        offset += a.nbytes
    text = json.dumps(header, separators=(',', ':')).encode('utf8')
    text += b' ' * ((8 - (8 + len(text)) % 8) % 8)  # data 8-byte aligned, as the format pads
    return struct.pack('<Q', len(text)) + text + b''.join(chunks)


def write_atomic(path, data):
    """Writes bytes to `path` through a temporary file beside it and a rename: a crash leaves the old file whole."""
    tmp = f'{path}.{os.getpid()}.tmp'
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write(path, tensors, metadata=None):
    write_atomic(path, encode(tensors, metadata))
