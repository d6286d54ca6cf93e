// The Python module diffusion_kernels._simt (tests only). Importing it runs the static
// registrations of torch.ops.dk_emulated: csrc/ops/*.cpp compiled with DK_EMULATED, backed by the
// CUDA launchers built by g++ against the SIMT emulator (setup.py).
#include <Python.h>

extern "C" PyObject* PyInit__simt() {
  static PyModuleDef def = {PyModuleDef_HEAD_INIT, "_simt", "SIMT-emulated CUDA kernels", -1, nullptr};
  return PyModule_Create(&def);
}
