// recon_cuda_compat.h -- test-only shim that lets g++ (C++20) compile the CUDA
// kernels in kernels/*.cu as plain C++ and run them on the CPU.
//
// Why: CI has no GPU, but we still want the exact kernel source that CuPy's
// RawModule/NVRTC compiles to be executed and compared with the numba CPU path.
//
// How: a harness .cpp includes this header, then a kernel file
// (`#include "spect.cu"`), and launches kernels with recon_launch(), which runs
// every CUDA thread of every block on the CPU. Blocks run one after another
// (x fastest, then y, then z), so `__shared__` can simply become `static`.
// A thread may return early even in kernels that call __syncthreads() (like on
// current GPUs, the remaining threads of the block still meet at the barrier).
//
// Not emulated: warp intrinsics (__shfl_*, __ballot_sync, ...), dynamic shared
// memory (`extern __shared__`), textures, cooperative groups. Kernels that need
// those can branch on `#ifdef RECON_CUDA_COMPAT`.
//
// recon_launch() holds a process-wide mutex: blockDim/gridDim are plain
// globals, so two launches must never overlap (ctypes drops the GIL).
#pragma once

#include <math.h>  // C math in the global namespace (expf, sincosf, isnan, ...)

#include <atomic>
#include <barrier>
#include <bit>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

#define RECON_CUDA_COMPAT 1

// ---------------------------------------------------------------- qualifiers
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
// Blocks run sequentially, so one static copy per kernel is exactly "one copy
// per block". Also fine with uses_barrier: all std::threads of the current
// block share it, as CUDA threads of a block share shared memory.
#define __shared__ static

// ------------------------------------------------------------ thread indices
struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

// threadIdx/blockIdx differ per worker std::thread -> thread_local.
// blockDim/gridDim are the same for the whole launch -> plain globals, set
// before any worker starts (std::thread construction orders the write).
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline dim3 blockDim;
inline dim3 gridDim;
constexpr int warpSize = 32;

namespace recon_compat {
// Barrier of the block currently running; null when the launch was made with
// uses_barrier=false (threads run one after another, so no barrier possible).
inline std::barrier<>* block_barrier = nullptr;
inline std::mutex launch_mutex;
}  // namespace recon_compat

inline void __syncthreads() {
  if (recon_compat::block_barrier == nullptr) {
    // Sequential threads cannot wait for each other: results would be silently
    // wrong, so stop loudly instead.
    std::fprintf(stderr,
                 "recon_cuda_compat: __syncthreads() called in a launch made with "
                 "uses_barrier=false; pass uses_barrier=true to recon_launch()\n");
    std::abort();
  }
  recon_compat::block_barrier->arrive_and_wait();
}

inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// ------------------------------------------------------------------- atomics
// std::atomic_ref makes a plain array element atomic for the duration of the
// call, like CUDA atomics on ordinary global/shared memory. All return the old value.
template <class T>
inline T recon_atomic_add(T* address, T val) {
  return std::atomic_ref<T>(*address).fetch_add(val, std::memory_order_relaxed);
}
inline float atomicAdd(float* a, float v) { return recon_atomic_add(a, v); }
inline double atomicAdd(double* a, double v) { return recon_atomic_add(a, v); }
inline int atomicAdd(int* a, int v) { return recon_atomic_add(a, v); }
inline unsigned atomicAdd(unsigned* a, unsigned v) { return recon_atomic_add(a, v); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
  return recon_atomic_add(a, v);
}
inline int atomicSub(int* a, int v) { return recon_atomic_add(a, -v); }
inline float atomicExch(float* a, float v) { return std::atomic_ref<float>(*a).exchange(v); }
inline int atomicExch(int* a, int v) { return std::atomic_ref<int>(*a).exchange(v); }

template <class T>
inline T recon_atomic_cas(T* address, T compare, T val) {
  std::atomic_ref<T>(*address).compare_exchange_strong(compare, val);
  return compare;  // holds the old value whether or not the swap happened
}
inline int atomicCAS(int* a, int c, int v) { return recon_atomic_cas(a, c, v); }
inline unsigned atomicCAS(unsigned* a, unsigned c, unsigned v) { return recon_atomic_cas(a, c, v); }
inline unsigned long long atomicCAS(unsigned long long* a, unsigned long long c,
                                    unsigned long long v) {
  return recon_atomic_cas(a, c, v);
}

inline int atomicMax(int* a, int v) {
  std::atomic_ref<int> r(*a);
  int old = r.load();
  while (old < v && !r.compare_exchange_weak(old, v)) {
  }
  return old;
}
inline int atomicMin(int* a, int v) {
  std::atomic_ref<int> r(*a);
  int old = r.load();
  while (old > v && !r.compare_exchange_weak(old, v)) {
  }
  return old;
}

// ---------------------------------------------------------------------- math
// expf, logf, sqrtf, floorf, fminf, fmaxf, fabsf, erff, sincosf, ... come from
// <math.h> (sincosf is a GNU extension, on by default in g++).

// CUDA's integer/mixed min/max overloads; common_type gives the same result type
// as CUDA's mixed overloads (e.g. min(int, unsigned) -> unsigned).
template <class A, class B>
inline std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(b) < C(a) ? C(b) : C(a);
}
template <class A, class B>
inline std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(a) < C(b) ? C(b) : C(a);
}

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float fdividef(float a, float b) { return a / b; }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float norm3df(float a, float b, float c) { return sqrtf(a * a + b * b + c * c); }
inline float rnorm3df(float a, float b, float c) { return rsqrtf(a * a + b * b + c * c); }

// glibc's <math.h> already *declares* __expf, __logf, __sinf, ... as internal
// libm names that are not exported, so a kernel calling them would fail at load
// time. Redirect the CUDA fast-math intrinsics to our own definitions instead.
namespace recon_compat {
inline float fast_expf(float x) { return expf(x); }
inline float fast_logf(float x) { return logf(x); }
inline float fast_log2f(float x) { return log2f(x); }
inline float fast_log10f(float x) { return log10f(x); }
inline float fast_powf(float x, float y) { return powf(x, y); }
inline float fast_sinf(float x) { return sinf(x); }
inline float fast_cosf(float x) { return cosf(x); }
inline float fast_tanf(float x) { return tanf(x); }
inline float fast_exp10f(float x) { return exp10f(x); }
inline void fast_sincosf(float x, float* s, float* c) { sincosf(x, s, c); }
}  // namespace recon_compat
#define __expf recon_compat::fast_expf
#define __logf recon_compat::fast_logf
#define __log2f recon_compat::fast_log2f
#define __log10f recon_compat::fast_log10f
#define __powf recon_compat::fast_powf
#define __sinf recon_compat::fast_sinf
#define __cosf recon_compat::fast_cosf
#define __tanf recon_compat::fast_tanf
#define __exp10f recon_compat::fast_exp10f
#define __sincosf recon_compat::fast_sincosf

// float -> int conversions. CUDA saturates out-of-range values and maps NaN to
// 0; a plain C++ cast would be undefined behaviour there.
namespace recon_compat {
inline int sat_int(float r) {
  if (isnan(r)) return 0;
  if (r >= 2147483648.0f) return INT_MAX;
  if (r <= -2147483648.0f) return INT_MIN;
  return static_cast<int>(r);
}
inline unsigned sat_uint(float r) {
  if (isnan(r) || r <= 0.0f) return 0;
  if (r >= 4294967296.0f) return UINT_MAX;
  return static_cast<unsigned>(r);
}
}  // namespace recon_compat
inline int __float2int_rd(float x) { return recon_compat::sat_int(floorf(x)); }
inline int __float2int_ru(float x) { return recon_compat::sat_int(ceilf(x)); }
inline int __float2int_rz(float x) { return recon_compat::sat_int(truncf(x)); }
inline int __float2int_rn(float x) { return recon_compat::sat_int(nearbyintf(x)); }  // ties to even
inline unsigned __float2uint_rd(float x) { return recon_compat::sat_uint(floorf(x)); }
inline unsigned __float2uint_rz(float x) { return recon_compat::sat_uint(truncf(x)); }
inline unsigned __float2uint_rn(float x) { return recon_compat::sat_uint(nearbyintf(x)); }
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) { return static_cast<float>(x); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }

// Read-only cache load: on the CPU just a load.
template <class T>
inline T __ldg(const T* p) {
  return *p;
}

// ------------------------------------------------------------------ launcher
// Runs body() once per CUDA thread of the grid; body is usually a lambda that
// calls the kernel with its arguments: [&] { saxpy(n, a, x, y); }.
// Blocks run one after another, x fastest, then y, then z.
//
// uses_barrier=false: every thread of a block runs to completion on the calling
//   thread, one after another (fast; the kernel must not call __syncthreads()).
// uses_barrier=true: one std::thread per CUDA thread of a block, sharing a
//   std::barrier behind __syncthreads(). The same std::threads are reused for
//   every block (spawning blockDim threads per block cost ~60 us per CUDA
//   thread); a second barrier makes all of them finish block k before any starts
//   block k+1, which is what "join before the next block" would give, so the
//   static "__shared__" memory belongs to one block at a time.
template <class F>
void recon_launch(dim3 grid, dim3 block, bool uses_barrier, F&& body) {
  std::lock_guard<std::mutex> lock(recon_compat::launch_mutex);
  gridDim = grid;
  blockDim = block;
  const unsigned nthreads = block.x * block.y * block.z;
  const unsigned nblocks = grid.x * grid.y * grid.z;
  auto unflatten = [](unsigned i, dim3 d) {
    return uint3{i % d.x, (i / d.x) % d.y, i / (d.x * d.y)};
  };

  if (!uses_barrier) {
    recon_compat::block_barrier = nullptr;
    for (unsigned b = 0; b < nblocks; ++b) {
      blockIdx = unflatten(b, grid);
      for (unsigned t = 0; t < nthreads; ++t) {
        threadIdx = unflatten(t, block);
        body();
      }
    }
  } else if (nblocks > 0 && nthreads > 0) {
    const auto n = static_cast<std::ptrdiff_t>(nthreads);
    // __syncthreads() barrier, rebuilt for every block: threads that return early
    // leave it with arrive_and_drop(), which is permanent for a std::barrier.
    std::optional<std::barrier<>> sync;
    auto fresh_sync = [&]() noexcept {
      sync.emplace(n);
      recon_compat::block_barrier = &*sync;
    };
    fresh_sync();
    // All threads meet here after each block; the completion step runs while
    // nobody is inside the kernel, so it can safely replace `sync`.
    std::barrier<decltype(fresh_sync)> block_done(n, fresh_sync);

    std::vector<std::thread> workers;
    workers.reserve(nthreads);
    for (unsigned t = 0; t < nthreads; ++t) {
      workers.emplace_back([&, t] {
        threadIdx = unflatten(t, block);
        for (unsigned b = 0; b < nblocks; ++b) {
          blockIdx = unflatten(b, grid);
          body();
          // A thread that returns early (e.g. `if (i >= n) return;`) must not
          // leave the others waiting forever at their next __syncthreads().
          sync->arrive_and_drop();
          block_done.arrive_and_wait();
        }
      });
    }
    for (auto& w : workers) w.join();
    recon_compat::block_barrier = nullptr;
  }
  // Leave the calling thread's indices in a defined state.
  blockIdx = uint3{0, 0, 0};
  threadIdx = uint3{0, 0, 0};
}
