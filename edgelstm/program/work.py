"""Work buffers: the one uint8 buffer a kernel call works in (int32 header, lengths, state, sequence ping-pong
buffers, cell scratch, step output; see kernels/program.py), sized for a batch and a chunk of frames."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .builder import align
from .layout import IXW, PAD, WORK_HEADER_BYTES
from .records import Prepared

WORK_LIMIT_BYTES = 2**31 - 2**20


# Frames per chunk: run/step_many work through T in chunks whose two ping-pong sequence buffers together take
# at most CHUNK_BYTES, so working memory does not grow with T (bit-identical: the state carries across chunks).
CHUNK_BYTES = 256 * 1024


def chunk_frames(prep: Prepared, batch: int, frames: int) -> int:
    """Frames per chunk for ``batch`` sequences of ``frames`` frames (all of them for a backward direction)."""
    if prep.whole_sequence:
        return frames
    return max(1, min(frames, CHUNK_BYTES // (2 * prep.elem * batch * prep.width)))


def make_work(prep: Prepared, batch: int, frames: int) -> np.ndarray:
    """uint8 work buffer with its int32 header (see kernels/program.py), for ``batch`` sequences and chunks
    of ``frames`` frames."""
    e = prep.elem
    off = WORK_HEADER_BYTES
    lengths_off = off
    off = align(off + 4 * batch)
    ix_off = off
    off = align(off + 4 * IXW * batch)
    state_off = off
    off = align(off + e * (prep.n_state * batch + PAD))  # PAD slack: dot loops read padded vectors
    seq_n = batch * frames * prep.width + PAD
    seq_off = off
    off = align(off + 2 * e * seq_n)
    scr = prep.scratch * batch              # per sequence: gates, acc, aux of one cell call
    gates_off = off
    off = align(off + 4 * scr)
    acc_off = off
    off = align(off + 4 * scr)
    aux_off = off
    off = align(off + 4 * scr)
    y_off = off
    off = align(off + 4 * batch * prep.out_size)
    if off >= WORK_LIMIT_BYTES:  # the kernels address the work buffer with int32 offsets
        raise InputError(f"this call needs a {off / 2**20:.0f} MiB work buffer ({batch} sequence(s) x {frames} "
                         f"frames), over the {WORK_LIMIT_BYTES // 2**20} MiB limit of one call: split the "
                         f"batch or the sequence into smaller calls (a stream keeps its state between them)")
    work = np.zeros(off, dtype=np.uint8)
    work[:52].view(np.int32)[:] = [lengths_off, state_off, prep.n_state, seq_off, seq_n, gates_off, acc_off,
                                   aux_off, prep.scratch, ix_off, frames, batch, y_off]
    return work


def work_views(prep: Prepared, work: np.ndarray, batch: int):
    hdr = work[:36].view(np.int32)
    lengths = work[hdr[0]:hdr[0] + 4 * batch].view(np.int32)
    dt = np.int16 if prep.quantized else np.float32
    state = work[hdr[1]:hdr[1] + prep.elem * prep.n_state * batch].view(dt).reshape(batch, prep.n_state)
    return lengths, state
