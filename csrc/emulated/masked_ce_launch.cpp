// The CUDA launcher source, compiled by g++ against the SIMT emulator.
#include "kernels/masked_ce_launch.cu"
