"""The one module that knows which Keras backend runs the engine: the gradient of a loss with respect to the input
image and its compilation, the Gram matrix's hand-written gradient, device and memory queries, and versions.
Everything else in the engine speaks ``keras.ops`` and NumPy, so the same code runs on TensorFlow (the default)
and on JAX (``KERAS_BACKEND=jax``). Under JAX, TensorFlow is never imported.

    grad_fn = value_and_grad(fn)           # fn(x, params, *args) -> (objective, aux)
    aux, grad = grad_fn(x, params, *args)  # aux: any nest of tensors; grad: d objective / d x

``params`` are the frozen network's weights (``FeatureExtractor.params``). JAX compiles them in as arguments
(closing over them would bake 80 MB of VGG19 into the compiled program); TensorFlow gets None and either reads the
variables itself or, for a bfloat16 network's whole-image loss of a small image on a CPU with AMX, takes their
values as constants of the graph (``graph_constants``; ``objective.inline_weights_pay``).
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from .errors import NSTError

SUPPORTED = ("tensorflow", "jax")


def name() -> str:
    """The Keras backend in use: 'tensorflow' or 'jax' (set with ``KERAS_BACKEND`` before Keras is imported)."""
    return keras.backend.backend()


def check() -> str:
    """The backend's name, or a one-line error when the engine cannot run on it."""
    backend = name()
    if backend not in SUPPORTED:
        raise NSTError(f"the engine runs on TensorFlow or JAX, not {backend!r}: set KERAS_BACKEND=tensorflow or jax")
    return backend


def require_tensorflow(what: str) -> None:
    """The generative models train with TensorFlow (tf.data, GradientTape in ``train_step``): fail at once, in one
    line, under another backend."""
    if name() != "tensorflow":
        raise NSTError(f"{what} trains with TensorFlow only; run with KERAS_BACKEND=tensorflow (now: {name()})")


# --- the image gradient -------------------------------------------------------------------------------------
def value_and_grad(fn: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[Any, Any]]:
    """Compile ``fn(x, params, *args) -> (objective, aux)`` into ``g(x, params, *args) -> (aux, d objective/d x)``.
    Only ``x`` is differentiated; the network's weights never get a gradient. Shapes may vary between calls
    (tiles of several sizes): TensorFlow traces once for unknown sizes, JAX compiles once per shape."""
    if check() == "jax":
        import jax

        def objective(x, params, *args):
            value, aux = fn(x, params, *args)
            return value, aux

        grad = jax.jit(jax.value_and_grad(objective, has_aux=True))

        def run(x, params, *args):
            (_, aux), g = grad(x, params, *args)
            return aux, g

        return run

    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def run(x, params, *args):
        # Keras' frozen weights are still trainable tf.Variables underneath: watch only the image, so no weight
        # gradient is ever built
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            value, aux = fn(x, params, *args)
        return aux, tape.gradient(value, x)

    return _Compiled(run)


class _Compiled:
    """A TensorFlow ``tf.function`` called as the JAX version is, ``(x, params, *args)``; ``compiled`` is the
    ``tf.function`` itself (for graph inspection).

    Every call runs one trace whose images, features and masks have unknown sizes (``_size_free``), traced before
    the first call. Left to itself, ``reduce_retracing`` traces the first size it sees with its exact shape and
    later sizes with unknown ones, and the two graphs round differently (one unit in the last place of the loss):
    an image's result then depended on which sizes the process had evaluated before, and a run of hundreds of
    L-BFGS steps ends somewhere visibly different (f(C, C) at SSIM 0.72 against 0.74). One trace for all sizes is
    as fast (0.33 s against 0.33 s a float32 evaluation at 256 px, 0.094-0.098 s in bfloat16) and traces less."""

    def __init__(self, compiled):
        self.compiled = compiled
        self._traced: set = set()

    def __call__(self, x, params, *args):
        import tensorflow as tf

        call = (x, None, *args)
        specs = tf.nest.map_structure(_size_free, call)
        key = str(specs)
        if key not in self._traced:
            self.compiled.get_concrete_function(*specs)
            self._traced.add(key)
        return self.compiled(*call)


def _size_free(value):
    """A TensorSpec of ``value`` with every dimension but the last unknown for arrays of rank 3 or more (images,
    features, masks, a stack of style Grams: their sizes and counts vary; channels do not), and unknown length for
    vectors (the styles' blend weights: one per style); matrices (a Gram's quadratic form, fixed by its layer),
    scalars and non-arrays keep what they are. TensorFlow widens a spec against the traces it already has, so a
    length kept exact would again trace differently after another length had run."""
    import tensorflow as tf

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    shape = tuple(value.shape)
    if len(shape) >= 3:
        shape = (None,) * (len(shape) - 1) + shape[-1:]
    elif len(shape) == 1:
        shape = (None,)
    return tf.TensorSpec(shape, tf.as_dtype(value.dtype))


def compile_forward(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Compile a forward-only function ``fn(x, params, *args)`` (features and Grams of a tile, targets)."""
    if check() == "jax":
        import jax

        return jax.jit(fn)

    import tensorflow as tf

    return _Compiled(tf.function(fn, reduce_retracing=True))


def gram(flat):
    """Fᵀ F for (B, M, N) features, with one matmul in the backward pass instead of autodiff's two
    (dL/dF = F (dG + dGᵀ)) and no transposed copy of F in the forward pass."""
    return _gram_fn()(flat)


@functools.cache
def _gram_fn():
    if check() == "jax":
        import jax
        import jax.numpy as jnp

        @jax.custom_vjp
        def g(f):
            return jnp.einsum("bmc,bmd->bcd", f, f)

        def forward(f):
            return g(f), f

        def backward(f, dg):
            return (jnp.matmul(f, dg + jnp.swapaxes(dg, -1, -2)),)

        g.defvjp(forward, backward)
        return g

    import tensorflow as tf

    @tf.custom_gradient
    def g(f):
        def grad(dg):
            return tf.linalg.matmul(f, dg + tf.linalg.matrix_transpose(dg))

        return tf.linalg.matmul(f, f, transpose_a=True), grad

    return g


def squared_difference_means(images):
    """The two terms of the squared total variation of NHWC images: the mean of (x[:, i+1] - x[:, i])² and of
    (x[:, :, j+1] - x[:, :, j])². An image one pixel high (wide) has no vertical (horizontal) differences: that term is
    0, as in ``losses.tv_loss_and_grad``, which the tiled evaluation adds (the mean of nothing was NaN here, a
    non-finite loss even with ``tv_weight=0``).

    TensorFlow takes the differences against a rolled copy and masks out the wrapped-around row (column): its
    gradient of a slice (StridedSliceGrad) is a slow kernel of its own, 1.4 ms a slice at 256 px on the CPU, where a
    roll's gradient is a roll (with the preprocessing's channel reversal, the slices' gradients were 5 % of the
    kernels' time in a bfloat16 evaluation of VGG19). JAX slices, which cost it little."""
    if check() == "jax":
        dy = images[:, 1:] - images[:, :-1]
        dx = images[:, :, 1:] - images[:, :, :-1]
        return (dy * dy).sum() / max(dy.size, 1), (dx * dx).sum() / max(dx.size, 1)

    import tensorflow as tf

    x = tf.convert_to_tensor(images)
    shape = tf.shape(x)
    h, w, n = shape[1], shape[2], tf.cast(shape[0] * shape[3], x.dtype)
    dy = tf.roll(x, -1, axis=1) - x  # row i: x[i+1] - x[i], the last row wrapped round (masked)
    dx = tf.roll(x, -1, axis=2) - x
    keep_y = tf.cast(tf.range(h) < h - 1, x.dtype)[None, :, None, None]
    keep_x = tf.cast(tf.range(w) < w - 1, x.dtype)[None, None, :, None]
    vertical = tf.reduce_sum(tf.square(dy) * keep_y) / (n * tf.cast(tf.maximum((h - 1) * w, 1), x.dtype))
    horizontal = tf.reduce_sum(tf.square(dx) * keep_x) / (n * tf.cast(tf.maximum(h * (w - 1), 1), x.dtype))
    return vertical, horizontal


def graph_constants(variables) -> list | None:
    """Inside a TensorFlow function being traced: the variables' current values as constants of its graph; None
    elsewhere (eager code, JAX). The caller keeps the variables for eager use and for tracing with variables."""
    if name() != "tensorflow":
        return None
    import tensorflow as tf

    if not tf.inside_function():
        return None
    # read the values eagerly, outside the graph being built (Keras' autocast and stateless scopes are Python state
    # that init_scope keeps: no caller reads weights inside one)
    with tf.init_scope():
        values = [np.asarray(v.numpy()) for v in variables]
    return [tf.constant(v) for v in values]


def to_numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


# --- devices, memory, versions ----------------------------------------------------------------------------
def gpu_available() -> bool:
    if name() == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


@functools.cache  # read once: every Objective asks (inline_weights_pay), and a CPU does not change
def _cpuinfo(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ('model name', 'flags', ...); empty where there is none."""
    fields: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break  # the first processor's block is enough: the cores of one machine are alike
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model(path: str = "/proc/cpuinfo") -> str:
    """The processor's model name ('AMD EPYC', 'Intel(R) Xeon(R) Platinum 8480+'): results measured on one CPU
    model compare with each other, not with another's. Falls back to the platform's processor or architecture."""
    return _cpuinfo(path).get("model name") or platform.processor() or platform.machine()


def cpu_bf16_instructions(path: str = "/proc/cpuinfo") -> list[str]:
    """Which bfloat16 instructions the CPU has: ``amx_bf16`` (Intel AMX matrix units) and ``avx512_bf16`` (vector
    dot products), as /proc/cpuinfo names them; empty elsewhere."""
    flags = set(_cpuinfo(path).get("flags", "").split())
    return [flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags]


def cpu_has_bf16_matmul() -> bool:
    """The CPU computes bfloat16 products in hardware, which oneDNN's convolutions use: Intel AMX's matrix units
    (``amx_bf16``) or AVX512-BF16's dot products (``avx512_bf16``: AMD Zen 4 and later, Intel Cooper Lake and later).
    Measured (``benchmarks/bench_precision.py``): a bfloat16 step took 1/2.9-1/3.5 of float32's on an Intel CPU with
    AMX and 1/1.83-1/1.80 on an AMD EPYC with AVX512-BF16. Linux only, False elsewhere; ``NST_CPU_BF16=0`` or ``=1``
    overrides the detection."""
    forced = os.environ.get("NST_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    return bool(cpu_bf16_instructions())


def device_name() -> str:
    """'GPU: <model>' or 'CPU: <model name>' for run records and results files."""
    if name() == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if gpus:
            return "GPU: " + getattr(gpus[0], "device_kind", str(gpus[0]))
    else:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            try:
                return "GPU: " + tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
            except Exception:  # details are best effort
                return "GPU: " + gpus[0].name
    return f"CPU: {cpu_model()}"


def machine() -> dict:
    """The machine a result was measured on, for results files (benchmarks, notebooks' numbers.json): the device (a
    CPU by its model name), cores, the CPU's bfloat16 instructions, the platform and library versions. The machine
    lent to a session changes, and figures compare only within one CPU model."""
    return {
        "device": device_name(),
        "cpu_count": os.cpu_count(),
        "cpu_bf16": cpu_bf16_instructions(),
        "platform": platform.platform(),
        **versions(),
    }


def device_memory_bytes() -> int | None:
    """The accelerator's memory, or None on CPU (the memory budget then comes from RAM)."""
    try:
        if name() == "jax":
            import jax

            for d in jax.devices():
                if d.platform == "gpu":
                    stats = d.memory_stats() or {}
                    return int(stats.get("bytes_limit", 0)) or None
            return None
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            return None
        return None  # TensorFlow reports no total; the budget's GPU default applies
    except Exception:  # a query that fails must not stop a run
        return None


def _vm_hwm_kb() -> int | None:
    """Linux's peak resident set size of this process image (``VmHWM``, KB). Unlike ``ru_maxrss``, which a process
    started from a large one (a notebook kernel) inherits through fork and exec, it starts again at exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_memory_mb() -> dict[str, float]:
    """Peak memory of this process so far, in MB: ``host`` (peak resident set size; absent where the platform
    cannot say) and, under JAX on a GPU, ``gpu`` (the allocator's peak)."""
    out: dict[str, float] = {}
    hwm = _vm_hwm_kb()
    if hwm is not None:
        out["host"] = round(hwm / 2**10, 1)
    else:
        try:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, bytes on macOS
            out["host"] = round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)
        except ImportError:  # Windows
            pass
    if name() == "jax" and gpu_available():
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            out["gpu"] = round(stats["peak_bytes_in_use"] / 2**20, 1)
    return out


@functools.cache
def return_large_buffers() -> bool:
    """Make the C heap give large freed buffers back to the system (Linux, glibc; elsewhere nothing happens).

    A tiled high-resolution run allocates and frees image- and tile-sized buffers of many sizes. By default glibc
    raises its mmap threshold after each large free and serves later large requests from per-thread heaps that it
    rarely returns, so the resident memory grows beyond what is in use. Fixing the threshold at 1 MiB (buffers
    above it are mapped and unmapped) and capping the heaps at two lowered a tiled 1920 × 1080 run's peak by about
    10 % at the same speed. Called once the first time an image is tiled; ``NST_MALLOC_TUNING=0`` leaves the
    allocator alone (the settings hold for the whole process). True when it took effect."""
    if sys.platform != "linux" or os.environ.get("NST_MALLOC_TUNING", "1") == "0":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        m_mmap_threshold, m_arena_max = -3, -8  # from glibc's malloc.h
        return bool(libc.mallopt(m_mmap_threshold, 2**20)) and bool(libc.mallopt(m_arena_max, 2))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


def ram_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def versions() -> dict[str, str]:
    from . import __version__

    out = {"nst_lib": __version__, "backend": name(), "keras": keras.__version__}
    if name() == "jax":
        import jax

        out["jax"] = jax.__version__
    else:
        import tensorflow as tf

        out["tensorflow"] = tf.__version__
    out.update(numpy=np.__version__, python=sys.version.split()[0], platform=platform.platform())
    return out
