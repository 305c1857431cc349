// SPECT projector kernels (the GPU twin of recon/spect/_cpu.py; same arguments, same order).
//
// Stage 1, "rotate": each view samples the image on a rotated grid q[view][depth j][z][u i] by
// bilinear interpolation in the transverse plane. Depth j runs from the far side (j = 0) to the
// camera. Each sample is Δ·image·attenuation, so a depth sum is a line integral in mm.
// Stage 2, "blur": the depth planes are blurred by the collimator response of their distance and
// summed, incrementally from far to near with 3-tap passes (see _cpu.py for the derivation).
// The *_back kernels are exact transposes of their forward twins.
//
// Compiled at run time by CuPy (NVRTC); in CI the same file is compiled by g++ through
// tests/cuda_compat/recon_cuda_compat.h and compared with the numba kernels.

#ifndef SPECT_BLOCK
#define SPECT_BLOCK 256
#endif

// Fractional (row, column) image index of depth sample j on the ray at offset u of a view.
__device__ __forceinline__ void spect_sample_position(float cos_t, float sin_t, float s0, float delta,
                                                      int j, float u, float x0, float y0,
                                                      float inv_delta, float* fy, float* fx) {
    const float s = s0 + (float)j * delta;
    const float px = u * cos_t + s * sin_t;
    const float py = u * sin_t - s * cos_t;
    *fy = (py - y0) * inv_delta;
    *fx = (px - x0) * inv_delta;
}

__device__ __forceinline__ float spect_bilinear(const float* __restrict__ img2d, int ny, int nx,
                                                float fy, float fx) {
    const float fly = floorf(fy);
    const float flx = floorf(fx);
    const float ty = fy - fly;
    const float tx = fx - flx;
    const int iy = (int)fly;
    const int ix = (int)flx;
    float acc = 0.0f;
    if (iy >= 0 && iy < ny) {
        if (ix >= 0 && ix < nx) acc += (1.0f - ty) * (1.0f - tx) * img2d[iy * nx + ix];
        if (ix + 1 >= 0 && ix + 1 < nx) acc += (1.0f - ty) * tx * img2d[iy * nx + ix + 1];
    }
    if (iy + 1 >= 0 && iy + 1 < ny) {
        if (ix >= 0 && ix < nx) acc += ty * (1.0f - tx) * img2d[(iy + 1) * nx + ix];
        if (ix + 1 >= 0 && ix + 1 < nx) acc += ty * tx * img2d[(iy + 1) * nx + ix + 1];
    }
    return acc;
}

// out_att[k][j][z][i] = exp(-∫mu) from sample j to the camera (midpoint rule). One thread per ray.
extern "C" __global__ void spect_attenuation(
    const float* __restrict__ mu, int nz, int ny, int nx,
    const int* __restrict__ view_ids, int n_views,
    const float* __restrict__ cos_t, const float* __restrict__ sin_t, const float* __restrict__ s0,
    const float* __restrict__ u_pos, int n_u,
    float x0, float y0, float inv_delta, float delta, int n_d,
    float* __restrict__ out_att) {
    const long long ray = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (ray >= (long long)n_views * nz * n_u) return;
    const int i = (int)(ray % n_u);
    const int z = (int)((ray / n_u) % nz);
    const int k = (int)(ray / ((long long)n_u * nz));
    const int v = view_ids[k];
    const float* slice = mu + (long long)z * ny * nx;
    const long long plane = (long long)nz * n_u;
    float path = 0.0f;
    for (int j = n_d - 1; j >= 0; --j) {
        float fy, fx;
        spect_sample_position(cos_t[v], sin_t[v], s0[v], delta, j, u_pos[i], x0, y0, inv_delta, &fy, &fx);
        const float half = 0.5f * delta * spect_bilinear(slice, ny, nx, fy, fx);
        path += half;
        out_att[(long long)k * n_d * plane + (long long)j * plane + (long long)z * n_u + i] = expf(-path);
        path += half;
    }
}

// out_q[k][j][z][i] = Δ · bilinear(image) · attenuation. One thread per sample.
extern "C" __global__ void spect_rotate_forward(
    const float* __restrict__ image, int nz, int ny, int nx,
    const float* __restrict__ att, const int* __restrict__ att_rows, int has_att,
    const int* __restrict__ view_ids, int n_views,
    const float* __restrict__ cos_t, const float* __restrict__ sin_t, const float* __restrict__ s0,
    const float* __restrict__ u_pos, int n_u,
    float x0, float y0, float inv_delta, float delta, int n_d,
    float* __restrict__ out_q) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long plane = (long long)nz * n_u;
    if (idx >= (long long)n_views * n_d * plane) return;
    const int i = (int)(idx % n_u);
    const int z = (int)((idx / n_u) % nz);
    const int j = (int)((idx / plane) % n_d);
    const int k = (int)(idx / (plane * n_d));
    const int v = view_ids[k];
    float fy, fx;
    spect_sample_position(cos_t[v], sin_t[v], s0[v], delta, j, u_pos[i], x0, y0, inv_delta, &fy, &fx);
    float value = delta * spect_bilinear(image + (long long)z * ny * nx, ny, nx, fy, fx);
    if (has_att) value *= att[(long long)att_rows[k] * n_d * plane + (long long)j * plane + (long long)z * n_u + i];
    out_q[idx] = value;
}

// Transpose of spect_rotate_forward as a gather: one thread per voxel collects, from every view,
// the samples whose bilinear footprint covers it, with the weights the forward pass used. No atomics.
extern "C" __global__ void spect_rotate_back(
    const float* __restrict__ q, int nz, int ny, int nx,
    const float* __restrict__ att, const int* __restrict__ att_rows, int has_att,
    const int* __restrict__ view_ids, int n_views,
    const float* __restrict__ cos_t, const float* __restrict__ sin_t, const float* __restrict__ s0,
    const float* __restrict__ u_pos, int n_u,
    float x0, float y0, float inv_delta, float delta, int n_d,
    float* __restrict__ out_image) {
    const long long voxel = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (voxel >= (long long)nz * ny * nx) return;
    const int x = (int)(voxel % nx);
    const int y = (int)((voxel / nx) % ny);
    const int z = (int)(voxel / ((long long)nx * ny));
    const long long plane = (long long)nz * n_u;
    const float wx = x0 + (float)x * delta;  // voxel centre, world mm
    const float wy = y0 + (float)y * delta;
    const float pu = n_u > 1 ? u_pos[1] - u_pos[0] : delta;
    const float reach = 1.4142136f * delta;  // a sample reaches voxels within one index per axis
    float total = 0.0f;
    for (int k = 0; k < n_views; ++k) {
        const int v = view_ids[k];
        const float c = cos_t[v], s = sin_t[v];
        const float uc = wx * c + wy * s;   // voxel centre along t(θ)
        const float sc = wx * s - wy * c;   // and along d(θ)
        const int j_lo = max(0, (int)floorf((sc - reach - s0[v]) / delta) - 1);
        const int j_hi = min(n_d - 1, (int)ceilf((sc + reach - s0[v]) / delta) + 1);
        const int i_lo = max(0, (int)floorf((uc - reach - u_pos[0]) / pu) - 1);
        const int i_hi = min(n_u - 1, (int)ceilf((uc + reach - u_pos[0]) / pu) + 1);
        const float* qk = q + (long long)k * n_d * plane + (long long)z * n_u;
        const float* ak = has_att ? att + (long long)att_rows[k] * n_d * plane + (long long)z * n_u : 0;
        for (int j = j_lo; j <= j_hi; ++j) {
            for (int i = i_lo; i <= i_hi; ++i) {
                float fy, fx;
                spect_sample_position(c, s, s0[v], delta, j, u_pos[i], x0, y0, inv_delta, &fy, &fx);
                const float fly = floorf(fy), flx = floorf(fx);
                const int iy = (int)fly, ix = (int)flx;
                float wyw, wxw;
                if (iy == y) wyw = 1.0f - (fy - fly); else if (iy + 1 == y) wyw = fy - fly; else continue;
                if (ix == x) wxw = 1.0f - (fx - flx); else if (ix + 1 == x) wxw = fx - flx; else continue;
                float value = delta * qk[(long long)j * plane + i];
                if (has_att) value *= ak[(long long)j * plane + i];
                total += wyw * wxw * value;
            }
        }
    }
    out_image[voxel] += total;
}

// One 3-tap pass [w, 1-2w, w] along u (axis 0) or z (axis 1) of a (nz, n_u) plane, zero outside.
__device__ __forceinline__ void spect_blur_pass(const float* __restrict__ src, float* __restrict__ dst,
                                                int nz, int n_u, float w, int axis) {
    const float c = 1.0f - 2.0f * w;
    for (int p = threadIdx.x; p < nz * n_u; p += blockDim.x) {
        const int i = p % n_u;
        const int z = p / n_u;
        float lo, hi;
        if (axis == 0) {
            lo = i > 0 ? src[p - 1] : 0.0f;
            hi = i + 1 < n_u ? src[p + 1] : 0.0f;
        } else {
            lo = z > 0 ? src[p - n_u] : 0.0f;
            hi = z + 1 < nz ? src[p + n_u] : 0.0f;
        }
        dst[p] = c * src[p] + w * (lo + hi);
    }
}

// Applies one blur step (entry j of the tables) to *cur, ping-ponging with *other.
__device__ void spect_blur_step(float** cur, float** other, int nz, int n_u,
                                const float* __restrict__ w, const int* __restrict__ n) {
    for (int axis = 0; axis < 2; ++axis) {
        for (int pass = 0; pass < n[axis]; ++pass) {
            spect_blur_pass(*cur, *other, nz, n_u, w[axis], axis);
            __syncthreads();
            float* t = *cur; *cur = *other; *other = t;
        }
    }
}

// One block per view: out_planes[k] = Σ_j blur_j(q[k][j]), applied far to near.
// scratch holds two (nz, n_u) planes per view.
extern "C" __global__ void spect_blur_sum_forward(
    const float* __restrict__ q, const int* __restrict__ view_ids, int n_views, int n_d, int nz, int n_u,
    const float* __restrict__ blur_w, const int* __restrict__ blur_n,
    float* __restrict__ scratch, float* __restrict__ out_planes) {
    const int k = blockIdx.x;
    if (k >= n_views) return;
    const int v = view_ids[k];
    const long long plane = (long long)nz * n_u;
    const float* qk = q + (long long)k * n_d * plane;
    float* cur = scratch + 2 * k * plane;
    float* other = cur + plane;
    for (int p = threadIdx.x; p < plane; p += blockDim.x) cur[p] = qk[p];
    __syncthreads();
    for (int j = 1; j < n_d; ++j) {
        const long long t = ((long long)v * n_d + j) * 2;
        spect_blur_step(&cur, &other, nz, n_u, blur_w + t, blur_n + t);
        for (int p = threadIdx.x; p < plane; p += blockDim.x) cur[p] += qk[(long long)j * plane + p];
        __syncthreads();
    }
    const long long t0 = (long long)v * n_d * 2;
    spect_blur_step(&cur, &other, nz, n_u, blur_w + t0, blur_n + t0);
    for (int p = threadIdx.x; p < plane; p += blockDim.x) out_planes[k * plane + p] = cur[p];
}

// Transpose of spect_blur_sum_forward: one block per view spreads its plane near to far.
extern "C" __global__ void spect_blur_spread_back(
    const float* __restrict__ planes, const int* __restrict__ view_ids, int n_views, int n_d, int nz, int n_u,
    const float* __restrict__ blur_w, const int* __restrict__ blur_n,
    float* __restrict__ scratch, float* __restrict__ out_q) {
    const int k = blockIdx.x;
    if (k >= n_views) return;
    const int v = view_ids[k];
    const long long plane = (long long)nz * n_u;
    float* qk = out_q + (long long)k * n_d * plane;
    float* cur = scratch + 2 * k * plane;
    float* other = cur + plane;
    for (int p = threadIdx.x; p < plane; p += blockDim.x) cur[p] = planes[k * plane + p];
    __syncthreads();
    const long long t0 = (long long)v * n_d * 2;
    spect_blur_step(&cur, &other, nz, n_u, blur_w + t0, blur_n + t0);
    for (int p = threadIdx.x; p < plane; p += blockDim.x) qk[(long long)(n_d - 1) * plane + p] = cur[p];
    for (int j = n_d - 1; j >= 1; --j) {
        const long long t = ((long long)v * n_d + j) * 2;
        spect_blur_step(&cur, &other, nz, n_u, blur_w + t, blur_n + t);
        for (int p = threadIdx.x; p < plane; p += blockDim.x) qk[(long long)(j - 1) * plane + p] = cur[p];
    }
}
