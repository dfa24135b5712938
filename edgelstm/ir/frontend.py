"""Front-end layer kinds: 1-D convolution, padding, STFT magnitude, activations and a carried context.

They make CNN + RNN hybrids (a conv front end over one step's frame, then LSTM / GRU / RNN / Dense layers).
Every layer still maps one flat frame vector to one flat frame vector per step. A layer that works along an
axis views its frame as ``(length, channels)``, row-major with channels last: element ``l * channels + c``
(TFLite's NHWC with H = 1, so a conv is a CONV_2D over a (1, 1, length, channels) tensor). PyTorch's Conv1d
works on (channels, length): the importers transpose its weights, and a model whose first layer is a conv over
several channels takes channels-last frames.

Conv1D      y[l, o] = act(b[o] + sum_k sum_i w[o, k, i] x_pad[l*stride + k*dilation, g(o)*Ig + i])
            x_pad: the frame padded by ``pad_left`` / ``pad_right`` positions (zeros, or a reflection that does
            not repeat the edge, as torch's "reflect" and ONNX's Pad mode="reflect"); groups 1 or depthwise
            (groups = in_channels, out_channels a multiple of it; g(o) = o // (out_channels // groups),
            Ig = in_channels // groups).  w (out_channels, kernel_size, Ig), b (out_channels,).
Pad         the same padding as a layer of its own.
Magnitude   per position, channels [a_0 .. a_{C-1}, b_0 .. b_{C-1}] -> sqrt(a_c^2 + b_c^2): the magnitude of an
            STFT written as a conv (real parts, then imaginary parts). Float even inside an int8 model: LiteRT
            has no int8 SQRT.
Activation  relu, relu6, sigmoid or tanh, element-wise.
Context     prepends the last ``context`` values of the input stream (the previous steps' frames, zeros at the
            start) to this step's frame, and keeps them in the stream state as ``ctx``: how streaming audio
            models see across chunk borders.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelError

FRONT_ACTIVATIONS = ("none", "relu", "relu6", "sigmoid", "tanh")
PAD_MODES = ("zeros", "reflect")
MAX_FRAME = 1 << 22          # elements of one layer's input or output frame (16 MiB of float32)
MAX_WEIGHTS = 1 << 26        # elements of one conv's weight tensor


def _int(where: str, name: str, v, lo: int, hi: int) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or not lo <= int(v) <= hi:
        raise ModelError(f"{where}: {name} must be an int in [{lo}, {hi}], got {v!r}")
    return int(v)


def _choice(where: str, name: str, v, choices) -> str:
    if v not in choices:
        raise ModelError(f"{where}: {name} must be one of {choices}, got {v!r}")
    return v


class _Stateless:
    bidirectional = False
    reverse = False

    def state_shapes(self) -> dict:
        return {}

    def param_shapes(self) -> dict:
        return {}


def _check_padding(where: str, layer, length: int) -> None:
    layer.pad_left = _int(where, "pad_left", layer.pad_left, 0, MAX_FRAME)
    layer.pad_right = _int(where, "pad_right", layer.pad_right, 0, MAX_FRAME)
    _choice(where, "pad_mode", layer.pad_mode, PAD_MODES)
    if layer.pad_mode == "reflect" and max(layer.pad_left, layer.pad_right) >= length:
        raise ModelError(f"{where}: reflect padding ({layer.pad_left}, {layer.pad_right}) must be shorter than the "
                         f"length {length}")


@dataclass(kw_only=True)
class Conv1D(_Stateless):
    """1-D convolution over the frame viewed as (length, in_channels); see the module docstring.

    w (out_channels, kernel_size, in_channels // groups), b (out_channels,)
    """

    length: int
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    dilation: int = 1
    pad_left: int = 0
    pad_right: int = 0
    pad_mode: str = "zeros"
    groups: int = 1
    activation: str = "none"
    directions: list[dict] = field(default_factory=list)   # exactly one entry: {"w", "b"}
    kind: str = field(default="conv1d", init=False)

    @property
    def input_size(self) -> int:
        return self.length * self.in_channels

    @property
    def padded_length(self) -> int:
        return self.length + self.pad_left + self.pad_right

    @property
    def out_length(self) -> int:
        return (self.padded_length - self.dilation * (self.kernel_size - 1) - 1) // self.stride + 1

    @property
    def output_size(self) -> int:
        return self.out_length * self.out_channels

    @property
    def depthwise(self) -> bool:
        return self.groups > 1

    def param_shapes(self) -> dict:
        return {"w": (self.out_channels, self.kernel_size, self.in_channels // self.groups),
                "b": (self.out_channels,)}

    def validate(self, where: str) -> None:
        self.length = _int(where, "length", self.length, 1, MAX_FRAME)
        self.in_channels = _int(where, "in_channels", self.in_channels, 1, MAX_FRAME)
        self.out_channels = _int(where, "out_channels", self.out_channels, 1, MAX_FRAME)
        self.kernel_size = _int(where, "kernel_size", self.kernel_size, 1, MAX_FRAME)
        self.stride = _int(where, "stride", self.stride, 1, MAX_FRAME)
        self.dilation = _int(where, "dilation", self.dilation, 1, MAX_FRAME)
        self.groups = _int(where, "groups", self.groups, 1, MAX_FRAME)
        _check_padding(where, self, self.length)
        _choice(where, "activation", self.activation, FRONT_ACTIVATIONS)
        if self.groups not in (1, self.in_channels) or self.out_channels % self.groups:
            raise ModelError(f"{where}: groups must be 1 or in_channels ({self.in_channels}, depthwise) with "
                             f"out_channels a multiple of it; got groups {self.groups}, out_channels "
                             f"{self.out_channels}")
        if self.padded_length < self.dilation * (self.kernel_size - 1) + 1:
            raise ModelError(f"{where}: the kernel (size {self.kernel_size}, dilation {self.dilation}) is longer "
                             f"than the padded input ({self.padded_length})")
        for name, n in (("input", self.input_size), ("padded input", self.padded_length * self.in_channels),
                        ("output", self.output_size)):
            if n > MAX_FRAME:
                raise ModelError(f"{where}: {name} frame of {n} elements exceeds {MAX_FRAME}")
        if self.out_channels * self.kernel_size * (self.in_channels // self.groups) > MAX_WEIGHTS:
            raise ModelError(f"{where}: weight tensor exceeds {MAX_WEIGHTS} elements")


@dataclass(kw_only=True)
class Pad(_Stateless):
    """Padding along length of a (length, channels) frame: ``left`` / ``right`` positions of zeros or a
    reflection."""

    length: int
    channels: int
    left: int = 0
    right: int = 0
    mode: str = "zeros"
    directions: list[dict] = field(default_factory=list)   # no weights: one empty entry
    kind: str = field(default="pad", init=False)

    @property
    def input_size(self) -> int:
        return self.length * self.channels

    @property
    def output_size(self) -> int:
        return (self.length + self.left + self.right) * self.channels

    def validate(self, where: str) -> None:
        self.length = _int(where, "length", self.length, 1, MAX_FRAME)
        self.channels = _int(where, "channels", self.channels, 1, MAX_FRAME)
        self.left = _int(where, "left", self.left, 0, MAX_FRAME)
        self.right = _int(where, "right", self.right, 0, MAX_FRAME)
        _choice(where, "mode", self.mode, PAD_MODES)
        if self.mode == "reflect" and max(self.left, self.right) >= self.length:
            raise ModelError(f"{where}: reflect padding ({self.left}, {self.right}) must be shorter than the "
                             f"length {self.length}")
        if self.output_size > MAX_FRAME:
            raise ModelError(f"{where}: output frame of {self.output_size} elements exceeds {MAX_FRAME}")


@dataclass(kw_only=True)
class Magnitude(_Stateless):
    """sqrt(a^2 + b^2) over channel pairs: (length, 2 * channels) -> (length, channels)."""

    length: int
    channels: int
    directions: list[dict] = field(default_factory=list)
    kind: str = field(default="magnitude", init=False)

    @property
    def input_size(self) -> int:
        return self.length * 2 * self.channels

    @property
    def output_size(self) -> int:
        return self.length * self.channels

    def validate(self, where: str) -> None:
        self.length = _int(where, "length", self.length, 1, MAX_FRAME)
        self.channels = _int(where, "channels", self.channels, 1, MAX_FRAME)
        if self.input_size > MAX_FRAME:
            raise ModelError(f"{where}: input frame of {self.input_size} elements exceeds {MAX_FRAME}")


@dataclass(kw_only=True)
class Activation(_Stateless):
    """An element-wise activation (relu, relu6, sigmoid, tanh) as a layer of its own."""

    size: int
    activation: str
    directions: list[dict] = field(default_factory=list)
    kind: str = field(default="activation", init=False)

    @property
    def input_size(self) -> int:
        return self.size

    @property
    def output_size(self) -> int:
        return self.size

    def validate(self, where: str) -> None:
        self.size = _int(where, "size", self.size, 1, MAX_FRAME)
        _choice(where, "activation", self.activation, FRONT_ACTIVATIONS[1:])


@dataclass(kw_only=True)
class Context:
    """Prepends the last ``context`` values of the input stream to each frame: (size,) -> (context + size,).
    State ``ctx`` (context,): zeros at the start of a stream."""

    size: int
    context: int
    directions: list[dict] = field(default_factory=list)
    kind: str = field(default="context", init=False)
    bidirectional: bool = field(default=False, init=False)
    reverse: bool = field(default=False, init=False)

    @property
    def input_size(self) -> int:
        return self.size

    @property
    def output_size(self) -> int:
        return self.context + self.size

    def param_shapes(self) -> dict:
        return {}

    def state_shapes(self) -> dict:
        return {"ctx": (self.context,)}

    def validate(self, where: str) -> None:
        self.size = _int(where, "size", self.size, 1, MAX_FRAME)
        self.context = _int(where, "context", self.context, 1, MAX_FRAME)
        if self.output_size > MAX_FRAME:
            raise ModelError(f"{where}: output frame of {self.output_size} elements exceeds {MAX_FRAME}")


FRONT_END_CLASSES = {"conv1d": Conv1D, "pad": Pad, "magnitude": Magnitude, "activation": Activation,
                     "context": Context}
# the fields ModelSpec.describe writes for each kind (besides "kind"), in order
FRONT_END_FIELDS = {
    "conv1d": ("length", "in_channels", "out_channels", "kernel_size", "stride", "dilation", "pad_left",
               "pad_right", "pad_mode", "groups", "activation"),
    "pad": ("length", "channels", "left", "right", "mode"),
    "magnitude": ("length", "channels"),
    "activation": ("size", "activation"),
    "context": ("size", "context"),
}
