"""The numpy-free deployment path (a compiled C bundle through ctypes); it lives in ``edgelstm.backends.deploy``,
and this name is the public one users import.

    from edgelstm.deploy import CompiledModel
"""
from .backends.deploy import CompiledModel, CompiledStream

__all__ = ["CompiledModel", "CompiledStream"]
