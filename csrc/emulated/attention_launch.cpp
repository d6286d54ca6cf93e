// The CUDA launcher source, compiled by g++ against the SIMT emulator.
#include "kernels/attention_launch.cu"
