// The CUDA launcher source, compiled by g++ against the SIMT emulator.
#include "kernels/masked_confidence_launch.cu"
