// PET line-integral projector kernels (the GPU twin of recon/pet/_cpu.py; same arguments, same
// order, same arithmetic). One thread per LOR.
//
// Joseph's method (P. M. Joseph, "An improved algorithm for reprojecting rays through pixel
// images", IEEE Trans. Med. Imaging 1(3):192-196, 1982): the LOR from xstart to xend is walked
// plane by plane along its principal axis p (the largest |component| of xend - xstart; ties go to
// x, then y), the image is interpolated bilinearly in the two other axes (zero outside the image),
// and each plane contributes with weight  voxel_p * |d| / |d_p|,  the path length between two
// planes. A line through an image of ones over L mm therefore gives L (line integrals in mm).
// Only planes whose crossing lies on the segment [xstart, xend] count.
//
// TOF: a sample at signed distance s from the LOR midpoint (positive towards xend) contributes to
// TOF bin b (centre b*w) with the integral of a Gaussian of standard deviation sigma over the bin,
// 0.5 [erf((hi - s)/(sqrt2 sigma)) - erf((lo - s)/(sqrt2 sigma))], lo/hi = (b -/+ 1/2) w, and with
// 0 where |s - b w| > n_sigmas sigma + w/2. The TOF kernels clip their walk to the part of the LOR
// where that weight can be non-zero.
//
// Layout: images are (z, y, x) float32, C order; xstart/xend are (n, 3) float32 world (x, y, z)
// mm; (x0, y0, z0) is the world position of the centre of voxel [0, 0, 0]; (dx, dy, dz) the voxel
// size in mm. Forward kernels overwrite their output; back-projections add into out_image with
// atomicAdd (the caller zeroes it).
//
// Compiled at run time by CuPy (NVRTC); in CI the same file is compiled by g++ through
// tests/cuda_compat/recon_cuda_compat.h and compared with the numba kernels.

#ifndef PET_BLOCK
#define PET_BLOCK 256
#endif

// One LOR, expressed along its principal axis p and the two other axes (1, 2). A point of the LOR
// is xstart + t (xend - xstart), t in [0, 1]; plane k of axis p sits at t = (c0 + k vp) / dp, and
// there the fractional voxel indices along axes 1 and 2 are e1 + t g1 and e2 + t g2.
struct PetLor {
    float c0;      // origin_p - xstart_p, mm
    float dp;      // (xend - xstart)_p, mm
    float inv_dp;  // 1 / dp
    float vp;      // voxel size along p, mm
    int np;        // number of planes along p
    long long sp;  // element stride of axis p in the image
    float e1, g1;  // fractional index along axis 1 at t = 0, and its change per unit t
    int n1;
    long long s1;
    float e2, g2;
    int n2;
    long long s2;
    float length;  // |xend - xstart|, mm
    float weight;  // vp * length / |dp|: path length between consecutive planes, mm
    float t_lo;    // part of the segment that can touch the image (and the TOF window)
    float t_hi;
};

// Narrows [t_lo, t_hi] to where the fractional index e + t g of one secondary axis lies in
// [-1, n] (beyond that, bilinear interpolation only sees zeros). False when the LOR misses.
__device__ __forceinline__ bool pet_clip_axis(float e, float g, int n, float* t_lo, float* t_hi) {
    if (g == 0.0f) return e > -1.0f && e < (float)n;
    const float ta = (-1.0f - e) / g;
    const float tb = ((float)n - e) / g;
    *t_lo = fmaxf(*t_lo, fminf(ta, tb));
    *t_hi = fminf(*t_hi, fmaxf(ta, tb));
    return true;
}

// Principal axis, plane geometry and the part of the segment [0, 1] that can touch the image.
// False for a degenerate LOR (xstart == xend) or one that misses the image.
__device__ __forceinline__ bool pet_lor_setup(const float* __restrict__ xstart,
                                              const float* __restrict__ xend, long long i, int nz,
                                              int ny, int nx, float x0, float y0, float z0, float dx,
                                              float dy, float dz, PetLor* L) {
    const float ax = xstart[3 * i], ay = xstart[3 * i + 1], az = xstart[3 * i + 2];
    const float ddx = xend[3 * i] - ax, ddy = xend[3 * i + 1] - ay, ddz = xend[3 * i + 2] - az;
    const float adx = fabsf(ddx), ady = fabsf(ddy), adz = fabsf(ddz);
    const float length = sqrtf(ddx * ddx + ddy * ddy + ddz * ddz);
    if (!(length > 0.0f)) return false;
    const long long sx = 1, sy = nx, sz = (long long)nx * ny;
    float ap, op, a1, d1, o1, v1, a2, d2, o2, v2;
    if (adx >= ady && adx >= adz) {
        ap = ax; L->dp = ddx; op = x0; L->vp = dx; L->np = nx; L->sp = sx;
        a1 = ay; d1 = ddy; o1 = y0; v1 = dy; L->n1 = ny; L->s1 = sy;
        a2 = az; d2 = ddz; o2 = z0; v2 = dz; L->n2 = nz; L->s2 = sz;
    } else if (ady >= adz) {
        ap = ay; L->dp = ddy; op = y0; L->vp = dy; L->np = ny; L->sp = sy;
        a1 = ax; d1 = ddx; o1 = x0; v1 = dx; L->n1 = nx; L->s1 = sx;
        a2 = az; d2 = ddz; o2 = z0; v2 = dz; L->n2 = nz; L->s2 = sz;
    } else {
        ap = az; L->dp = ddz; op = z0; L->vp = dz; L->np = nz; L->sp = sz;
        a1 = ax; d1 = ddx; o1 = x0; v1 = dx; L->n1 = nx; L->s1 = sx;
        a2 = ay; d2 = ddy; o2 = y0; v2 = dy; L->n2 = ny; L->s2 = sy;
    }
    L->c0 = op - ap;
    L->inv_dp = 1.0f / L->dp;
    L->e1 = (a1 - o1) / v1;
    L->g1 = d1 / v1;
    L->e2 = (a2 - o2) / v2;
    L->g2 = d2 / v2;
    L->length = length;
    L->weight = L->vp * length / fabsf(L->dp);
    L->t_lo = 0.0f;
    L->t_hi = 1.0f;
    if (!pet_clip_axis(L->e1, L->g1, L->n1, &L->t_lo, &L->t_hi)) return false;
    if (!pet_clip_axis(L->e2, L->g2, L->n2, &L->t_lo, &L->t_hi)) return false;
    return L->t_lo <= L->t_hi;
}

// Narrows the walk to the samples whose signed distance from the midpoint lies in [s_lo, s_hi].
__device__ __forceinline__ bool pet_clip_window(PetLor* L, float s_lo, float s_hi) {
    L->t_lo = fmaxf(L->t_lo, 0.5f + s_lo / L->length);
    L->t_hi = fminf(L->t_hi, 0.5f + s_hi / L->length);
    return L->t_lo <= L->t_hi;
}

// Planes k0..k1 to visit: those around [t_lo, t_hi] (one plane of margin from floor/ceil; the
// samples themselves decide, so the margin only costs a few empty samples).
__device__ __forceinline__ void pet_plane_range(const PetLor& L, int* k0, int* k1) {
    const float ka = (L.t_lo * L.dp - L.c0) / L.vp;
    const float kb = (L.t_hi * L.dp - L.c0) / L.vp;
    const float kmin = fminf(fmaxf(floorf(fminf(ka, kb)), 0.0f), (float)L.np);
    const float kmax = fmaxf(fminf(ceilf(fmaxf(ka, kb)), (float)(L.np - 1)), -1.0f);
    *k0 = (int)kmin;
    *k1 = (int)kmax;
}

// Segment parameter t of plane k (the sample counts when 0 <= t <= 1).
__device__ __forceinline__ float pet_plane_t(const PetLor& L, int k) {
    return (L.c0 + (float)k * L.vp) * L.inv_dp;
}

__device__ __forceinline__ float pet_bilinear(const float* __restrict__ img, long long base,
                                              float f1, int n1, long long s1, float f2, int n2,
                                              long long s2) {
    // Clamping the integer part keeps the cast defined; the weights use the true fraction.
    const float fl1 = floorf(f1), fl2 = floorf(f2);
    const float w1 = f1 - fl1, w2 = f2 - fl2;
    const int i1 = (int)fminf(fmaxf(fl1, -2.0f), (float)n1);
    const int i2 = (int)fminf(fmaxf(fl2, -2.0f), (float)n2);
    float acc = 0.0f;
    if (i2 >= 0 && i2 < n2) {
        const long long b = base + (long long)i2 * s2;
        if (i1 >= 0 && i1 < n1) acc += (1.0f - w1) * (1.0f - w2) * img[b + (long long)i1 * s1];
        if (i1 + 1 >= 0 && i1 + 1 < n1) acc += w1 * (1.0f - w2) * img[b + (long long)(i1 + 1) * s1];
    }
    if (i2 + 1 >= 0 && i2 + 1 < n2) {
        const long long b = base + (long long)(i2 + 1) * s2;
        if (i1 >= 0 && i1 < n1) acc += (1.0f - w1) * w2 * img[b + (long long)i1 * s1];
        if (i1 + 1 >= 0 && i1 + 1 < n1) acc += w1 * w2 * img[b + (long long)(i1 + 1) * s1];
    }
    return acc;
}

// Transpose of pet_bilinear: adds value times the interpolation weights into img.
__device__ __forceinline__ void pet_bilinear_scatter(float* __restrict__ img, long long base,
                                                     float f1, int n1, long long s1, float f2,
                                                     int n2, long long s2, float value) {
    const float fl1 = floorf(f1), fl2 = floorf(f2);
    const float w1 = f1 - fl1, w2 = f2 - fl2;
    const int i1 = (int)fminf(fmaxf(fl1, -2.0f), (float)n1);
    const int i2 = (int)fminf(fmaxf(fl2, -2.0f), (float)n2);
    if (i2 >= 0 && i2 < n2) {
        const long long b = base + (long long)i2 * s2;
        if (i1 >= 0 && i1 < n1) atomicAdd(img + b + (long long)i1 * s1, (1.0f - w1) * (1.0f - w2) * value);
        if (i1 + 1 >= 0 && i1 + 1 < n1) atomicAdd(img + b + (long long)(i1 + 1) * s1, w1 * (1.0f - w2) * value);
    }
    if (i2 + 1 >= 0 && i2 + 1 < n2) {
        const long long b = base + (long long)(i2 + 1) * s2;
        if (i1 >= 0 && i1 < n1) atomicAdd(img + b + (long long)i1 * s1, (1.0f - w1) * w2 * value);
        if (i1 + 1 >= 0 && i1 + 1 < n1) atomicAdd(img + b + (long long)(i1 + 1) * s1, w1 * w2 * value);
    }
}

// TOF weights. The weight of bin b (edges lo, hi = (b -/+ 1/2) w) for a sample at s is the
// Gaussian mass over the bin, 0.5 [erf((hi - s) k) - erf((lo - s) k)] with k = 1 / (sqrt2 sigma).
// It is evaluated from the tail masses beyond each edge, 0.5 erfc(|edge - s| k), which never
// subtracts two numbers close to 1 (so float32 keeps its relative precision far in the tails),
// and lets consecutive bins share the erfc of their common edge.
__device__ __forceinline__ float pet_tof_tail(float edge, float s, float k) {
    return 0.5f * erfcf(fabsf(edge - s) * k);
}

__device__ __forceinline__ float pet_tof_bin(float s, float lo, float hi, float tail_lo,
                                             float tail_hi) {
    if (lo >= s) return tail_lo - tail_hi;  // bin entirely beyond s
    if (hi <= s) return tail_hi - tail_lo;  // bin entirely before s
    return 1.0f - tail_lo - tail_hi;        // bin around s
}

// Weight of bin b for a sample at s: zero beyond reach = n_sigmas sigma + w/2 of the bin centre.
__device__ __forceinline__ float pet_tof_weight(float s, int b, float w, float k, float reach) {
    if (fabsf(s - (float)b * w) > reach) return 0.0f;
    const float lo = ((float)b - 0.5f) * w;
    const float hi = ((float)b + 0.5f) * w;
    return pet_tof_bin(s, lo, hi, pet_tof_tail(lo, s, k), pet_tof_tail(hi, s, k));
}

// out[b + max_bin] += weight(s, b) * v for the bins b_lo..b_hi; neighbours share an edge.
__device__ __forceinline__ void pet_tof_spread(float s, float v, int b_lo, int b_hi, int max_bin,
                                               float w, float k, float reach,
                                               float* __restrict__ out) {
    float lo = ((float)b_lo - 0.5f) * w;
    float tail_lo = pet_tof_tail(lo, s, k);
    for (int b = b_lo; b <= b_hi; ++b) {
        const float hi = ((float)b + 0.5f) * w;
        const float tail_hi = pet_tof_tail(hi, s, k);
        if (fabsf(s - (float)b * w) <= reach) {
            out[b + max_bin] += pet_tof_bin(s, lo, hi, tail_lo, tail_hi) * v;
        }
        lo = hi;
        tail_lo = tail_hi;
    }
}

// Transpose of pet_tof_spread: sum over b_lo..b_hi of weight(s, b) * val[b + max_bin].
__device__ __forceinline__ float pet_tof_gather(float s, const float* __restrict__ val, int b_lo,
                                                int b_hi, int max_bin, float w, float k,
                                                float reach) {
    float lo = ((float)b_lo - 0.5f) * w;
    float tail_lo = pet_tof_tail(lo, s, k);
    float acc = 0.0f;
    for (int b = b_lo; b <= b_hi; ++b) {
        const float hi = ((float)b + 0.5f) * w;
        const float tail_hi = pet_tof_tail(hi, s, k);
        if (fabsf(s - (float)b * w) <= reach) {
            acc += pet_tof_bin(s, lo, hi, tail_lo, tail_hi) * val[b + max_bin];
        }
        lo = hi;
        tail_lo = tail_hi;
    }
    return acc;
}

// ------------------------------------------------------------------------------ non-TOF
// out_values[i] = line integral of image along LOR i (mm times image units).
extern "C" __global__ void pet_joseph_forward(
    const float* __restrict__ image, int nz, int ny, int nx,
    float x0, float y0, float z0, float dx, float dy, float dz,
    const float* __restrict__ xstart, const float* __restrict__ xend, int n_lors,
    float* __restrict__ out_values) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_lors) return;
    PetLor L;
    float acc = 0.0f;
    if (pet_lor_setup(xstart, xend, i, nz, ny, nx, x0, y0, z0, dx, dy, dz, &L)) {
        int k0, k1;
        pet_plane_range(L, &k0, &k1);
        for (int k = k0; k <= k1; ++k) {
            const float t = pet_plane_t(L, k);
            if (t < 0.0f || t > 1.0f) continue;
            acc += pet_bilinear(image, (long long)k * L.sp, L.e1 + t * L.g1, L.n1, L.s1,
                                L.e2 + t * L.g2, L.n2, L.s2);
        }
        acc *= L.weight;
    }
    out_values[i] = acc;
}

// Adjoint of pet_joseph_forward: adds values[i] along LOR i into out_image.
extern "C" __global__ void pet_joseph_back(
    const float* __restrict__ values, int nz, int ny, int nx,
    float x0, float y0, float z0, float dx, float dy, float dz,
    const float* __restrict__ xstart, const float* __restrict__ xend, int n_lors,
    float* __restrict__ out_image) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_lors) return;
    PetLor L;
    if (values[i] == 0.0f) return;
    if (!pet_lor_setup(xstart, xend, i, nz, ny, nx, x0, y0, z0, dx, dy, dz, &L)) return;
    const float value = values[i] * L.weight;
    int k0, k1;
    pet_plane_range(L, &k0, &k1);
    for (int k = k0; k <= k1; ++k) {
        const float t = pet_plane_t(L, k);
        if (t < 0.0f || t > 1.0f) continue;
        pet_bilinear_scatter(out_image, (long long)k * L.sp, L.e1 + t * L.g1, L.n1, L.s1,
                             L.e2 + t * L.g2, L.n2, L.s2, value);
    }
}

// ------------------------------------------------------------------ TOF, sinogram mode
// out_values[i][b + max_bin] for b = -max_bin..max_bin: every TOF bin of LOR i. The LOR is walked
// once (over the reach of all bins); each sample updates only the bins within its reach.
extern "C" __global__ void pet_joseph_tof_sino_forward(
    const float* __restrict__ image, int nz, int ny, int nx,
    float x0, float y0, float z0, float dx, float dy, float dz,
    const float* __restrict__ xstart, const float* __restrict__ xend, int n_lors,
    float tof_width, float tof_sigma, float n_sigmas, int max_bin,
    float* __restrict__ out_values) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_lors) return;
    const int n_tof = 2 * max_bin + 1;
    float* out = out_values + i * n_tof;
    for (int b = 0; b < n_tof; ++b) out[b] = 0.0f;
    const float k_erf = 1.0f / (1.4142135623730951f * tof_sigma);
    const float reach = n_sigmas * tof_sigma + 0.5f * tof_width;
    const float edge = (float)max_bin * tof_width + reach;
    PetLor L;
    if (!pet_lor_setup(xstart, xend, i, nz, ny, nx, x0, y0, z0, dx, dy, dz, &L)) return;
    if (!pet_clip_window(&L, -edge, edge)) return;
    int k0, k1;
    pet_plane_range(L, &k0, &k1);
    for (int k = k0; k <= k1; ++k) {
        const float t = pet_plane_t(L, k);
        if (t < 0.0f || t > 1.0f) continue;
        const float v = pet_bilinear(image, (long long)k * L.sp, L.e1 + t * L.g1, L.n1, L.s1,
                                     L.e2 + t * L.g2, L.n2, L.s2);
        if (v == 0.0f) continue;
        const float s = (t - 0.5f) * L.length;
        const int b_lo = max(-max_bin, (int)floorf((s - reach) / tof_width));
        const int b_hi = min(max_bin, (int)ceilf((s + reach) / tof_width));
        pet_tof_spread(s, v, b_lo, b_hi, max_bin, tof_width, k_erf, reach, out);
    }
    for (int b = 0; b < n_tof; ++b) out[b] *= L.weight;
}

// Adjoint of pet_joseph_tof_sino_forward.
extern "C" __global__ void pet_joseph_tof_sino_back(
    const float* __restrict__ values, int nz, int ny, int nx,
    float x0, float y0, float z0, float dx, float dy, float dz,
    const float* __restrict__ xstart, const float* __restrict__ xend, int n_lors,
    float tof_width, float tof_sigma, float n_sigmas, int max_bin,
    float* __restrict__ out_image) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_lors) return;
    const int n_tof = 2 * max_bin + 1;
    const float* val = values + i * n_tof;
    const float k_erf = 1.0f / (1.4142135623730951f * tof_sigma);
    const float reach = n_sigmas * tof_sigma + 0.5f * tof_width;
    const float edge = (float)max_bin * tof_width + reach;
    PetLor L;
    if (!pet_lor_setup(xstart, xend, i, nz, ny, nx, x0, y0, z0, dx, dy, dz, &L)) return;
    if (!pet_clip_window(&L, -edge, edge)) return;
    int k0, k1;
    pet_plane_range(L, &k0, &k1);
    for (int k = k0; k <= k1; ++k) {
        const float t = pet_plane_t(L, k);
        if (t < 0.0f || t > 1.0f) continue;
        const float s = (t - 0.5f) * L.length;
        const int b_lo = max(-max_bin, (int)floorf((s - reach) / tof_width));
        const int b_hi = min(max_bin, (int)ceilf((s + reach) / tof_width));
        const float v = pet_tof_gather(s, val, b_lo, b_hi, max_bin, tof_width, k_erf, reach);
        if (v == 0.0f) continue;
        pet_bilinear_scatter(out_image, (long long)k * L.sp, L.e1 + t * L.g1, L.n1, L.s1,
                             L.e2 + t * L.g2, L.n2, L.s2, v * L.weight);
    }
}

// ------------------------------------------------------------------- TOF, listmode mode
// out_values[i]: the projection of LOR i into its own TOF bin tof_bin[i]. Only the planes within
// reach of that bin are walked.
extern "C" __global__ void pet_joseph_tof_lm_forward(
    const float* __restrict__ image, int nz, int ny, int nx,
    float x0, float y0, float z0, float dx, float dy, float dz,
    const float* __restrict__ xstart, const float* __restrict__ xend, int n_lors,
    float tof_width, float tof_sigma, float n_sigmas, const int* __restrict__ tof_bin,
    float* __restrict__ out_values) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_lors) return;
    const int b = tof_bin[i];
    const float k_erf = 1.0f / (1.4142135623730951f * tof_sigma);
    const float reach = n_sigmas * tof_sigma + 0.5f * tof_width;
    const float c = (float)b * tof_width;
    PetLor L;
    float acc = 0.0f;
    if (pet_lor_setup(xstart, xend, i, nz, ny, nx, x0, y0, z0, dx, dy, dz, &L) &&
        pet_clip_window(&L, c - reach, c + reach)) {
        int k0, k1;
        pet_plane_range(L, &k0, &k1);
        for (int k = k0; k <= k1; ++k) {
            const float t = pet_plane_t(L, k);
            if (t < 0.0f || t > 1.0f) continue;
            const float v = pet_bilinear(image, (long long)k * L.sp, L.e1 + t * L.g1, L.n1, L.s1,
                                         L.e2 + t * L.g2, L.n2, L.s2);
            if (v == 0.0f) continue;
            acc += pet_tof_weight((t - 0.5f) * L.length, b, tof_width, k_erf, reach) * v;
        }
        acc *= L.weight;
    }
    out_values[i] = acc;
}

// Adjoint of pet_joseph_tof_lm_forward.
extern "C" __global__ void pet_joseph_tof_lm_back(
    const float* __restrict__ values, int nz, int ny, int nx,
    float x0, float y0, float z0, float dx, float dy, float dz,
    const float* __restrict__ xstart, const float* __restrict__ xend, int n_lors,
    float tof_width, float tof_sigma, float n_sigmas, const int* __restrict__ tof_bin,
    float* __restrict__ out_image) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_lors) return;
    if (values[i] == 0.0f) return;
    const int b = tof_bin[i];
    const float k_erf = 1.0f / (1.4142135623730951f * tof_sigma);
    const float reach = n_sigmas * tof_sigma + 0.5f * tof_width;
    const float c = (float)b * tof_width;
    PetLor L;
    if (!pet_lor_setup(xstart, xend, i, nz, ny, nx, x0, y0, z0, dx, dy, dz, &L)) return;
    if (!pet_clip_window(&L, c - reach, c + reach)) return;
    const float value = values[i] * L.weight;
    int k0, k1;
    pet_plane_range(L, &k0, &k1);
    for (int k = k0; k <= k1; ++k) {
        const float t = pet_plane_t(L, k);
        if (t < 0.0f || t > 1.0f) continue;
        const float w = pet_tof_weight((t - 0.5f) * L.length, b, tof_width, k_erf, reach);
        if (w == 0.0f) continue;
        pet_bilinear_scatter(out_image, (long long)k * L.sp, L.e1 + t * L.g1, L.n1, L.s1,
                             L.e2 + t * L.g2, L.n2, L.s2, w * value);
    }
}
