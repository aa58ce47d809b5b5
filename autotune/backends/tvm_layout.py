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
    stems: list[str] = []  # convolutions packed on their outputs only
    legalize = functools.partial(_legalize_packed_conv2d, block=block,
                                 vnni=vnni and block == 16, stems=stems)
    packed = _count_packed(mod["main"])
    mod = tvm.transform.Sequential([
        relax.transform.LegalizeOps({"relax.nn.conv2d": legalize}),
        relax.transform.FoldConstant(),  # the weights' layout transforms
    ])(mod)
    return mod, packed + len(stems)


def _count_packed(function) -> int:
    from tvm import relax
    from tvm.ir import Op

    conv2d = Op.get("relax.nn.conv2d")
    return sum(1 for block in function.body.blocks for binding in block.bindings
               if isinstance(binding.value, relax.Call) and binding.value.op == conv2d
               and len(binding.value.attrs.data_layout) > 4)


def _legalize_packed_conv2d(bb, call, block: int, vnni: bool, stems: list[str]):
    """Packed convolutions through TOPI's conv2d_NCHWc (Relax's own legalization cannot
    lower channel-blocked layouts); NCHW ones are left to the default legalization."""
    from tvm import topi

    attrs = call.attrs
    if len(attrs.data_layout) == 4:
        return _pack_output_only(bb, call, block, stems)
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


def _pack_output_only(bb, call, block: int, stems: list[str]):
    """A convolution whose input channels do not divide into blocks (an RGB stem: 3) but
    whose outputs do: all input channels as one block, the outputs packed, then back to NCHW.
    Left in NCHW, ResNet-18's stem took 4 of TVM's 30 ms in fp32 and 12 of 15 ms in int8.
    Anything else is left to Relax's own legalization."""
    from tvm import te, topi

    attrs = call.attrs
    data, weight = call.args
    if (attrs.data_layout, attrs.kernel_layout, attrs.out_layout) != ("NCHW", "OIHW", "NCHW"):
        return call
    out_channels, in_channels = int(weight.ty.shape[0]), int(weight.ty.shape[1])
    if attrs.groups != 1 or out_channels % block or in_channels % block == 0:
        return call
    stems.append(f"conv2d {out_channels}x{in_channels}")
    packed_data = bb.emit_te(
        lambda x: te.compute((*x.shape[:1], 1, *x.shape[2:], in_channels),
                             lambda n, _, h, w, c: x[n, c, h, w], name="pack_data"),
        data, primfunc_name_hint="pack_data")
    packed_weight = bb.emit_te(
        lambda k: te.compute((out_channels // block, 1, *k.shape[2:], in_channels, block),
                             lambda o, _, h, w, i, b: k[o * block + b, i, h, w],
                             name="pack_weight"),
        weight, primfunc_name_hint="pack_weight")
    output = bb.emit_te(topi.nn.conv2d_NCHWc, packed_data, packed_weight, attrs.strides,
                        attrs.padding, attrs.dilation, f"NCHW{in_channels}c",
                        f"NCHW{block}c", call.ty.dtype, primfunc_name_hint="conv2d_NCHWc")
    return bb.call_te(
        lambda y: te.compute((y.shape[0], out_channels, *y.shape[2:4]),
                             lambda n, c, h, w: y[n, c // block, h, w, c % block],
                             name="unpack_output"),
        output, primfunc_name_hint="unpack_output")


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
