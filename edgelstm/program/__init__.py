"""The program compiler: IR + QuantParams -> the int32 records and weight blobs the kernels and the C runtime run.

``prepare`` (records.py) does all float math once and builds the LSTM / Dense records; ``builder.py`` lays records and blobs out; ``opgraph.py``
compiles op-graph layers, ``cellgraph.py`` lowers int8 GRU / RNN directions to their int16 cell graphs;
``layout.py`` is the record layout every kernel reads; ``work.py`` sizes a call's work buffer; ``c_program.py``
is the C runtime's copy of a program.
"""
from .records import Prepared, prepare
from .work import CHUNK_BYTES, WORK_LIMIT_BYTES, chunk_frames, make_work, work_views

__all__ = ["Prepared", "prepare", "CHUNK_BYTES", "WORK_LIMIT_BYTES", "chunk_frames", "make_work", "work_views"]
