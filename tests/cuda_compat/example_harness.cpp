// CPU harness for example_kernels.cu: the compat header first, then the CUDA
// source, then extern "C" launchers that ctypes can call.
#include "recon_cuda_compat.h"
#include "example_kernels.cu"

static unsigned blocks_for(int n, int block) { return (unsigned)((n + block - 1) / block); }

extern "C" void run_saxpy(int n, float a, const float* x, float* y, int block) {
  recon_launch(dim3(blocks_for(n, block)), dim3(block), false, [&] { saxpy(n, a, x, y); });
}

// Returns -1 if the block does not fit the kernel's shared tile.
extern "C" int run_block_reverse(const float* in, float* out, int n, int block) {
  if (block > EXAMPLE_MAX_BLOCK) return -1;
  recon_launch(dim3(blocks_for(n, block)), dim3(block), true, [&] { block_reverse(in, out, n); });
  return 0;
}

// out must hold one float per block; block must be a power of two.
extern "C" int run_block_sum(const float* in, float* out, int n, int block) {
  if (block > EXAMPLE_MAX_BLOCK || (block & (block - 1)) != 0) return -1;
  recon_launch(dim3(blocks_for(n, block)), dim3(block), true, [&] { block_sum(in, out, n); });
  return 0;
}

// threaded != 0 runs each block's threads concurrently, so the atomics really race.
extern "C" void run_histogram(const int* bin, const float* weight, int n, int* counts,
                              float* sums, int nbins, int block, int threaded) {
  recon_launch(dim3(blocks_for(n, block)), dim3(block), threaded != 0,
               [&] { histogram(bin, weight, n, counts, sums, nbins); });
}

extern "C" void run_index_2d(int* out, int width, int height, int bx, int by, int threaded) {
  recon_launch(dim3(blocks_for(width, bx), blocks_for(height, by)), dim3(bx, by), threaded != 0,
               [&] { index_2d(out, width, height); });
}
