// Tiny example kernels for tests/test_cuda_compat.py. Plain CUDA: this file must
// also compile with `nvcc -std=c++17 -arch=sm_90 -ptx`, so it never includes the
// compat header itself -- the CPU harness includes that first.

#define EXAMPLE_MAX_BLOCK 256  // size of the shared tiles below

// y = a * x + y
extern "C" __global__ void saxpy(int n, float a, const float* __restrict__ x,
                                 float* __restrict__ y) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}

// Reverse each block-sized chunk of `in` through shared memory. Thread t reads
// the element written by thread len-1-t, so without a working __syncthreads()
// it sees a stale tile (zeros or the previous block's data).
extern "C" __global__ void block_reverse(const float* __restrict__ in, float* __restrict__ out,
                                         int n) {
  __shared__ float tile[EXAMPLE_MAX_BLOCK];
  const int t = threadIdx.x;
  const int base = blockIdx.x * blockDim.x;
  const int len = min((int)blockDim.x, n - base);  // last block may be partial
  if (t < len) tile[t] = in[base + t];
  __syncthreads();
  if (t < len) out[base + t] = tile[len - 1 - t];
}

// Per-block sum by tree reduction in shared memory (blockDim.x: power of two),
// one barrier per level.
extern "C" __global__ void block_sum(const float* __restrict__ in, float* __restrict__ out,
                                     int n) {
  __shared__ float partial[EXAMPLE_MAX_BLOCK];
  const int t = threadIdx.x;
  const int i = blockIdx.x * blockDim.x + t;
  partial[t] = i < n ? in[i] : 0.0f;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (t < s) partial[t] += partial[t + s];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = partial[0];
}

// Histogram with integer counts and float weight sums (atomicAdd int and float).
extern "C" __global__ void histogram(const int* __restrict__ bin, const float* __restrict__ weight,
                                     int n, int* counts, float* sums, int nbins) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int b = __ldg(&bin[i]);
  if (b < 0 || b >= nbins) return;
  atomicAdd(&counts[b], 1);
  atomicAdd(&sums[b], __ldg(&weight[i]));
}

// out[y, x] = y * width + x over a 2-D grid of 2-D blocks (checks the index math).
extern "C" __global__ void index_2d(int* out, int width, int height) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  const int y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x < width && y < height) out[y * width + x] = y * width + x;
}
