"""Packed convolution layouts for TVM on CPUs.

Relax imports ONNX convolutions as NCHW/OIHW. On a CPU, MetaSchedule's first few dozen
trials on an NCHW convolution rarely find a schedule that keeps the vector units busy: the
innermost dimension is the image width, and the output channels a vector should hold are
strided. Packing channels into blocks of one vector's lanes (data ``NCHW16c``, weights
``OIHW16i16o`` for AVX-512 fp32, as oneDNN and TOPI's x86 schedules do) puts them innermost
and contiguous; on ResNet-18's 3x3 convolutions that doubled the GFLOPS MetaSchedule reached
in 64 trials here.

Relax's ConvertLayout packs every convolution whose channels divide by the block and carries
the layout through the elementwise ops in between (bias, ReLU, residual adds), so only graph
edges that need NCHW pay a layout transform; the packed weights are constants, folded at
compile time. Grouped and depthwise convolutions, and those whose channels do not divide,
stay NCHW.
"""

from __future__ import annotations

import functools
import math


def channel_block(tvm_target) -> int:
    """Channels per packed block: one SIMD register of 32-bit lanes on the target's CPU."""
    from tvm.target.codegen import target_has_features

    if target_has_features("avx512f", tvm_target):
        return 16
    if target_has_features("avx2", tvm_target):
        return 8
    return 4  # 128-bit SIMD: NEON, SSE


def pack_for_cpu(mod, tvm_target) -> tuple:
    """Pack ``mod``'s convolutions for the target's CPU (inside its scope): blocks of one
    SIMD register, VNNI int8 kernels where the CPU and TVM's LLVM have them. Returns
    (module, what was done)."""
    from tvm.target.codegen import target_has_features

    block = channel_block(tvm_target)
    vnni = bool(target_has_features("avx512vnni", tvm_target)) and use_vnni_intrinsic()
    mod, count = pack_convolutions(mod, block, vnni=vnni)
    return mod, {"layout": f"NCHW{block}c", "count": count, "vnni": vnni}


def pack_convolutions(mod, block: int, vnni: bool = False):
    """Rewrite ``mod``'s 2-D convolutions into NCHW{block}c layouts (inside a target scope).

    ``vnni``: uint8 x int8 convolutions get TOPI's ``conv2d_NCHWc_int8`` (weights in
    OIHW{block/4}i{block}o4i, the operand order of VNNI's ``vpdpbusd``), which MetaSchedule
    tensorizes with ``dot_16x4_vnni`` (see :func:`use_vnni_intrinsic`). Returns (module,
    how many convolutions were packed); the packed ones are already legalized, the rest is
    left for the usual pipeline.
    """
    import tvm
    from tvm import relax

    layouts = {"relax.nn.conv2d": [f"NCHW{block}c", f"OIHW{block}i{block}o"]}
    mod = relax.transform.ConvertLayout(layouts)(mod)
    mod = _keep_packed(mod, block)
    legalize = functools.partial(_legalize_packed_conv2d, block=block,
                                 vnni=vnni and block == 16)
    packed = _count_packed(mod["main"])
    mod = tvm.transform.Sequential([
        relax.transform.DeadCodeElimination(),  # the layout transforms no longer used
        relax.transform.CanonicalizeBindings(),
        relax.transform.LegalizeOps({"relax.nn.conv2d": legalize}),
        relax.transform.FoldConstant(),  # the weights' layout transforms
    ])(mod)
    return mod, packed


def _count_packed(function) -> int:
    from tvm import relax
    from tvm.ir import Op

    conv2d = Op.get("relax.nn.conv2d")
    return sum(1 for block in function.body.blocks for binding in block.bindings
               if isinstance(binding.value, relax.Call) and binding.value.op == conv2d
               and len(binding.value.attrs.out_layout) > 4)


# Ops that commute with a channel-blocked layout transform (given scalar or per-channel
# operands), so data unpacked to NCHW only to go through them can stay packed.
_UNARY = frozenset({"relax.astype", "relax.nn.relu", "relax.clip", "relax.round",
                    "relax.sigmoid", "relax.nn.silu"})
_BINARY = frozenset({"relax.add", "relax.subtract", "relax.multiply", "relax.divide",
                     "relax.maximum", "relax.minimum"})
_QDQ = frozenset({"relax.quantize", "relax.dequantize"})
_POOLS = {"relax.nn.max_pool2d": "max_pool2d", "relax.nn.avg_pool2d": "avg_pool2d"}


def _keep_packed(mod, block: int):
    """Keep activations channel-blocked between packed convolutions.

    ConvertLayout carries NCHW{b}c only through ops that declare how (bias, ReLU, pooling,
    residual adds), and quantize/dequantize and pad do not: in an int8 network every
    convolution's output was unpacked to NCHW, quantized, padded with the zero point and
    packed again for the next one, three memory-bound passes per layer that took a third of
    int8 ResNet-18's time. This pass moves each unpacking layout transform past the ops it
    commutes with (per-tensor quantize/dequantize, elementwise ops with scalar or
    per-channel operands, spatial pads, pools), cancels it against the next packing, and
    packs the outputs of stems whose input channels do not divide (an RGB or grayscale
    input) the same way. Unpacked copies nobody uses are left for dead-code elimination.
    """
    import tvm
    from tvm import relax

    @relax.expr_functor.mutator
    class KeepPacked(relax.PyExprMutator):
        def visit_call_(self, call):
            call = self.visit_expr_post_order(call)
            if not isinstance(call.op, tvm.ir.Op):
                return call
            if call.op.name == "relax.nn.conv2d":
                return self._pack_stem(call)
            if call.op.name == "relax.layout_transform":
                source = self._unpacked_from(call.args[0])
                if source is not None and _is_packing(call, block) and \
                        _shape(source) == _shape(call):
                    return source  # unpack then pack: nothing
                return call
            packed = self._packed_call(call)
            if packed is None:
                return call
            return relax.op.layout_transform(self.builder_.emit(packed), _unpacking(block))

        def _unpacked_from(self, expr):
            """The packed tensor ``expr`` was unpacked from, or None."""
            if not isinstance(expr, relax.Var):
                return None
            value = self.lookup_binding(expr)
            if (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)
                    and value.op.name == "relax.layout_transform"
                    and _is_unpacking(value, block)):
                return value.args[0]
            return None

        def _packed_call(self, call):
            name, args = call.op.name, list(call.args)
            source = self._unpacked_from(args[0]) if args else None
            if source is not None and (name in _UNARY or name in _QDQ and all(
                    math.prod(_shape(parameter)) == 1 for parameter in args[1:])):
                return relax.Call(call.op, [source, *args[1:]], call.attrs, call.ty_args)
            if name in _BINARY and len(args) == 2:
                return self._packed_binary(call, args)
            attrs = call.attrs
            if name == "relax.nn.pad" and source is not None and \
                    attrs.pad_mode == "constant" and not any(attrs.pad_width[:4]):
                widths = [0, 0, 0, 0, *attrs.pad_width[4:8], 0, 0]
                return relax.op.nn.pad(source, widths, "constant", attrs.pad_value)
            if name in _POOLS and source is not None and \
                    (attrs.layout, attrs.out_layout) == ("NCHW", "NCHW"):
                pool = getattr(relax.op.nn, _POOLS[name])
                return pool(source, attrs.pool_size, attrs.strides, attrs.padding,
                            attrs.dilation, attrs.ceil_mode, attrs.count_include_pad,
                            layout=f"NCHW{block}c", out_layout=f"NCHW{block}c")
            return None

        def _packed_binary(self, call, args):
            sources = [self._unpacked_from(arg) for arg in args]
            if all(source is None for source in sources):
                return None
            channels = _shape(call)[1]
            operands = []
            for arg, source in zip(args, sources, strict=True):
                if source is not None:
                    operands.append(source)
                elif math.prod(_shape(arg)) == 1:
                    operands.append(arg)
                elif _shape(arg) == (1, channels, 1, 1):  # per channel: bias, scale
                    operands.append(self.builder_.emit(
                        relax.op.layout_transform(arg, _packing(block))))
                else:
                    return None
            return relax.Call(call.op, operands, call.attrs, call.ty_args)

        def _pack_stem(self, call):
            attrs = call.attrs
            data, weight = call.args
            if (attrs.data_layout, attrs.kernel_layout, attrs.out_layout) != \
                    ("NCHW", "OIHW", "NCHW") or attrs.groups != 1:
                return call
            out_channels, in_channels = _shape(weight)[:2]
            if out_channels % block or in_channels % block == 0:
                return call
            packed = relax.op.nn.conv2d(
                data, weight, attrs.strides, attrs.padding, attrs.dilation, attrs.groups,
                "NCHW", "OIHW", f"NCHW{block}c", attrs.out_dtype)
            return relax.op.layout_transform(self.builder_.emit(packed), _unpacking(block))

    rewriter = KeepPacked(mod)
    for gvar, function in mod.functions.items():
        if isinstance(function, relax.Function):
            rewriter.builder_.update_func(gvar, rewriter.visit_expr(function))
    return rewriter.builder_.get()


def _shape(expr) -> tuple[int, ...]:
    return tuple(int(dim) for dim in expr.ty.shape)


def _packing(block: int):
    from tvm.tirx import IndexMap

    return IndexMap.from_func(lambda n, c, h, w: (n, c // block, h, w, c % block))


def _unpacking(block: int):
    from tvm.tirx import IndexMap

    return IndexMap.from_func(lambda n, c, h, w, b: (n, c * block + b, h, w))


def _maps(call, index: list[int]) -> list[int]:
    return [int(value) for value in call.attrs.index_map.map_indices(index)]


def _is_unpacking(call, block: int) -> bool:
    """NCHW{block}c -> NCHW (probed at two points: ConvertLayout writes only affine maps)."""
    shape = _shape(call.args[0])
    return (len(shape) == 5 and shape[4] == block and len(call.ty.shape) == 4
            and _maps(call, [0, 1, 2, 3, 5]) == [0, block + 5, 2, 3]
            and _maps(call, [1, 2, 0, 1, 0]) == [1, 2 * block, 0, 1])


def _is_packing(call, block: int) -> bool:
    """NCHW -> NCHW{block}c."""
    return (len(call.args[0].ty.shape) == 4 and len(call.ty.shape) == 5
            and _maps(call, [0, block + 5, 2, 3]) == [0, 1, 2, 3, 5]
            and _maps(call, [1, 2 * block, 0, 1]) == [1, 2, 0, 1, 0])


def _legalize_packed_conv2d(bb, call, block: int, vnni: bool):
    """Packed convolutions through TOPI's conv2d_NCHWc (Relax's own legalization cannot
    lower channel-blocked layouts); NCHW ones are left to the default legalization."""
    from tvm import topi

    attrs = call.attrs
    if len(attrs.out_layout) == 4:
        return call
    if len(attrs.data_layout) == 4:
        return _packed_stem(bb, call, block)
    if attrs.groups != 1:  # ConvertLayout never packs these; refuse rather than miscompute
        raise ValueError(f"packed grouped conv2d ({attrs.data_layout}) is not supported")
    data, weight = call.args
    out_dtype = call.ty.dtype  # the convolution's result type: out_dtype, or the data's
    if vnni and (data.ty.dtype, weight.ty.dtype) == ("uint8", "int8"):
        weight = bb.emit_te(_vnni_weight_layout, weight, primfunc_name_hint="vnni_weight")
        return bb.call_te(topi.nn.conv2d_NCHWc_int8, data, weight, attrs.strides,
                          attrs.padding, attrs.dilation, attrs.data_layout, attrs.out_layout,
                          out_dtype, primfunc_name_hint="conv2d_NCHWc_int8")
    return bb.call_te(topi.nn.conv2d_NCHWc, data, weight, attrs.strides, attrs.padding,
                      attrs.dilation, attrs.data_layout, attrs.out_layout, out_dtype,
                      primfunc_name_hint="conv2d_NCHWc")


def _packed_stem(bb, call, block: int):
    """A convolution whose input channels do not divide into blocks (an RGB stem: 3) but
    whose outputs do (see ``_keep_packed``): all input channels as one block, the outputs
    packed. Left in NCHW, ResNet-18's stem took 4 of TVM's 30 ms in fp32 and 12 of 15 ms
    in int8."""
    from tvm import te, topi

    attrs = call.attrs
    data, weight = call.args
    out_channels, in_channels = _shape(weight)[:2]
    packed_data = bb.emit_te(
        lambda x: te.compute((*x.shape[:1], 1, *x.shape[2:], in_channels),
                             lambda n, _, h, w, c: x[n, c, h, w], name="pack_data"),
        data, primfunc_name_hint="pack_data")
    packed_weight = bb.emit_te(
        lambda k: te.compute((out_channels // block, 1, *k.shape[2:], in_channels, block),
                             lambda o, _, h, w, i, b: k[o * block + b, i, h, w],
                             name="pack_weight"),
        weight, primfunc_name_hint="pack_weight")
    return bb.call_te(topi.nn.conv2d_NCHWc, packed_data, packed_weight, attrs.strides,
                      attrs.padding, attrs.dilation, f"NCHW{in_channels}c",
                      f"NCHW{block}c", call.ty.dtype, primfunc_name_hint="conv2d_NCHWc")


def _vnni_weight_layout(weight):
    """OIHW16i16o -> OIHW4i16o4i: four consecutive input channels innermost, next to the
    16 output channels, as ``vpdpbusd`` multiplies them (a constant: folded at compile)."""
    from tvm import te

    o, i, h, w, ib, ob = weight.shape
    return te.compute((o, i, h, w, ib // 4, ob, 4),
                      lambda a, b, c, d, e, f, g: weight[a, b, c, d, e * 4 + g, f],
                      name="vnni_weight")


# VNNI's u8 x i8 -> i32 dot product of 4-element groups, 16 lanes, as LLVM 22 declares it:
# its vpdpbusd takes <64 x i8> operands where TVM 0.27's dot_16x4_vnni passes <16 x i32>,
# so every candidate tensorized with TVM's own body fails LLVM's verifier.
def _vnni_dot_16x4_llvm22():
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((4,), "uint8", offset_factor=1),
             B: T.Buffer((16, 4), "int8", offset_factor=1),
             C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            a_i32 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], dtype="int32x16"),
                T.reinterpret(T.broadcast(a_i32, 16), dtype="uint8x64"),
                B.vload([0, 0], dtype="int8x64"), dtype="int32x16")

    return impl


def intrinsics_package() -> str:
    """``tvm.s_tir.tensor_intrin``, imported as an empty package unless it already is; see
    ``autotune.backends.tvm.load_tensor_intrinsics``. Returns its name."""
    import importlib.util
    import sys

    package = "tvm.s_tir.tensor_intrin"
    if package not in sys.modules:
        sys.modules[package] = importlib.util.module_from_spec(importlib.util.find_spec(package))
    return package


@functools.cache
def use_vnni_intrinsic() -> bool:
    """Make TVM's ``dot_16x4_vnni`` tensor intrinsic build with this TVM's LLVM.

    MetaSchedule's default rules on a VNNI CPU tensorize u8 x i8 dot products with it. When
    TVM's own body does not build (LLVM 22), it is replaced by one that does. Returns
    whether the intrinsic builds now. (Building is a property of TVM's LLVM, so any AVX-512
    VNNI CPU serves to probe it.)
    """
    import tvm
    from tvm.s_tir import TensorIntrin

    intrinsics_package()  # x86's intrinsics only, not every vendor's
    from tvm.s_tir.tensor_intrin import x86

    probe = tvm.target.Target({"kind": "llvm", "mcpu": "cascadelake"})

    def builds(impl) -> bool:
        try:
            tvm.compile(impl, target=probe)
            return True
        except RuntimeError:  # LLVM's verifier rejected the call
            return False

    if builds(x86.dot_product_16x4_u8i8i32_vnni):
        return True
    impl = _vnni_dot_16x4_llvm22()
    if not builds(impl):
        return False
    TensorIntrin.register(x86.VNNI_DOT_16x4_INTRIN, x86.dot_product_16x4_u8i8i32_desc, impl,
                          override=True)
    return True
