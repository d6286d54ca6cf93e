// The CUDA launcher source, compiled by g++ against the SIMT emulator.
#include "kernels/select_transfer_launch.cu"
