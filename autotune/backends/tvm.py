"""Apache TVM backend: ONNX -> Relax -> (integer rewrite) -> MetaSchedule -> Relax VM.

Compile imports the (fp32 or QDQ) ONNX model into Relax, rewrites quantized convolutions
and matmuls into real integer kernels (``autotune.backends.tvm_int8``), packs CPU
convolutions into channel-blocked layouts (``autotune.backends.tvm_layout``), lowers, tunes the
resulting kernels with MetaSchedule into one persistent database shared by every config,
model and run on the same TVM version and target, and exports a shared library. Measure
loads that library into a Relax VM.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import itertools
import json
import os
import shutil
import time
from collections.abc import Sequence
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import numpy as np

from autotune.backends.base import (
    DEFAULT_OPTIONS,
    Artifact,
    Backend,
    CompileOptions,
    Exported,
    Requirement,
)
from autotune.backends.registry import register
from autotune.errors import InputError, UnsupportedConfig
from autotune.host import installed_versions
from autotune.measure import Feeds, Measurement, MeasurementProtocol, Session, measure_session
from autotune.outcome import FLAG, FLOAT_FALLBACK, DeviceFacts, Note, TuningFacts
from autotune.quantize import QuantizedModel
from autotune.target_spec import Target
from autotune.throughput import (
    ThroughputFacts,
    ThroughputPoint,
    batch_of,
    batched_feeds,
    each_batch,
    point,
    rebatch_onnx,
    timed_window,
)
from autotune.tomlfile import Table

# MetaSchedule measures candidates in batches: a task's budget is whole batches of 8 (every
# task gets at least one, so small kernels still leave TVM's naive loops), or of 32 once its
# share is 24 trials or more. Each batch costs one evolutionary search (6-15 s on 2 cores), so
# the big kernels, where the budget goes, search once per 32 candidates instead of per 8.
SMALL_BATCH = 8
LARGE_BATCH = 32
# The evolutionary search's population. TVM's default, 512, spent longer choosing each batch
# than building and running it on 2 cores; 128 measured 1.5-2.5x the trials per minute here
# and as good kernels per trial (a 3x3 ResNet-18 conv, 64 trials: 117 vs 68 GFLOPS).
SEARCH_POPULATION = 128


def tvm_target_dict(target: Target) -> dict | None:
    """The TVM target dict of ``target`` (its ``[tvm] target``), None without one."""
    return target.backend_table(TVMBackend.name).get("target")


@register
class TVMBackend(Backend):  # available(): the first missing requirement
    name = "tvm"
    packages = ("apache-tvm", "apache-tvm-ffi")
    # What a worker imports to compile and tune: TVM and its FFI (pinned together: 0.27.0.post1
    # segfaults with apache-tvm-ffi 0.1.15.post2), MetaSchedule's cost model (xgboost, from
    # xgboost-cpu) and process pool (cloudpickle, psutil), and the RPC tracker's tornado.
    worker_packages = ("apache-tvm", "apache-tvm-ffi", "xgboost-cpu", "cloudpickle", "psutil",
                       "tornado")
    target_needs = "a [tvm] target"

    def check_target_table(self, table: Table) -> bool:
        spec = table.get("target", dict, None)
        if spec is not None and "kind" not in spec:
            raise InputError(f"{table.where('target')}: a TVM target dict needs a 'kind' "
                             f"(e.g. {{kind = \"llvm\"}})")
        return spec is not None

    def requirements(self, target: Target) -> list[Requirement]:
        spec = tvm_target_dict(target)
        if spec is None:
            return [Requirement("[tvm] target", False, f"target {target.name} has no [tvm] "
                                                       f"target")]
        try:
            import tvm
        except ImportError as error:
            return [Requirement("apache-tvm", False, f"apache-tvm is not installed ({error})",
                                "pip install apache-tvm")]
        found = [Requirement("apache-tvm", True, tvm.__version__)]
        kind = spec["kind"]
        if kind not in ("llvm", "cuda"):
            return [*found, Requirement(f"TVM target kind {kind}", False,
                                        f"TVM target kind {kind!r} is not supported here")]
        triple = spec.get("mtriple")
        host_triple = tvm.target.codegen.llvm_get_system_triple()
        if kind == "llvm" and triple and triple.split("-")[0] != host_triple.split("-")[0]:
            if target.is_local:
                return [*found, Requirement(
                    f"a {triple} CPU", False, f"{triple} code cannot run on this {host_triple} "
                                              f"host; reach the device through an RPC tracker")]
            found.append(_cross_compiler_requirement(cross_compiler(target)))
        else:
            found.append(host_compiler_requirement())
        if not target.is_local:
            from autotune.backends.remote import tracker_requirement

            found.append(tracker_requirement(target.reach.host, target.reach.port,
                                             target.reach.key))
        elif kind == "cuda":
            found.append(_cuda_requirement(tvm))
        return found

    def versions(self) -> dict[str, str]:
        return installed_versions(self.packages)

    def compile(self, model: QuantizedModel, target: Target, workdir: Path,
                options: CompileOptions = DEFAULT_OPTIONS) -> Artifact:
        import tvm
        from tvm import relax

        spec = tvm_target_dict(target)
        if model.weight_compression is not None:
            raise UnsupportedConfig("TVM backend: weight-only (int4) compression and dynamic "
                                    "int8 activations (W4A8) are not supported yet; only QDQ "
                                    "int8 models run integer kernels")
        if model.precision_hint == "bf16" or (model.precision_hint == "fp16"
                                              and spec["kind"] != "llvm"):
            raise UnsupportedConfig(
                f"TVM backend: no {model.precision_hint} mixed precision for "
                f"{spec['kind']} here (Relax's ToMixedPrecision makes fp16 only; "
                f"bf16 tensors are computed in fp32 on LLVM CPUs, saving no time)")
        tvm_target = tvm.target.Target(resolve_target(target))
        start = time.perf_counter()
        load_tensor_intrinsics(spec)
        mod, input_names = import_onnx(model.path)
        state = {"precision_hint": model.precision_hint, "input_names": input_names}
        details: dict = {"tvm_target": str(tvm_target)}
        if model.precision_hint == "fp16":
            # fp16 storage and math, fp32 accumulation in conv2d/matmul (fp16 accumulation
            # loses accuracy and is slower on CPUs without native fp16 arithmetic).
            mod = relax.transform.ToMixedPrecision(out_dtype="float32")(mod)
        if model.config.is_quantized:
            from autotune.backends.tvm_int8 import lower_qdq_to_integer

            mod, rewritten = lower_qdq_to_integer(
                mod, unsigned=cpu_family(spec) == "x86")
            details["integer_ops"] = rewritten
        with tvm_target:
            mod = tvm.transform.Sequential([
                relax.transform.DecomposeOpsForInference(),
                relax.transform.CanonicalizeBindings(),
            ])(mod)
            # Packed layouts pay off through tuned schedules only: TVM's default loops over
            # them ran digits-cnn ~20x slower than over NCHW.
            if spec["kind"] == "llvm" and options.tuning_trials > 0:
                from autotune.backends.tvm_layout import pack_for_cpu

                mod, details["packed_convolutions"] = pack_for_cpu(mod, tvm_target)
            mod = canonical_block_names(relax.get_pipeline("zero")(mod))
        tuning, database = tune(mod, tvm_target, options.tuning_trials,
                                tuning_dir(options.cache_dir, tvm_target),
                                _tuning_tools(target) if options.tuning_trials > 0 else None)
        details["tuning"] = tuning  # the per-kernel account, for display
        with tvm_target:
            if tuning["database_records_applied"]:
                with database:
                    mod = relax.transform.MetaScheduleApplyDatabase()(mod)
            if spec["kind"] == "cuda":
                mod = gpu_default_schedules(mod)  # kernels the database does not cover
                details["default_schedules"] = "dlight"
            executable = tvm.compile(mod, target=tvm_target)
        path = Path(workdir) / "model.so"
        cc = cross_compiler(target)
        if cc is not None:
            details["cross_compiler"] = cc
        executable.export_library(str(path), **({"cc": cc} if cc else {}))
        compile_s = time.perf_counter() - start
        return Artifact(self.name, path, path.stat().st_size, compile_s, state, details,
                        tuning=_tuning_facts(tuning))

    def export(self, artifact: Artifact, model: QuantizedModel, target: Target,
               folder: Path) -> Exported:
        """The compiled library that was measured (``model.so``): loaded by the same TVM
        release into a Relax VM, whose ``main`` takes the inputs in ``input_names`` order."""
        shutil.copyfile(artifact.path, Path(folder) / "model.so")
        kind = tvm_target_dict(target)["kind"]
        loader = {"library": "model.so", "entry": "main",
                  "device": "cuda" if kind == "cuda" else "cpu",
                  "input_names": list(artifact.state["input_names"]),
                  "target": artifact.details.get("tvm_target", ""),
                  "threads": target.threads}
        if "cross_compiler" in artifact.details:
            loader["cross_compiler"] = artifact.details["cross_compiler"]
        return Exported(("model.so",), "model.so", loader)

    def notes(self, artifact: Artifact) -> tuple[Note, ...]:
        notes = []
        tuning = artifact.tuning or _tuning_facts(artifact.details.get("tuning"))
        if tuning is not None and not tuning.tuned:
            notes.append(Note("untuned", "untuned (no tuning trials)"))
        lowered = artifact.details.get("integer_ops") or {}
        left = lowered.get("left_in_float") or []
        if left:
            total = len(left) + len(lowered.get("integer") or [])
            names = ", ".join(left[:4]) + (" ..." if len(left) > 4 else "")
            notes.append(Note(FLOAT_FALLBACK,
                              f"{len(left)} of {total} conv/matmul layers left in float, not "
                              f"integer (fake-quantized: {names})", FLAG))
        return tuple(notes)

    def measure(self, artifact: Artifact, evaluation: Sequence[Feeds], target: Target,
                protocol: MeasurementProtocol) -> Measurement:
        names = artifact.state["input_names"]
        kind = tvm_target_dict(target)["kind"]
        found: dict = {}

        def load() -> Session:
            import tvm
            from tvm import relax

            if target.is_local:
                device = tvm.cuda(0) if kind == "cuda" else tvm.cpu(0)
                module = tvm.runtime.load_module(str(artifact.path))
            else:
                module, device, found["device"] = _load_remote(artifact, target)
            vm = relax.VirtualMachine(module, device)
            if target.is_local and kind == "llvm":
                return _TVMSession(vm, device, names)
            return _DeviceTimedSession(vm, device, names, target.is_local,
                                       getattr(module, "_autotune_session", None))

        measurement = measure_session(load, evaluation, protocol)
        measurement.device = found.get("device")
        return measurement


    def measure_throughput(self, model: QuantizedModel, artifact: Artifact,
                           evaluation: Sequence[Feeds], target: Target,
                           protocol: MeasurementProtocol, batches: Sequence[int],
                           workdir: Path, options: CompileOptions = DEFAULT_OPTIONS
                           ) -> ThroughputFacts:
        """Each batch size run back to back, synchronously (TVM's VM has no request queue):
        batch 1 on the measured library, another batch on the model built for it in
        ``workdir`` (untuned, with what the tuning database already holds for its kernels)."""
        if not target.is_local or tvm_target_dict(target)["kind"] != "llvm":
            return ThroughputFacts(error="TVM throughput is measured on local CPU targets only")
        return each_batch(batches, lambda requested: self._throughput_point(
            model, artifact, evaluation, target, protocol, requested, Path(workdir), options))

    def _throughput_point(self, model: QuantizedModel, artifact: Artifact,
                          evaluation: Sequence[Feeds], target: Target,
                          protocol: MeasurementProtocol, requested: int, workdir: Path,
                          options: CompileOptions) -> ThroughputPoint:
        import tvm
        from tvm import relax

        names = artifact.state["input_names"]
        model_batch = evaluation[0][names[0]].shape[0]
        batch, note = batch_of([evaluation[0][name].shape for name in names], requested)
        library, mode = artifact.path, "synchronous, the measured library"
        if batch != model_batch:
            folder = workdir / f"batch{batch}"
            folder.mkdir(parents=True, exist_ok=True)
            rebatched = QuantizedModel(rebatch_onnx(model.path, batch, folder / "model.onnx"),
                                       model.config, model.precision_hint, model.source_hash)
            built = self.compile(rebatched, target, folder,
                                 CompileOptions(tuning_trials=0, cache_dir=options.cache_dir))
            applied = built.tuning.records_applied if built.tuning else 0
            library = built.path
            mode = (f"synchronous, built for batch {batch} "
                    + (f"({applied} kernels from the tuning database)" if applied
                       else "(untuned)"))
        device = tvm.cpu(0)
        session = _TVMSession(relax.VirtualMachine(tvm.runtime.load_module(str(library)),
                                                   device), device, names)
        prepared = []
        for feeds in batched_feeds(evaluation, batch, model_batch):
            session.set_inputs(feeds)
            prepared.append(session._args)

        def submit(index: int) -> None:
            session._args = prepared[index % len(prepared)]
            session.run()

        timed = timed_window(submit, lambda: None, protocol, warmup=protocol.warmup_runs)
        produced = session.outputs()[0].shape
        if produced and produced[0] != batch:
            raise ValueError(f"the graph does not take batch {batch}: its first output has "
                             f"shape {list(produced)}")
        return point(requested, batch, timed, mode, note)


def _tuning_facts(report: dict | None) -> TuningFacts | None:
    """The typed part of ``tune``'s report (also read from trials stored before it existed)."""
    if not report:
        return None
    return TuningFacts(trials_requested=int(report["trials_requested"]),
                       trials_run=int(report.get("trials_run", 0)),
                       tuning_s=float(report.get("tuning_s", 0.0)),
                       records_applied=int(report.get("database_records_applied", 0)))


def _load_remote(artifact: Artifact, target: Target):
    """Upload the library to the target's device through its tracker and load it there;
    returns the module, the device and the device's description of itself."""
    from autotune.backends.remote import connect, device_info

    reach = target.reach
    session = connect(reach.host, reach.port, reach.key)
    info = DeviceFacts.from_json(device_info(session))
    # A name unique to this artifact: TVM caches loaded libraries by path in a process.
    name = f"{hashlib.sha256(str(artifact.path).encode()).hexdigest()[:12]}-model.so"
    session.upload(str(artifact.path), name)
    device = session.cuda(0) if tvm_target_dict(target)["kind"] == "cuda" else session.cpu(0)
    module = session.load_module(name)
    module._autotune_session = session  # the session lives as long as the module
    return module, device, info


class _TVMSession(Session):
    def __init__(self, vm, device, input_names: list[str]) -> None:
        import tvm

        self._tvm = tvm
        self._vm = vm
        self._device = device
        self._names = input_names
        self._args: list = []
        self._result = None

    def set_inputs(self, feeds: Feeds) -> None:
        self._args = [self._tvm.runtime.tensor(np.ascontiguousarray(feeds[name]), self._device)
                      for name in self._names]

    def run(self) -> None:
        self._result = self._vm["main"](*self._args)
        self._device.sync()

    def outputs(self) -> list[np.ndarray]:
        result = self._result
        items = [result] if hasattr(result, "numpy") else list(result)
        return [item.numpy() for item in items]


class _DeviceTimedSession(_TVMSession):
    """A VM on a remote device or a GPU: the device times each run (the VM's time
    evaluator), so neither the RPC round trip nor an asynchronous launch is counted.

    The time evaluator always runs the function once untimed before it times (TVM's
    ``WrapTimeEvaluator``, whatever ``number``, ``repeat`` or ``f_preproc``), so it cannot
    time a cold start. The first run is timed by a clock on the device instead: a local GPU's
    is this process's (around the call and a device sync); a remote device's is
    ``autotune.time_call``, served by ``autotune worker``. A plain TVM RPC server has no such
    function: the first run is then the evaluator's, and labelled warm.
    """

    def __init__(self, vm, device, input_names: list[str], runs_here: bool,
                 rpc_session=None) -> None:
        super().__init__(vm, device, input_names)
        # A remote device runs the timed code: this host's state is not what it ran under
        # (the device reports none through plain TVM RPC).
        self.runs_here = runs_here
        # number=1, repeat=1: one timed run per call (after one discarded run).
        self._evaluator = vm.time_evaluator("main", device, number=1, repeat=1)
        self._rpc = rpc_session  # None: a local GPU

    def timed_run(self) -> float:
        return float(self._evaluator(*self._args).results[0]) * 1e3

    def timed_first_run(self) -> float:
        if self._rpc is None:
            return Session.timed_run(self)  # this host's clock around the call and a sync
        from autotune.backends.remote import TIME_CALL_FUNCTION

        try:
            time_call = self._rpc.get_function(TIME_CALL_FUNCTION)
        except Exception:  # noqa: BLE001 - TVM raises its own error type for a missing function
            self.first_run_warm = True
            return self.timed_run()
        return float(time_call(self._vm.module, "main", self._device.dlpack_device_type(),
                               self._device.index, *self._args))


def _cuda_requirement(tvm) -> Requirement:
    if tvm.cuda(0).exist:
        return Requirement("CUDA device", True, tvm.cuda(0).device_name)
    import ctypes.util

    if shutil.which("nvidia-smi") is None and ctypes.util.find_library("cuda") is None:
        return Requirement("CUDA device", False, "no CUDA device: nvidia-smi/libcuda not found",
                           "a machine with an NVIDIA GPU and its driver")
    return Requirement("CUDA device", False,
                       "no CUDA device: the driver is installed but TVM sees no GPU",
                       "check nvidia-smi, and that apache-tvm is built with CUDA")


def host_compiler_requirement() -> Requirement:
    """The compiler that links TVM's libraries here (``export_library``), found as TVM finds
    it (``tvm.support.cc.get_cc``: ``$CXX``, else ``$CC``, else g++, gcc, clang++, clang,
    c++ or cc on PATH). Without one every TVM compile fails at its last step."""
    from tvm.support.cc import get_cc

    compiler = get_cc()
    what = "C/C++ compiler (links TVM's libraries)"
    if compiler is None:
        return Requirement(what, False, "no C/C++ compiler: $CXX and $CC are unset and none of "
                                        "g++, gcc, clang++, clang, c++, cc is on PATH",
                           "apt-get install g++, or set CXX to a compiler")
    path = shutil.which(compiler)
    if path is None:
        return Requirement(what, False, f"the C/C++ compiler {compiler!r} (from $CXX or $CC) "
                                        f"is not an executable", "set CXX to a compiler")
    return Requirement(what, True, path)


def _cross_compiler_requirement(compiler: str) -> Requirement:
    path = shutil.which(compiler)
    return Requirement(f"cross compiler {compiler}", path is not None,
                       path or f"cross compiler {compiler} not found",
                       "" if path else f"Debian: apt-get install "
                                       f"gcc-{compiler.removesuffix('-gcc')}")


def cross_compiler(target: Target) -> str | None:
    """The C compiler that links a library for the target's CPU, when it is not this host's
    (``aarch64-linux-gnu-gcc`` for an ``aarch64-linux-gnu`` triple); None for native code."""
    import tvm

    spec = tvm_target_dict(target)
    triple = spec.get("mtriple") if spec else None
    if spec is None or spec["kind"] != "llvm" or not triple:
        return None
    host_arch = tvm.target.codegen.llvm_get_system_triple().split("-")[0]
    if triple.split("-")[0] == host_arch:
        return None
    return f"{triple}-gcc"


def gpu_default_schedules(mod):
    """DLight's default GPU schedules (inside a target scope): every kernel gets thread
    bindings, the matmuls and reductions a tiled schedule."""
    from tvm.s_tir import dlight as dl

    return dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                   dl.gpu.GeneralReduction(), dl.gpu.Fallback())(mod)


def resolve_target(target: Target) -> dict:
    """The target's TVM dict, with ``mcpu = "native"`` resolved and the core count set."""
    import tvm

    spec = dict(tvm_target_dict(target))
    if spec["kind"] == "llvm":
        if spec.get("mcpu") == "native":
            spec["mcpu"] = tvm.target.codegen.llvm_get_system_cpu()
        spec.setdefault("num-cores", target.threads)
    return spec


def load_tensor_intrinsics(tvm_target: dict) -> None:
    """Register the tensor intrinsics that kernels for this target can use, and no others.

    MetaSchedule imports ``tvm.s_tir.tensor_intrin``, which registers every vendor's
    intrinsics: 41 s on this 2-core machine (CUDA's alone 28 s), paid again by every
    compile, since each trial runs in a fresh process. Where the package is not imported
    yet, an empty stand-in takes its place and only the target's module is imported into
    it (2 s); MetaSchedule's own import then finds the package loaded. On x86 the VNNI
    intrinsic is also made to build (see ``use_vnni_intrinsic``): tuning records use it.
    """
    import importlib

    from autotune.backends.tvm_layout import intrinsics_package, use_vnni_intrinsic

    package = intrinsics_package()
    if tvm_target["kind"] == "llvm":
        modules = [cpu_family(tvm_target)]
    else:
        modules = ["cuda"] if tvm_target["kind"] == "cuda" else ["cuda", "rocm", "x86",
                                                                 "arm_cpu", "hexagon"]
    for module in modules:
        importlib.import_module(f"{package}.{module}")
    if modules == ["x86"]:
        use_vnni_intrinsic()


def cpu_family(tvm_target: dict) -> str | None:
    """``x86`` or ``arm_cpu`` (TVM's names for their tensor intrinsics) for an LLVM target,
    None for a GPU."""
    if tvm_target["kind"] != "llvm":
        return None
    return "arm_cpu" if tvm_target.get("mtriple", "").startswith(("aarch64", "arm")) else "x86"


def import_onnx(path: Path):
    """ONNX -> Relax with the model's static input shapes; returns (module, input names)."""
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    from autotune.data import model_inputs

    specs = model_inputs(path)
    mod = from_onnx(onnx.load(str(path)),
                    shape_dict={spec.name: list(spec.shape) for spec in specs},
                    dtype_dict={spec.name: str(spec.dtype) for spec in specs},
                    keep_params_in_input=False)
    return mod, [spec.name for spec in specs]


# Bumped when the kernels' TIR changes in a way old records cannot serve. 2: canonical
# block names (see canonical_block_names).
DATABASE_FORMAT = 2


def tuning_dir(cache_dir: Path, tvm_target) -> Path:
    """One tuning database per TVM version and target: an upgrade never reuses old records."""
    key = hashlib.sha256(str(tvm_target).encode()).hexdigest()[:12]
    tvm_version = version("apache-tvm")
    return Path(cache_dir) / "tvm-tuning" / f"tvm{tvm_version}-{key}-f{DATABASE_FORMAT}"


def canonical_block_names(mod):
    """Name every kernel's blocks by position (``b0``, ``b1``, ...; ``root`` stays).

    MetaSchedule's database keys a workload by structural equality, which ignores names,
    but a tuning record's trace finds blocks by name. Reductions name their block after the
    Relax variable they read (``lv56_red``), so the same kernel in two models or configs had
    two names: the second's record was filed under the first's workload, and from then on
    the database failed to load (\"GetSBlock: lv77_red not found\"). Positional names are
    the same for every structurally equal kernel.
    """
    from tvm import s_tir, tirx

    def rename(stmt, counter):
        if isinstance(stmt, s_tir.SBlockRealize):
            return s_tir.SBlockRealize(stmt.iter_values, stmt.predicate,
                                       rename(stmt.block, counter), stmt.span)
        if isinstance(stmt, s_tir.SBlock):
            name = stmt.name_hint if stmt.name_hint == "root" else f"b{next(counter)}"
            init = None if stmt.init is None else rename(stmt.init, counter)
            return s_tir.SBlock(stmt.iter_vars, stmt.reads, stmt.writes, name,
                                rename(stmt.body, counter), init, stmt.alloc_buffers,
                                stmt.match_buffers, stmt.annotations, stmt.span)
        if isinstance(stmt, tirx.For):
            return tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind,
                            rename(stmt.body, counter), stmt.thread_binding, stmt.annotations,
                            stmt.step, stmt.span)
        if isinstance(stmt, tirx.SeqStmt):
            return tirx.SeqStmt([rename(child, counter) for child in stmt.seq], stmt.span)
        return stmt  # a leaf: legalized kernels nest blocks only in the statements above

    for gvar, function in list(mod.functions.items()):
        if isinstance(function, tirx.PrimFunc):
            mod[gvar] = function.with_body(rename(function.body, itertools.count()))
    return mod


def _read_database(database_dir: Path):
    from tvm.s_tir import meta_schedule as ms

    try:
        return ms.database.JSONDatabase(work_dir=str(database_dir))
    except RuntimeError as error:
        raise RuntimeError(f"the TVM tuning database {database_dir} cannot be read "
                           f"({error}); move it away to tune afresh") from error


def tune(mod, tvm_target, trials: int, database_dir: Path, tools: tuple | None = None):
    """Tune the module's kernels with MetaSchedule into the shared database.

    Returns the tuning report and the database as read under its lock once tuning is done
    (None where there is none), for the build to apply.

    The budget is split over tasks in proportion to their FLOPs (times how often each kernel
    is called), in whole search batches with a floor of one per task, so every kernel leaves
    TVM's naive default loops. A workload that the database already holds with at least the
    trials this model would give it is not tuned again, so a second run of the same space
    (or another config or model containing the same kernel) costs no tuning.
    """
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.analysis import estimate_tir_flops

    report = {"trials_requested": trials, "database": str(database_dir), "tasks": [],
              "trials_run": 0, "tuning_s": 0.0, "database_records_applied": 0}
    if trials == 0 and not database_dir.exists():
        return report, None  # untuned, and nothing tuned before: no database to make
    database_dir.mkdir(parents=True, exist_ok=True)
    tasks = ms.relax_integration.extract_tasks(mod, tvm_target)
    with _locked(database_dir / "lock"):
        spent_path = database_dir / "trials_spent.json"
        spent = json.loads(spent_path.read_text()) if spent_path.exists() else {}
        if trials > 0 and tasks:
            costs = [task.weight * max(float(estimate_tir_flops(task.dispatched[0])), 1.0)
                     for task in tasks]
            todo, budgets = [], []
            for task, cost in zip(tasks, costs, strict=True):
                budget = _whole_batches(trials * cost / sum(costs))
                done = spent.get(_workload_key(task), 0)
                report["tasks"].append({"task": task.task_name, "budget": budget,
                                        "already_tuned": done})
                if done < budget:
                    todo.append(task)
                    budgets.append(budget - done)
            if todo:
                start = time.perf_counter()
                measured, exhausted = [0] * len(todo), [False] * len(todo)
                for batch in (SMALL_BATCH, LARGE_BATCH):
                    group = [i for i, budget in enumerate(budgets)
                             if _batch_size(budget) == batch]
                    if group:
                        counts, dry = _tune_tasks(
                            [todo[i] for i in group], [budgets[i] for i in group], batch,
                            tvm_target, database_dir, tools)
                        for i, count, ran_dry in zip(group, counts, dry, strict=True):
                            measured[i], exhausted[i] = count, ran_dry
                report["tuning_s"] = time.perf_counter() - start
                report["trials_run"] = sum(measured)
                for task, budget, count, dry in zip(todo, budgets, measured, exhausted,
                                                    strict=True):
                    key = _workload_key(task)
                    # A task whose search space ran dry is as tuned as it can get.
                    spent[key] = spent.get(key, 0) + (max(count, budget) if dry else count)
                spent_path.write_text(json.dumps(spent, indent=1, sort_keys=True))
        database = _read_database(database_dir)
        report["database_records_applied"] = sum(
            1 for task in tasks if database.has_workload(task.dispatched[0]))
    return report, database


def _workload_key(task) -> str:
    from tvm_ffi import structural_hash

    return f"{task.task_name}:{structural_hash(task.dispatched[0]) & 0xFFFFFFFFFFFF:x}"


def _batch_size(budget: float) -> int:
    return LARGE_BATCH if budget >= 0.75 * LARGE_BATCH else SMALL_BATCH


def _whole_batches(share: float) -> int:
    """A task's share of the trials, rounded to whole batches of its size (at least one)."""
    batch = _batch_size(share)
    return max(1, round(share / batch)) * batch


def _tune_tasks(tasks: list, budgets: list[int], batch: int, tvm_target, database_dir: Path,
                tools: tuple | None = None) -> tuple[list[int], list[bool]]:
    """One MetaSchedule session over ``tasks``, measuring ``batch`` candidates per search;
    returns the trials measured per task and whether each task's search space ran out
    before its budget. ``tools``: the (builder, runner) pair; None builds and measures on
    this host."""
    from tvm.s_tir import meta_schedule as ms

    builder, runner = tools or (
        ms.builder.LocalBuilder(max_workers=os.cpu_count() or 1, timeout_sec=120,
                                f_build=fast_build),
        ms.runner.LocalRunner(timeout_sec=60, evaluator_config=_evaluator_config()))

    _drop_unnamed_metaschedule_handlers()
    scheduler = _proportional_scheduler_class()(budgets)
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        tasks, work_dir=str(database_dir),
        strategy=ms.search_strategy.EvolutionarySearch(population_size=SEARCH_POPULATION),
        num_threads=int(tvm_target.attrs.get("num-cores", 1)), seed=0)
    ms.tune_tasks(
        tasks=contexts, task_weights=weights, work_dir=str(database_dir),
        # The scheduler enforces the per-task budgets; these are only outer bounds.
        max_trials_global=sum(budgets) + batch * len(budgets),
        max_trials_per_task=max(budgets) + batch,
        num_trials_per_iter=batch,
        builder=builder, runner=runner,
        database=_read_database(database_dir),
        cost_model="xgb", task_scheduler=scheduler,
    )
    return scheduler.measured, scheduler.exhausted


def _drop_unnamed_metaschedule_handlers() -> None:
    """MetaSchedule configures its logger anew for each tuning session, by the names of the
    handlers the logger holds; one without a name (pytest's log capture attaches two) makes
    the second session in a process fail (``None.format``). A trial's worker tunes once, the
    Python API and the tests more often."""
    import logging

    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    for handler in [handler for handler in logger.handlers if handler.get_name() is None]:
        logger.removeHandler(handler)


def _tuning_tools(target: Target) -> tuple | None:
    """MetaSchedule's builder and runner for a remote target: candidates are built here (and
    cross-linked) and measured on the device through the tracker. None: a local target."""
    if target.is_local:
        return None
    from tvm.s_tir import meta_schedule as ms

    cc = cross_compiler(target)
    builder = ms.builder.LocalBuilder(
        max_workers=os.cpu_count() or 1, timeout_sec=120, f_build=fast_build,
        f_export=functools.partial(export_shared, cc=cc) if cc else None)
    runner = ms.runner.RPCRunner(
        ms.runner.RPCConfig(tracker_host=target.reach.host, tracker_port=target.reach.port,
                            tracker_key=target.reach.key, session_timeout_sec=600),
        evaluator_config=_evaluator_config(), max_workers=1)
    return builder, runner


def _evaluator_config():
    """How MetaSchedule times one candidate, locally or on a device."""
    from tvm.s_tir import meta_schedule as ms

    return ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=20)


def export_shared(mod, cc: str) -> str:
    """MetaSchedule export: a shared library linked by ``cc`` (the device needs no compiler;
    TVM's default exports a tar that the device links itself)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="autotune-ms-")) / "candidate.so"
    mod.export_library(str(path), cc=cc)
    return str(path)


def _proportional_scheduler_class():
    """A MetaSchedule task scheduler that gives each task its own trial budget.

    TVM's gradient scheduler chases the task with the best estimated gain and can spend a
    whole small budget on one kernel; this one always continues the task furthest from its
    budget (trials measured / budget), so the budget is spread as planned.
    """
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.task_scheduler import PyTaskScheduler

    @derived_object
    class ProportionalTaskScheduler(PyTaskScheduler):
        def __init__(self, budgets: list[int]) -> None:
            super().__init__()
            self.budgets = list(budgets)
            self.measured = [0] * len(budgets)
            self.running = [False] * len(budgets)
            self.exhausted = [False] * len(budgets)

        def next_task_id(self) -> int:
            scheduler = self._outer()
            for task_id, running in enumerate(self.running):
                # A task whose search space ran dry is terminated and has nothing to join.
                if running and scheduler.tasks_[task_id].is_terminated:
                    self.exhausted[task_id] = self.measured[task_id] < self.budgets[task_id]
                elif running:
                    self.measured[task_id] += len(scheduler.join_running_task(task_id))
                self.running[task_id] = False
            open_tasks = [task_id for task_id, budget in enumerate(self.budgets)
                          if self.measured[task_id] < budget
                          and not scheduler.tasks_[task_id].is_terminated]
            if not open_tasks:
                return -1
            task_id = min(open_tasks, key=lambda i: self.measured[i] / self.budgets[i])
            self.running[task_id] = True
            return task_id

    return ProportionalTaskScheduler


def fast_build(mod, target, _params):
    """MetaSchedule's builder, minus its import of every vendor's tensor intrinsics.

    The default build imports ``tvm.s_tir.tensor_intrin`` in each fresh builder process,
    which takes 10-30 s on a small machine and makes the first builds time out; tensorized
    kernels already carry their intrinsic bodies, so the import is not needed to build.
    """
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm_build(mod, target=target)


@contextmanager
def _locked(path: Path):
    """Serialize tuning into one database across concurrent runs."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
