"""Build of nis_fast._C: C++/OpenMP always, CUDA when nvcc is there.

NIS_FAST_CUDA=0 skips CUDA, NIS_FAST_CUDA=1 requires it, unset builds it when
nvcc is found. CUDA objects are compiled by nvcc through a small ninja file
(incremental rebuilds), for sm_80, sm_90 and PTX of compute_90 (JIT for newer
GPUs), and cudart is linked statically so one build imports with or without a
GPU driver. NIS_FAST_CUDA_ARCHS="80;90" overrides the list of SASS targets.
"""
import glob
import os
import platform
import shutil
import subprocess

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
# -fno-trapping-math: nothing here reads floating-point exception flags, and without it GCC
# will not turn the branch-free lane loops of the triangle packets (bvh.h) into vector code.
# -ffp-contract=off: no fused multiply-adds behind the code's back, so every ISA rounds the
# same way (the embedding certificate and the crossing tests reason about that rounding).
CXX_FLAGS = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-std=c++17"]
# The module is compiled on the machine that installs it, so on x86-64 it takes that CPU's
# vector width: with AVX2 each float32 step of the 8-wide node tests is one instruction, not two
# as at SSE4.2 (x86-64-v2); benchmarks/RESULTS.md has the figures.
# Set NIS_FAST_CPU_ARCH=x86-64-v2 (or another -march value) for a build meant for other machines.
_default_arch = "native" if platform.machine().lower() in ("x86_64", "amd64") else ""
CPU_ARCH = os.environ.get("NIS_FAST_CPU_ARCH", _default_arch).strip()
if CPU_ARCH:
    CXX_FLAGS.append(f"-march={CPU_ARCH}")

# The instruction-set extensions that CPU_ARCH lets the compiler emit, as /proc/cpuinfo names
# them: the vector and bit-manipulation ones, which compiled arithmetic can contain.
ISA_MACROS = {
    "__SSE3__": "pni", "__SSSE3__": "ssse3", "__SSE4_1__": "sse4_1", "__SSE4_2__": "sse4_2",
    "__POPCNT__": "popcnt", "__AVX__": "avx", "__AVX2__": "avx2", "__FMA__": "fma", "__F16C__": "f16c",
    "__BMI__": "bmi1", "__BMI2__": "bmi2", "__LZCNT__": "abm", "__MOVBE__": "movbe",
    "__AVX512F__": "avx512f", "__AVX512CD__": "avx512cd", "__AVX512BW__": "avx512bw",
    "__AVX512DQ__": "avx512dq", "__AVX512VL__": "avx512vl", "__AVX512IFMA__": "avx512ifma",
    "__AVX512VBMI__": "avx512vbmi", "__AVX512VBMI2__": "avx512_vbmi2", "__AVX512VNNI__": "avx512_vnni",
    "__AVX512BITALG__": "avx512_bitalg", "__AVX512VPOPCNTDQ__": "avx512_vpopcntdq",
    "__AVX512BF16__": "avx512_bf16", "__AVX512FP16__": "avx512_fp16", "__AVXVNNI__": "avx_vnni",
    "__GFNI__": "gfni", "__VAES__": "vaes", "__VPCLMULQDQ__": "vpclmulqdq",
}


def cpu_flags_needed(arch):
    """/proc/cpuinfo flags a module built with -march=arch needs (() if unknown or no arch)."""
    if not arch:
        return ()
    cxx = os.environ.get("CXX", "c++")
    try:
        out = subprocess.run([cxx, f"-march={arch}", "-dM", "-E", "-x", "c++", os.devnull],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ()
    defined = {line.split()[1] for line in out.splitlines() if line.startswith("#define ")}
    return tuple(flag for macro, flag in ISA_MACROS.items() if macro in defined)


def write_cpu_record():
    """nis_fast/_cpu_build.py: what the native module needs of the CPU. nis_fast checks it before
    loading the module, so a build copied to a CPU without them fails to import with a message
    (instead of dying on an illegal instruction in the middle of a query)."""
    text = ("# Written by setup.py (not in git): the -march the native module was built with, and the\n"
            "# CPU features (/proc/cpuinfo names) that lets the compiler use. Checked by nis_fast/ops/native.py.\n"
            f"CPU_ARCH = {CPU_ARCH!r}\nCPU_FLAGS = {cpu_flags_needed(CPU_ARCH)!r}\n")
    path = os.path.join(HERE, "nis_fast", "_cpu_build.py")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def find_nvcc():
    fallback = "/usr/local/cuda/bin/nvcc"
    return shutil.which("nvcc") or (fallback if os.path.exists(fallback) else None)


def find_cudart_dir(nvcc):
    """The lib64 folder holding libcudart_static.a (nvcc may be a symlink or a wrapper)."""
    homes = [os.environ.get("CUDA_HOME", ""), os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), "/usr/local/cuda"]
    for home in homes:
        if home and os.path.exists(os.path.join(home, "lib64", "libcudart_static.a")):
            return os.path.join(home, "lib64")
    raise RuntimeError(f"libcudart_static.a not found under {homes}; set CUDA_HOME or NIS_FAST_CUDA=0")


def cuda_archs():
    archs = os.environ.get("NIS_FAST_CUDA_ARCHS", "80;90").replace(",", ";").split(";")
    return [a.strip() for a in archs if a.strip()]


def cuda_plan():
    """(nvcc path or None, human note on what is built and why)."""
    mode = os.environ.get("NIS_FAST_CUDA", "").strip()
    if mode == "0":
        return None, "NIS_FAST_CUDA=0"
    nvcc = find_nvcc()
    if nvcc is None:
        if mode == "1":
            raise RuntimeError("NIS_FAST_CUDA=1 but nvcc was not found on PATH or in /usr/local/cuda/bin")
        return None, "nvcc not found at build time"
    archs = cuda_archs()
    return nvcc, "sm_" + " sm_".join(archs) + " + PTX compute_" + archs[-1]


class BuildExt(build_ext):
    def build_extension(self, ext):
        nvcc, _ = cuda_plan()
        if nvcc is not None:
            ext.extra_objects += self.compile_cuda(nvcc, ext)
        super().build_extension(ext)

    def compile_cuda(self, nvcc, ext):
        """Compile csrc/cuda/*.cu with nvcc via ninja; returns the object paths."""
        import ninja

        archs = cuda_archs()
        gencode = " ".join(f"-gencode arch=compute_{a},code=sm_{a}" for a in archs)
        gencode += f" -gencode arch=compute_{archs[-1]},code=compute_{archs[-1]}"
        build_dir = os.path.abspath(os.path.join(self.build_temp, "cuda"))
        os.makedirs(build_dir, exist_ok=True)
        macros = " ".join(f"-D{k}={v}" if v is not None else f"-D{k}" for k, v in ext.define_macros
                          if k not in ("NIS_CXX_FLAGS", "NIS_CUDA_BUILD_NOTE"))
        includes = " ".join(f"-I{d}" for d in ext.include_dirs)
        # No --use_fast_math: the GPU must run the IEEE maths that the CPU tests check (same headers).
        lines = [
            f"nvcc = {nvcc}",
            f"flags = -O3 -std=c++17 -Xcompiler -fPIC {gencode} {macros} {includes}",
            "rule nvcc",
            "  command = $nvcc $flags -MD -MF $out.d -c $in -o $out",
            "  depfile = $out.d",
            "  deps = gcc",
            "  description = nvcc $in",
        ]
        objects = []
        for src in sorted(glob.glob(os.path.join(HERE, "csrc", "cuda", "*.cu"))):
            obj = os.path.join(build_dir, os.path.basename(src) + ".o")
            lines.append(f"build {obj}: nvcc {src}")
            objects.append(obj)
        with open(os.path.join(build_dir, "build.ninja"), "w") as f:
            f.write("\n".join(lines) + "\n")
        subprocess.check_call([os.path.join(ninja.BIN_DIR, "ninja"), "-C", build_dir])
        return objects


def make_extension():
    nvcc, note = cuda_plan()
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    macros = [("NIS_CXX_FLAGS", '"' + " ".join(CXX_FLAGS) + '"'), ("NIS_CUDA_BUILD_NOTE", '"' + note + '"')]
    libraries, library_dirs = [], []
    if nvcc is not None:
        macros.append(("NIS_WITH_CUDA", "1"))
        library_dirs.append(find_cudart_dir(nvcc))
        libraries += ["cudart_static", "rt", "dl", "pthread"]
    return Pybind11Extension(
        "nis_fast._C",
        sources,
        include_dirs=[os.path.join(HERE, "csrc"), os.path.join(HERE, "csrc", "include")],
        define_macros=macros,
        extra_compile_args=CXX_FLAGS,
        extra_link_args=["-fopenmp"],
        libraries=libraries,
        library_dirs=library_dirs,
        cxx_std=17,
    )


# The C++ sources (csrc/*.cpp and csrc/cpu/*.cpp, globbed) compile in parallel, one job a core
# (NIS_FAST_BUILD_JOBS=N sets it).
ParallelCompile("NIS_FAST_BUILD_JOBS").install()
write_cpu_record()
setup(
    ext_modules=[make_extension()],
    cmdclass={"build_ext": BuildExt},
    package_dir={"nis_fast": "nis_fast", "nis_fast.kernels": "kernels"},
    packages=["nis_fast", "nis_fast.core", "nis_fast.ops", "nis_fast.kernels"],
    package_data={"nis_fast": ["data/*"]},
)
