// The CUDA launcher source, compiled by g++ against the SIMT emulator.
#include "kernels/forward_mask_launch.cu"
