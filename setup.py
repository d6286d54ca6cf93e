"""Build of diffusion_kernels: the _C extension (CPU kernels, plus CUDA kernels when torch has
CUDA and nvcc is found) and, with DK_BUILD_EMULATOR=1, the _simt test module that runs the CUDA
launchers on the CPU under the SIMT emulator.

Build with `pip install --no-build-isolation -e .`: build isolation would install a different
torch (the multi-GB CUDA wheel) into a temporary environment and compile against it.

Environment:
  DK_FORCE_CPU=1       never build CUDA kernels
  DK_FORCE_CUDA=1      build CUDA kernels even if torch's CUDA check is inconclusive
  DK_CUDA_ARCHS        ';'-separated compute capabilities (default "8.0;9.0"; PTX of the newest)
  DK_BUILD_EMULATOR=1  also build diffusion_kernels._simt
  DK_DEBUG=1           -O0 -g
  MAX_JOBS             parallel compile jobs (default: CPU count)
"""
import importlib.util
import os
import re
import shutil
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "diffusion_kernels/_version.py").read_text()).group(1)


def env_flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def find_cuda_home():
    """The toolkit directory. `nvcc` on PATH may be a wrapper script that execs the real one,
    so follow it rather than taking its parent directory."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    real = Path(os.path.realpath(nvcc))
    try:
        head = real.read_bytes()[:4096]
    except OSError:
        head = b""
    if head.startswith(b"#!"):
        for target in re.findall(rb"(/\S+/bin/nvcc)\b", head):
            if Path(target.decode()).is_file():
                real = Path(target.decode())
                break
    return str(real.parent.parent)


CUDA_HOME = find_cuda_home()
# cpp_extension reads CUDA_HOME once at import time; it must see the real toolkit.
if CUDA_HOME and not env_flag("DK_FORCE_CPU"):
    os.environ.setdefault("CUDA_HOME", CUDA_HOME)
os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 2))

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def want_cuda():
    if env_flag("DK_FORCE_CPU"):
        return False
    if env_flag("DK_FORCE_CUDA"):
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None and Path(CUDA_HOME, "bin", "nvcc").exists()


def cuda_archs():
    archs = [a.strip() for a in os.environ.get("DK_CUDA_ARCHS", "8.0;9.0").replace(",", ";").split(";") if a.strip()]
    for a in archs:
        if not re.fullmatch(r"\d+\.\d+a?", a):
            raise SystemExit(f"DK_CUDA_ARCHS: '{a}' is not a compute capability like 8.0 or 9.0")
    return archs


def rel(paths):
    return sorted(str(p.relative_to(ROOT)) for p in paths)


def write_build_config(with_cuda, archs):
    """Values build_info() reports, as a generated header (quoting -D strings through ninja is fragile)."""
    out = ROOT / "build" / "generated"
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "#pragma once",
        f'#define DK_VERSION "{VERSION}"',
        f'#define DK_TORCH_VERSION "{torch.__version__}"',
        f'#define DK_CUDA_ARCHS "{";".join(archs) if with_cuda else ""}"',
    ]
    if with_cuda:
        lines += ["#define DK_WITH_CUDA 1", f'#define DK_CUDA_VERSION "{torch.version.cuda}"']
    text = "\n".join(lines) + "\n"
    header = out / "dk_build_config.h"
    if not header.exists() or header.read_text() != text:  # keep ninja's no-op rebuild a no-op
        header.write_text(text)
    return str(out)


def write_python_build_config():
    """The torch this build compiles against, for the import-time check (_torch_compat.py), which
    must run before the extension is loaded: an unsupported torch fails inside the loader."""
    (ROOT / "diffusion_kernels" / "_build_config.py").write_text(
        f'"""Written by setup.py."""\nBUILT_TORCH = "{torch.__version__}"\n')


def torch_requirement():
    """The range _torch_compat enforces at import, loaded from its file: the package itself
    cannot be imported before its extension is built."""
    spec = importlib.util.spec_from_file_location("_torch_compat", ROOT / "diffusion_kernels" / "_torch_compat.py")
    compat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compat)
    return compat.requirement(torch.__version__)


def extensions():
    with_cuda = want_cuda()
    archs = cuda_archs() if with_cuda else []
    opt = ["-O0", "-g"] if env_flag("DK_DEBUG") else ["-O3", "-g0"]
    include_dirs = [str(CSRC), write_build_config(with_cuda, archs)]
    # at::parallel_for is inline OpenMP: without -fopenmp it silently runs on one thread.
    cxx = opt + ["-std=c++20", "-fopenmp", "-include", "dk_build_config.h", "-Wall", "-Wno-unknown-pragmas", "-Wno-psabi"]
    link = ["-fopenmp"]

    sources = [CSRC / "registration.cpp", CSRC / "bindings.cpp"]
    sources += list((CSRC / "cpu").glob("*.cpp"))
    sources += [p for p in (CSRC / "ops").glob("*.cpp") if not p.name.endswith("_launch_op.cpp")]
    exts = []
    if with_cuda:
        # cpp_extension derives -gencode flags from this; without a visible GPU it must be set.
        os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(archs[:-1] + [archs[-1] + "+PTX"])
        sources += [CSRC / "registration_cuda.cpp"]
        sources += list((CSRC / "ops").glob("*_launch_op.cpp"))
        sources += list((CSRC / "kernels").glob("*_launch.cu"))
        nvidia_inc = Path(torch.__file__).parent.parent / "nvidia" / "cu13" / "include"
        if nvidia_inc.is_dir():
            include_dirs.append(str(nvidia_inc))
        nvcc_opt = ["-O0", "-g"] if env_flag("DK_DEBUG") else ["-O3"]  # nvcc has no -g0
        nvcc = nvcc_opt + ["-std=c++20", "--threads", "2", "-lineinfo", "-include", "dk_build_config.h"]
        exts.append(CUDAExtension("diffusion_kernels._C", rel(sources), include_dirs=include_dirs,
                                  extra_compile_args={"cxx": cxx, "nvcc": nvcc}, extra_link_args=link))
    else:
        exts.append(CppExtension("diffusion_kernels._C", rel(sources), include_dirs=include_dirs,
                                 extra_compile_args={"cxx": cxx}, extra_link_args=link))

    if env_flag("DK_BUILD_EMULATOR"):
        if CUDA_HOME is None or not Path(CUDA_HOME, "include", "vector_types.h").exists():
            raise SystemExit("DK_BUILD_EMULATOR=1 needs the CUDA headers (vector_types.h, cuda_bf16.h): "
                             "set CUDA_HOME or put nvcc on PATH")
        emu_sources = list((CSRC / "emulated").glob("*.cpp"))
        emu_sources += list((CSRC / "ops").glob("*_common.cpp"))
        emu_sources += list((CSRC / "ops").glob("*_launch_op.cpp"))
        emu_cxx = ["-O2", "-g0", "-std=c++20", "-pthread", "-Wno-unknown-pragmas"] + [
            f for f in cxx if f.startswith(("-include", "dk_build"))]
        exts.append(CppExtension("diffusion_kernels._simt", rel(emu_sources),
                                 include_dirs=include_dirs + [str(Path(CUDA_HOME) / "include")],
                                 extra_compile_args={"cxx": emu_cxx}))
    return exts


write_python_build_config()
setup(
    version=VERSION,
    install_requires=[torch_requirement(), "numpy", "tqdm"],
    packages=find_packages(include=["diffusion_kernels", "diffusion_kernels.*"]),
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)
