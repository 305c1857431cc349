// SPECT projector kernels (the GPU twin of recon/spect/_cpu.py: the same stages with the same
// arguments in the same order, the same helpers under the same names, the same float32 arithmetic;
// the CPU fuses the stages per view, the GPU runs each over all samples).
//
// Layout, z innermost: the image is (y, x, z) and the rotated samples q[view][depth j][u i][z], so
// consecutive threads (consecutive z) read and write consecutive addresses (coalesced), and the
// bilinear footprint of a (view, depth, u) sample is the same for every z.
//
// Stage 1, "rotate": each view samples the image on a rotated grid by bilinear interpolation in
// the transverse plane. Depth j runs from the far side (j = 0) to the camera. Each sample is
// Δ·image·attenuation, so a depth sum is a line integral in mm.
// Stage 2, "blur": the depth planes [u][z] are blurred by the collimator response of their distance
// and summed, incrementally from far to near with 3-tap passes (see _cpu.py for the derivation).
// The *_back kernels are exact transposes of their forward twins.
//
// SpectGrid and SpectViews are passed by value (from CuPy as one-element numpy structured arrays of
// the same layout, built in recon/spect/_gpu.py; the launcher tests check the layout against this
// file).
//
// Compiled at run time by CuPy (NVRTC); in CI the same file is compiled by g++ through
// tests/cuda_compat/recon_cuda_compat.h and compared with the numba kernels.

// Sizes and spacing of a launch: the image (z, y, x) sizes (stored (y, x, z)) and the rotated
// samples q[view][depth][u][z].
struct SpectGrid {
    int nz, ny, nx;
    int n_views, n_d, n_u;  // views of this launch, samples per ray (depth), rays per row
    float x0, y0;           // world (x, y) of the centre of voxel [., 0, 0], mm
    float delta;            // voxel size, and the spacing of the depth samples, mm
    float inv_delta;        // 1 / delta
};

// The views of a launch (device addresses): view k is view_ids[k] of the tables, at angle
// (cos_t, sin_t)[v] with its first depth sample at s0[v] mm; u_pos[i]: the ray offsets, mm.
struct SpectViews {
    const int* view_ids;
    const float* cos_t;
    const float* sin_t;
    const float* s0;
    const float* u_pos;
};

// --------------------------------------------------------------------------------- rotate
// Fractional (row, column) image index of depth sample j on ray i of table view v.
__device__ __forceinline__ void spect_sample_position(const SpectGrid& g, const SpectViews& views,
                                                      int v, int j, int i, float* fy, float* fx) {
    const float cos_t = views.cos_t[v], sin_t = views.sin_t[v], u = views.u_pos[i];
    const float s = views.s0[v] + (float)j * g.delta;
    const float px = u * cos_t + s * sin_t;
    const float py = u * sin_t - s * cos_t;
    *fy = (py - g.y0) * g.inv_delta;
    *fx = (px - g.x0) * g.inv_delta;
}

// Bilinear interpolation of column z of a (y, x, z) volume: col = volume + z, stride = nz.
__device__ __forceinline__ float spect_bilinear(const float* __restrict__ col, int ny, int nx,
                                                int stride, float fy, float fx) {
    const float fly = floorf(fy);
    const float flx = floorf(fx);
    const float ty = fy - fly;
    const float tx = fx - flx;
    const int iy = (int)fly;
    const int ix = (int)flx;
    float acc = 0.0f;
    if (iy >= 0 && iy < ny) {
        if (ix >= 0 && ix < nx) acc += (1.0f - ty) * (1.0f - tx) * col[(long long)(iy * nx + ix) * stride];
        if (ix + 1 >= 0 && ix + 1 < nx) acc += (1.0f - ty) * tx * col[(long long)(iy * nx + ix + 1) * stride];
    }
    if (iy + 1 >= 0 && iy + 1 < ny) {
        if (ix >= 0 && ix < nx) acc += ty * (1.0f - tx) * col[(long long)((iy + 1) * nx + ix) * stride];
        if (ix + 1 >= 0 && ix + 1 < nx) acc += ty * tx * col[(long long)((iy + 1) * nx + ix + 1) * stride];
    }
    return acc;
}

// out_att[k][j][i][z] = exp(-∫mu) from sample j to the camera (midpoint rule, near to far).
// One thread per ray (k, i, z), z fastest.
extern "C" __global__ void spect_attenuation(const float* __restrict__ mu, SpectGrid g,
                                             SpectViews views, float* __restrict__ out_att) {
    const long long ray = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (ray >= (long long)g.n_views * g.n_u * g.nz) return;
    const int z = (int)(ray % g.nz);
    const int i = (int)((ray / g.nz) % g.n_u);
    const int k = (int)(ray / ((long long)g.nz * g.n_u));
    const int v = views.view_ids[k];
    const long long plane = (long long)g.n_u * g.nz;
    float* out = out_att + (long long)k * g.n_d * plane + (long long)i * g.nz + z;
    float near = 0.0f;
    for (int j = g.n_d - 1; j >= 0; --j) {
        float fy, fx;
        spect_sample_position(g, views, v, j, i, &fy, &fx);
        const float d = g.delta * spect_bilinear(mu + z, g.ny, g.nx, g.nz, fy, fx);
        out[(long long)j * plane] = expf(-(near + 0.5f * d));
        near += d;
    }
}

// out_q[k][j][i][z] = Δ · bilinear(image) · attenuation. One thread per sample, z fastest.
extern "C" __global__ void spect_rotate_forward(
    const float* __restrict__ image, SpectGrid g, SpectViews views, const float* __restrict__ att,
    const int* __restrict__ att_rows, int has_att, float* __restrict__ out_q) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long plane = (long long)g.n_u * g.nz;
    if (idx >= (long long)g.n_views * g.n_d * plane) return;
    const int z = (int)(idx % g.nz);
    const int i = (int)((idx / g.nz) % g.n_u);
    const int j = (int)((idx / plane) % g.n_d);
    const int k = (int)(idx / (plane * g.n_d));
    float fy, fx;
    spect_sample_position(g, views, views.view_ids[k], j, i, &fy, &fx);
    float value = g.delta * spect_bilinear(image + z, g.ny, g.nx, g.nz, fy, fx);
    if (has_att) value *= att[(long long)att_rows[k] * g.n_d * plane + idx % (g.n_d * plane)];
    out_q[idx] = value;
}

// Transpose of spect_rotate_forward as a gather: one thread per voxel collects, from every view,
// the samples whose bilinear footprint covers it, with the weights the forward pass used. No atomics.
extern "C" __global__ void spect_rotate_back(
    const float* __restrict__ q, SpectGrid g, SpectViews views, const float* __restrict__ att,
    const int* __restrict__ att_rows, int has_att, float* __restrict__ out_image) {
    const long long voxel = (long long)blockIdx.x * blockDim.x + threadIdx.x;  // (y, x, z)
    if (voxel >= (long long)g.nz * g.ny * g.nx) return;
    const int z = (int)(voxel % g.nz);
    const int x = (int)((voxel / g.nz) % g.nx);
    const int y = (int)(voxel / ((long long)g.nz * g.nx));
    const long long plane = (long long)g.n_u * g.nz;
    const float wx = g.x0 + (float)x * g.delta;  // voxel centre, world mm
    const float wy = g.y0 + (float)y * g.delta;
    const float* u_pos = views.u_pos;
    const float pu = g.n_u > 1 ? u_pos[1] - u_pos[0] : g.delta;
    const float reach = 1.4142136f * g.delta;  // a sample reaches voxels within one index per axis
    float total = 0.0f;
    for (int k = 0; k < g.n_views; ++k) {
        const int v = views.view_ids[k];
        const float c = views.cos_t[v], s = views.sin_t[v], s0 = views.s0[v];
        const float uc = wx * c + wy * s;   // voxel centre along t(θ)
        const float sc = wx * s - wy * c;   // and along d(θ)
        const int j_lo = max(0, (int)floorf((sc - reach - s0) / g.delta) - 1);
        const int j_hi = min(g.n_d - 1, (int)ceilf((sc + reach - s0) / g.delta) + 1);
        const int i_lo = max(0, (int)floorf((uc - reach - u_pos[0]) / pu) - 1);
        const int i_hi = min(g.n_u - 1, (int)ceilf((uc + reach - u_pos[0]) / pu) + 1);
        const float* qk = q + (long long)k * g.n_d * plane + z;
        const float* ak = has_att ? att + (long long)att_rows[k] * g.n_d * plane + z : 0;
        for (int j = j_lo; j <= j_hi; ++j) {
            for (int i = i_lo; i <= i_hi; ++i) {
                float fy, fx;
                spect_sample_position(g, views, v, j, i, &fy, &fx);
                const float fly = floorf(fy), flx = floorf(fx);
                const int iy = (int)fly, ix = (int)flx;
                float wyw, wxw;
                if (iy == y) wyw = 1.0f - (fy - fly); else if (iy + 1 == y) wyw = fy - fly; else continue;
                if (ix == x) wxw = 1.0f - (fx - flx); else if (ix + 1 == x) wxw = fx - flx; else continue;
                float value = g.delta * qk[(long long)j * plane + (long long)i * g.nz];
                if (has_att) value *= ak[(long long)j * plane + (long long)i * g.nz];
                total += wyw * wxw * value;
            }
        }
    }
    out_image[voxel] += total;
}

// ----------------------------------------------------------------------------------- blur
// One 3-tap pass [w, 1-2w, w], its outer taps `stride` pixels from the centre, along u (axis 0)
// or z (axis 1) of a [u][z] plane, zero outside.
__device__ __forceinline__ void spect_blur_pass(const float* __restrict__ src, float* __restrict__ dst,
                                                int n_u, int nz, float w, int axis, int stride) {
    const float c = 1.0f - 2.0f * w;
    for (int p = threadIdx.x; p < n_u * nz; p += blockDim.x) {
        const int z = p % nz;
        const int i = p / nz;
        float lo, hi;
        if (axis == 0) {
            lo = i >= stride ? src[p - stride * nz] : 0.0f;
            hi = i + stride < n_u ? src[p + stride * nz] : 0.0f;
        } else {
            lo = z >= stride ? src[p - stride] : 0.0f;
            hi = z + stride < nz ? src[p + stride] : 0.0f;
        }
        dst[p] = c * src[p] + w * (lo + hi);
    }
}

// The blur of one view: the view (its index k in the chunk and v in the tables), its running plane
// and the scratch plane its passes write into (a pass writes *other from *cur, then they swap).
struct SpectBlur {
    int k, v;
    long long plane;  // n_u * nz
    float* cur;
    float* other;
};

// The blur of the block's view k = blockIdx.x, its running plane (the first of its two planes of
// scratch) loaded from src + k * stride. False for a block beyond the launch's views.
__device__ __forceinline__ bool spect_blur_start(const SpectGrid& g, const int* __restrict__ view_ids,
                                                 float* scratch, const float* __restrict__ src,
                                                 long long stride, SpectBlur* B) {
    const int k = blockIdx.x;
    if (k >= g.n_views) return false;
    const long long plane = (long long)g.nz * g.n_u;
    *B = SpectBlur{k, view_ids[k], plane, scratch + 2 * k * plane, scratch + (2 * k + 1) * plane};
    for (long long p = threadIdx.x; p < plane; p += blockDim.x) B->cur[p] = src[k * stride + p];
    __syncthreads();
    return true;
}

// Applies blur step j of the view to B.cur: the 3-tap passes of entries [v][j][axis][part] of the
// tables (weight, number, stride; part 0 unit-stride passes, part 1 the view's stride).
__device__ void spect_blur_step(const SpectGrid& g, SpectBlur* B, const float* __restrict__ blur_w,
                                const int* __restrict__ blur_n, const int* __restrict__ blur_s,
                                int j) {
    const long long t = ((long long)B->v * g.n_d + j) * 4;
    for (int axis = 0; axis < 2; ++axis) {
        for (int part = 0; part < 2; ++part) {
            const long long e = t + axis * 2 + part;
            for (int pass = 0; pass < blur_n[e]; ++pass) {
                spect_blur_pass(B->cur, B->other, g.n_u, g.nz, blur_w[e], axis, blur_s[e]);
                __syncthreads();
                float* swap = B->cur; B->cur = B->other; B->other = swap;
            }
        }
    }
}

// One block per view: out_planes[k] = Σ_j blur_j(q[k][j]), applied far to near.
// scratch holds two [u][z] planes per view.
extern "C" __global__ void spect_blur_sum_forward(
    const float* __restrict__ q, SpectGrid g, const int* __restrict__ view_ids,
    const float* __restrict__ blur_w, const int* __restrict__ blur_n, const int* __restrict__ blur_s,
    float* __restrict__ scratch, float* __restrict__ out_planes) {
    SpectBlur B;
    if (!spect_blur_start(g, view_ids, scratch, q, (long long)g.n_d * g.nz * g.n_u, &B)) return;
    const float* qk = q + (long long)B.k * g.n_d * B.plane;
    for (int j = 1; j < g.n_d; ++j) {
        spect_blur_step(g, &B, blur_w, blur_n, blur_s, j);
        for (long long p = threadIdx.x; p < B.plane; p += blockDim.x) B.cur[p] += qk[j * B.plane + p];
        __syncthreads();
    }
    spect_blur_step(g, &B, blur_w, blur_n, blur_s, 0);
    for (long long p = threadIdx.x; p < B.plane; p += blockDim.x) out_planes[B.k * B.plane + p] = B.cur[p];
}

// Transpose of spect_blur_sum_forward: one block per view spreads its plane near to far.
extern "C" __global__ void spect_blur_spread_back(
    const float* __restrict__ planes, SpectGrid g, const int* __restrict__ view_ids,
    const float* __restrict__ blur_w, const int* __restrict__ blur_n, const int* __restrict__ blur_s,
    float* __restrict__ scratch, float* __restrict__ out_q) {
    SpectBlur B;
    if (!spect_blur_start(g, view_ids, scratch, planes, (long long)g.nz * g.n_u, &B)) return;
    float* qk = out_q + (long long)B.k * g.n_d * B.plane;
    spect_blur_step(g, &B, blur_w, blur_n, blur_s, 0);
    for (long long p = threadIdx.x; p < B.plane; p += blockDim.x) qk[(g.n_d - 1) * B.plane + p] = B.cur[p];
    for (int j = g.n_d - 1; j >= 1; --j) {
        spect_blur_step(g, &B, blur_w, blur_n, blur_s, j);
        for (long long p = threadIdx.x; p < B.plane; p += blockDim.x) qk[(j - 1) * B.plane + p] = B.cur[p];
    }
}
