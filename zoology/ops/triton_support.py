"""Optional Triton for the fused kernels in zoology.ops (poly_attention, selective_scan).

`triton` and `tl` are None where triton is not installed, and `jit` then leaves a kernel a plain,
never-launched function, so every op module imports everywhere. With TRITON_INTERPRET=1 set
before triton is first imported, kernels run in Triton's interpreter on CPU tensors (`INTERPRETED`,
for tests); its 3.5 release turns a loop bound or scalar argument into an int with int(array), which
NumPy >= 2.4 refuses, so this module makes the interpreter read the single element instead.
"""

from __future__ import annotations

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = tl = None


def jit(fn):
    """triton.jit where triton is installed; elsewhere the plain function."""
    return triton.jit(fn) if triton is not None else fn


def _probe():
    pass


INTERPRETED = triton is not None and not isinstance(jit(_probe), triton.runtime.JITFunction)


def _interpreter_reads_one_element_bounds() -> None:
    from triton.runtime import interpreter

    patch_tensor = interpreter._patch_lang_tensor

    def patched(tensor, *args, **kwargs):
        patch_tensor(tensor, *args, **kwargs)
        tensor.__index__ = lambda self: int(self.handle.data.reshape(-1)[0])

    interpreter._patch_lang_tensor = patched


if INTERPRETED and hasattr(triton.runtime, "interpreter"):
    _interpreter_reads_one_element_bounds()
