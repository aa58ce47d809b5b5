"""Real integer kernels for QDQ models in Relax.

Importing a QDQ ONNX model gives fake quantization: ``conv2d(dequantize(x_q),
dequantize(w_q))`` in float32, which is no faster than fp32. This pass rewrites each such
convolution or matmul into an integer kernel on the quantized tensors
(uint8/int8 x int8 -> int32) followed by a float rescale, which the following bias add and
``quantize`` fuse into (requantization):

    conv2d(x_dq, w_dq) = s_x * s_w[c] * (conv2d(pad(x_q, zp_x), w_q) - zp_x * sum(w_q[c]))

Padding uses the activation's zero point (a float zero), so the correction term is exact at
the borders too (a zero point of 0 leaves the padding to the convolution itself). Only
symmetric weights (zero point 0) are rewritten; an asymmetric weight would need a
data-dependent correction, so such ops stay in float and are reported.

On x86, int8 activations are first made uint8 (``unsigned_activations``): VNNI's
``vpdpbusd`` multiplies uint8 by int8 only, and the shifted tensor holds the same values.
"""

from __future__ import annotations

import numpy as np


def lower_qdq_to_integer(mod, unsigned: bool = False):
    """Rewrite dequantize->conv2d/matmul in ``mod["main"]``; returns (module, report).

    ``unsigned``: int8 activations become uint8 first (see ``unsigned_activations``).
    """
    from tvm import relax

    report = {}
    if unsigned:
        mod, report["unsigned_activations"] = unsigned_activations(mod)
    mutator = _integer_lowering_class()(mod)
    function = mutator.visit_expr(mod["main"])
    function = relax.analysis.remove_all_unused(function)
    return _with_main(mod, function), {"integer": mutator.rewritten,
                                       "left_in_float": mutator.skipped, **report}


def _with_main(mod, function):
    """A copy of ``mod`` whose ``main`` is ``function`` (the caller's module is kept)."""
    mod = mod.clone() if hasattr(mod, "clone") else mod
    mod["main"] = function
    return mod


def unsigned_activations(mod):
    """Quantize int8 activations to uint8 with the zero point moved up by 128.

    ``quantize(x, s, z, int8) + 128 == quantize(x, s, z + 128, uint8)`` exactly, and the
    dequantize that reads it back moves its zero point too, so the graph means the same.
    x86 CPUs multiply uint8 by int8 in one instruction (VNNI ``vpdpbusd``), int8 by int8 in
    none: int8-activation configs ran slower than fp32. It also lets int8- and
    uint8-activation configs share kernels, and tuning records. Only a per-tensor quantize
    with constant parameters whose every user is a dequantize is moved. Returns (module,
    number of activations moved).
    """
    from tvm import relax
    from tvm.ir import Op

    quantize_op, dequantize_op = Op.get("relax.quantize"), Op.get("relax.dequantize")
    function = mod["main"]
    bindings = relax.analysis.get_var2val(function)
    users: dict = {}
    for value in bindings.values():
        for used in relax.analysis.used_vars(value):
            users.setdefault(used, []).append(value)
    for used in relax.analysis.used_vars(function.body.body):  # the returned value
        users.setdefault(used, []).append(None)  # a function output keeps its dtype

    def movable(var, value) -> bool:
        if not (isinstance(value, relax.Call) and value.op == quantize_op
                and str(value.attrs.out_dtype) == "int8" and not _is_const(value.args[0])
                and all(_is_const(p) and _value(p).size == 1 for p in value.args[1:])):
            return False
        return all(isinstance(user, relax.Call) and user.op == dequantize_op
                   and user.args[0].same_as(var) for user in users.get(var, []))

    moved = {var for var, value in bindings.items() if movable(var, value)}
    quantizes = {bindings[var] for var in moved}

    def shifted(zero_point):  # uint8, as a uint8 activation's zero point is stored
        return relax.const((_value(zero_point).astype(np.int32) + 128).astype(np.uint8))

    @relax.expr_functor.mutator
    class Shift(relax.PyExprMutator):
        def visit_call_(self, call):
            if call in quantizes:
                data, scale, zero_point = call.args
                return relax.op.quantize(self.visit_expr(data), scale, shifted(zero_point),
                                         int(call.attrs.axis), "uint8")
            if call.op == dequantize_op and call.args[0] in moved:
                data, scale, zero_point = call.args
                return relax.op.dequantize(self.visit_expr(data), scale, shifted(zero_point),
                                           int(call.attrs.axis), call.attrs.out_dtype)
            return super().visit_call_(call)

    if not moved:
        return mod, 0
    return _with_main(mod, Shift(mod).visit_expr(function)), len(moved)


def _integer_lowering_class():
    """Build the mutator class lazily: defining it needs tvm, which is imported lazily."""
    from tvm import relax
    from tvm.ir import Op

    conv2d_op = Op.get("relax.nn.conv2d")
    matmul_op = Op.get("relax.matmul")
    dequantize_op = Op.get("relax.dequantize")
    quantize_op = Op.get("relax.quantize")
    permute_op = Op.get("relax.permute_dims")

    @relax.expr_functor.mutator
    class IntegerLowering(relax.PyExprMutator):
        def __init__(self, mod) -> None:
            super().__init__(mod)
            self.rewritten: list[str] = []
            self.skipped: list[str] = []

        def visit_call_(self, call):
            call = self.visit_expr_post_order(call)
            lowered = None
            if call.op == conv2d_op:
                lowered = self._conv2d(call)
            elif call.op == matmul_op:
                lowered = self._matmul(call)
            elif call.op in (quantize_op, dequantize_op):
                lowered = self._parameters_in_memory(call)
            return call if lowered is None else lowered

        def _parameters_in_memory(self, call):
            """An activation's scalar scale and zero point as one-element tensors.

            Legalization bakes scalar constants into the kernel as immediates, so every
            calibration made different kernels, each tuned anew; read from memory, they
            leave one kernel (and one set of tuning records) for all calibrations.
            """
            data, *parameters = call.args
            if _is_const(data) or not any(_is_const(p) and p.ty.ndim == 0
                                          for p in parameters):
                return None
            parameters = [relax.const(_value(p).reshape(1)) if _is_const(p) and p.ty.ndim == 0
                          else p for p in parameters]
            return relax.Call(call.op, [data, *parameters], call.attrs)

        def _bound(self, expr, op):
            """The call that ``expr`` (a var) is bound to, when it is a call of ``op``."""
            if isinstance(expr, relax.Var):
                bound = self.lookup_binding(expr)
                if isinstance(bound, relax.Call) and bound.op == op:
                    return bound
            return None

        def _activation(self, expr):
            """(x_q, scale, zero point) of a per-tensor dequantized activation, or None."""
            dq = self._bound(expr, dequantize_op)
            if dq is None or not all(_is_const(arg) for arg in dq.args[1:]):
                return None
            scale, zero = _value(dq.args[1]), _value(dq.args[2])
            if scale.size != 1 or zero.size != 1:
                return None
            return dq.args[0], float(scale.reshape(-1)[0]), int(zero.reshape(-1)[0])

        def _weight(self, expr):
            """(w_q, per-axis scales, zero points, axis) of a dequantized constant weight."""
            dq = self._bound(expr, dequantize_op)
            if dq is None or not all(_is_const(arg) for arg in dq.args):
                return None
            return (_value(dq.args[0]), _value(dq.args[1]), _value(dq.args[2]),
                    int(dq.attrs.axis))

        def _conv2d(self, call):
            attrs = call.attrs
            if attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW":
                return None
            activation, weight = self._activation(call.args[0]), self._weight(call.args[1])
            if activation is None or weight is None:
                return None
            x_q, s_x, zp_x = activation
            w_q, s_w, zp_w, axis = weight
            name = f"conv2d {tuple(w_q.shape)}"
            if self._stays_float(name, zp_w, s_w, axis, 0, "channel"):
                return None
            channels = w_q.shape[0]
            padding = [int(p) for p in attrs.padding]  # top, left, bottom, right
            data = x_q
            if any(padding) and zp_x != 0:  # the convolution's own padding is zeros
                top, left, bottom, right = padding
                data = self.builder_.emit(relax.op.nn.pad(
                    x_q, [0, 0, 0, 0, top, bottom, left, right], pad_value=float(zp_x)))
                padding = [0, 0, 0, 0]
            accumulator = self.builder_.emit(relax.op.nn.conv2d(
                data, relax.const(w_q.astype("int8")), strides=attrs.strides,
                padding=padding, dilation=attrs.dilation, groups=attrs.groups,
                out_dtype="int32"))
            weight_sums = w_q.astype(np.int64).reshape(channels, -1).sum(axis=1)
            shape = (1, channels, 1, 1)
            scale = (s_x * np.broadcast_to(s_w.astype(np.float64).reshape(-1), (channels,)))
            self.rewritten.append(name)
            return self._rescale(accumulator, zp_x * weight_sums, scale, shape)

        def _matmul(self, call):
            activation = self._activation(call.args[0])
            if activation is None:
                return None
            weight_expr, transposed = call.args[1], False
            permute = self._bound(weight_expr, permute_op)
            if permute is not None:
                weight_expr, transposed = permute.args[0], True
            weight = self._weight(weight_expr)
            if weight is None or weight[0].ndim != 2:
                return None
            x_q, s_x, zp_x = activation
            w_q, s_w, zp_w, axis = weight
            name = f"matmul {tuple(w_q.shape)}"
            if transposed:
                axes = permute.attrs.axes
                if axes is not None and [int(a) for a in axes] != [1, 0]:
                    return None
                w_q, out_axis = w_q.T, 0  # scales were along the rows of the [N, K] weight
            else:
                out_axis = 1
            if self._stays_float(name, zp_w, s_w, axis, out_axis, "column"):
                return None
            columns = w_q.shape[1]
            accumulator = self.builder_.emit(relax.op.matmul(
                x_q, relax.const(np.ascontiguousarray(w_q).astype("int8")), out_dtype="int32"))
            weight_sums = w_q.astype(np.int64).sum(axis=0)
            scale = s_x * np.broadcast_to(s_w.astype(np.float64).reshape(-1), (columns,))
            self.rewritten.append(name)
            return self._rescale(accumulator, zp_x * weight_sums, scale, (columns,))

        def _stays_float(self, name: str, zp_w, s_w, axis: int, out_axis: int,
                         output: str) -> bool:
            """Whether a weight cannot run integer (it stays fake-quantized in float); the
            reason is recorded, for the trial's note."""
            if np.any(zp_w != 0):
                reason = "asymmetric weights"
            elif s_w.size != 1 and axis != out_axis:
                reason = f"weight scales not per output {output}"
            else:
                return False
            self.skipped.append(f"{name}: {reason}")
            return True

        def _rescale(self, accumulator, correction, scale, shape):
            """float32(acc - correction) * scale, broadcast over the output channels."""
            if np.any(correction != 0):
                accumulator = self.builder_.emit(relax.op.subtract(
                    accumulator, relax.const(correction.astype("int32").reshape(shape))))
            as_float = self.builder_.emit(relax.op.astype(accumulator, "float32"))
            return relax.op.multiply(as_float,
                                     relax.const(scale.astype("float32").reshape(shape)))

    return IntegerLowering


def _is_const(expr) -> bool:
    return hasattr(expr, "value") and hasattr(expr.value, "numpy")


def _value(expr) -> np.ndarray:
    return expr.value.numpy()
