// PET line-integral projector kernels (the GPU twin of recon/pet/_cpu.py: the same kernels with the
// same arguments in the same order, the same helpers under the same names, the same arithmetic).
// One thread per LOR.
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
// Every kernel is the same three steps, each written once below:
//   pet_tof_window  (TOF only) the bins the LOR's values hold, and the part of the LOR they see;
//   pet_lor_setup   principal axis, planes and weight of LOR i, clipped to the image and window;
//   pet_walk        the Joseph walk: the kernel's own per-sample step (a lambda) once per plane.
//
// Layout: images are (z, y, x) float32, C order; xstart/xend are (n, 3) float32 world (x, y, z)
// mm. PetGrid and PetTof are passed by value (from CuPy as a one-element numpy structured array of
// the same layout, built in recon/pet/_gpu.py; the launcher tests check the layout against this
// file). Forward kernels overwrite their output; back-projections add into out_image with
// atomicAdd (the caller zeroes it).
//
// Compiled at run time by CuPy (NVRTC); in CI the same file is compiled by g++ through
// tests/cuda_compat/recon_cuda_compat.h and compared with the numba kernels.

// A window bound that clips nothing (the non-TOF kernels): |s| of any LOR is far below it.
#define PET_NO_WINDOW 3.0e38f

// ---------------------------------------------------------------------------- parameters
struct PetGrid {
    int nz, ny, nx;    // image size (z, y, x)
    float x0, y0, z0;  // world position of the centre of voxel [0, 0, 0], mm
    float dx, dy, dz;  // voxel size, mm
};

struct PetTof {
    float width;     // bin width w, mm
    float sigma;     // standard deviation of the timing kernel, mm
    float n_sigmas;  // truncation of the kernel, in sigmas
    int max_bin;     // signed bins -max_bin..max_bin
};

// ---------------------------------------------------------------------------- the walk
// One LOR, expressed along its principal axis p and the two other axes (1, 2). A point of the LOR
// is xstart + t (xend - xstart), t in [0, 1]; plane k of axis p sits at t = (c0 + k vp) / dp, and
// there the fractional voxel indices along axes 1 and 2 are e1 + t g1 and e2 + t g2.
struct PetLor {
    int k0, k1;    // planes to visit (k0 > k1: none)
    float c0;      // origin_p - xstart_p, mm
    float dp;      // (xend - xstart)_p, mm
    float inv_dp;  // 1 / dp
    float vp;      // voxel size along p, mm
    long long sp;  // element stride of axis p in the image
    float e1, g1;  // fractional index along axis 1 at t = 0, and its change per unit t
    int n1;
    long long s1;
    float e2, g2;
    int n2;
    long long s2;
    float length;  // |xend - xstart|, mm
    float weight;  // vp * length / |dp|: path length between consecutive planes, mm (0: no walk)
};

// One plane crossing: plane k, at segment parameter t and signed distance s from the LOR midpoint
// (mm). Its position in the plane is left to pet_footprint, so that it is computed only where it
// is used (the TOF back-projection first sums over bins: fewer registers live across that loop).
struct PetSample {
    int k;
    float t;
    float s;
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

// Principal axis and plane geometry of LOR i, and the planes k0..k1 to visit: those around the
// part of the segment that can touch the image and whose samples lie at signed distances
// [s_lo, s_hi] from the midpoint (one plane of margin from floor/ceil; the walk itself keeps only
// samples on the segment). A degenerate LOR (xstart == xend), or one that misses the image or the
// window, gets no planes and weight 0.
__device__ __forceinline__ PetLor pet_lor_setup(const PetGrid& g, const float* __restrict__ xstart,
                                                const float* __restrict__ xend, long long i,
                                                float s_lo, float s_hi) {
    const float ax = xstart[3 * i], ay = xstart[3 * i + 1], az = xstart[3 * i + 2];
    const float ddx = xend[3 * i] - ax, ddy = xend[3 * i + 1] - ay, ddz = xend[3 * i + 2] - az;
    const float adx = fabsf(ddx), ady = fabsf(ddy), adz = fabsf(ddz);
    const float length = sqrtf(ddx * ddx + ddy * ddy + ddz * ddz);
    const long long sx = 1, sy = g.nx, sz = (long long)g.nx * g.ny;
    PetLor L;
    float ap, op, a1, d1, o1, v1, a2, d2, o2, v2;
    int np;
    if (adx >= ady && adx >= adz) {
        ap = ax; L.dp = ddx; op = g.x0; L.vp = g.dx; np = g.nx; L.sp = sx;
        a1 = ay; d1 = ddy; o1 = g.y0; v1 = g.dy; L.n1 = g.ny; L.s1 = sy;
        a2 = az; d2 = ddz; o2 = g.z0; v2 = g.dz; L.n2 = g.nz; L.s2 = sz;
    } else if (ady >= adz) {
        ap = ay; L.dp = ddy; op = g.y0; L.vp = g.dy; np = g.ny; L.sp = sy;
        a1 = ax; d1 = ddx; o1 = g.x0; v1 = g.dx; L.n1 = g.nx; L.s1 = sx;
        a2 = az; d2 = ddz; o2 = g.z0; v2 = g.dz; L.n2 = g.nz; L.s2 = sz;
    } else {
        ap = az; L.dp = ddz; op = g.z0; L.vp = g.dz; np = g.nz; L.sp = sz;
        a1 = ax; d1 = ddx; o1 = g.x0; v1 = g.dx; L.n1 = g.nx; L.s1 = sx;
        a2 = ay; d2 = ddy; o2 = g.y0; v2 = g.dy; L.n2 = g.ny; L.s2 = sy;
    }
    L.c0 = op - ap;
    L.inv_dp = 1.0f / L.dp;
    L.e1 = (a1 - o1) / v1;
    L.g1 = d1 / v1;
    L.e2 = (a2 - o2) / v2;
    L.g2 = d2 / v2;
    L.length = length;
    L.weight = L.vp * length / fabsf(L.dp);
    L.k0 = 0;
    L.k1 = -1;
    float t_lo = 0.0f, t_hi = 1.0f;
    if (!(length > 0.0f) || !pet_clip_axis(L.e1, L.g1, L.n1, &t_lo, &t_hi) ||
        !pet_clip_axis(L.e2, L.g2, L.n2, &t_lo, &t_hi) || !(t_lo <= t_hi)) {
        L.weight = 0.0f;
        return L;
    }
    t_lo = fmaxf(t_lo, 0.5f + s_lo / length);
    t_hi = fminf(t_hi, 0.5f + s_hi / length);
    if (!(t_lo <= t_hi)) {
        L.weight = 0.0f;
        return L;
    }
    const float ka = (t_lo * L.dp - L.c0) / L.vp;
    const float kb = (t_hi * L.dp - L.c0) / L.vp;
    L.k0 = (int)fminf(fmaxf(floorf(fminf(ka, kb)), 0.0f), (float)np);
    L.k1 = (int)fmaxf(fminf(ceilf(fmaxf(ka, kb)), (float)(np - 1)), -1.0f);
    return L;
}

// The Joseph walk: visit(sample) for every plane k0..k1 whose crossing lies on the segment.
template <class Visit>
__device__ __forceinline__ void pet_walk(const PetLor& L, Visit visit) {
    for (int k = L.k0; k <= L.k1; ++k) {
        const float t = (L.c0 + (float)k * L.vp) * L.inv_dp;
        if (t < 0.0f || t > 1.0f) continue;
        visit(PetSample{k, t, (t - 0.5f) * L.length});
    }
}

// ----------------------------------------------------------------- bilinear interpolation
// A sample's bilinear footprint: the offset of its plane in the image, the corner (i1, i2) and the
// weights w1, w2 of the far corner, from the fractional indices e + t g along the secondary axes.
struct PetFootprint {
    long long base;
    int i1, i2;
    float w1, w2;
};

__device__ __forceinline__ PetFootprint pet_footprint(const PetLor& L, const PetSample& S) {
    const float f1 = L.e1 + S.t * L.g1, f2 = L.e2 + S.t * L.g2;
    // Clamping the integer part keeps the cast defined; the weights use the true fraction.
    const float fl1 = floorf(f1), fl2 = floorf(f2);
    return PetFootprint{(long long)S.k * L.sp, (int)fminf(fmaxf(fl1, -2.0f), (float)L.n1),
                        (int)fminf(fmaxf(fl2, -2.0f), (float)L.n2), f1 - fl1, f2 - fl2};
}

__device__ __forceinline__ float pet_bilinear(const float* __restrict__ img, const PetLor& L,
                                              const PetSample& S) {
    const PetFootprint F = pet_footprint(L, S);
    const int i1 = F.i1, i2 = F.i2;
    const float w1 = F.w1, w2 = F.w2;
    float acc = 0.0f;
    if (i2 >= 0 && i2 < L.n2) {
        const long long b = F.base + (long long)i2 * L.s2;
        if (i1 >= 0 && i1 < L.n1) acc += (1.0f - w1) * (1.0f - w2) * img[b + (long long)i1 * L.s1];
        if (i1 + 1 >= 0 && i1 + 1 < L.n1) acc += w1 * (1.0f - w2) * img[b + (long long)(i1 + 1) * L.s1];
    }
    if (i2 + 1 >= 0 && i2 + 1 < L.n2) {
        const long long b = F.base + (long long)(i2 + 1) * L.s2;
        if (i1 >= 0 && i1 < L.n1) acc += (1.0f - w1) * w2 * img[b + (long long)i1 * L.s1];
        if (i1 + 1 >= 0 && i1 + 1 < L.n1) acc += w1 * w2 * img[b + (long long)(i1 + 1) * L.s1];
    }
    return acc;
}

// Transpose of pet_bilinear: adds value times the interpolation weights into img.
__device__ __forceinline__ void pet_bilinear_scatter(float* __restrict__ img, const PetLor& L,
                                                     const PetSample& S, float value) {
    const PetFootprint F = pet_footprint(L, S);
    const int i1 = F.i1, i2 = F.i2;
    const float w1 = F.w1, w2 = F.w2;
    if (i2 >= 0 && i2 < L.n2) {
        const long long b = F.base + (long long)i2 * L.s2;
        if (i1 >= 0 && i1 < L.n1) atomicAdd(img + b + (long long)i1 * L.s1, (1.0f - w1) * (1.0f - w2) * value);
        if (i1 + 1 >= 0 && i1 + 1 < L.n1) atomicAdd(img + b + (long long)(i1 + 1) * L.s1, w1 * (1.0f - w2) * value);
    }
    if (i2 + 1 >= 0 && i2 + 1 < L.n2) {
        const long long b = F.base + (long long)(i2 + 1) * L.s2;
        if (i1 >= 0 && i1 < L.n1) atomicAdd(img + b + (long long)i1 * L.s1, (1.0f - w1) * w2 * value);
        if (i1 + 1 >= 0 && i1 + 1 < L.n1) atomicAdd(img + b + (long long)(i1 + 1) * L.s1, w1 * w2 * value);
    }
}

// ------------------------------------------------------------------------------ TOF weights
// The TOF set-up of one LOR: the bins b_first..b_last its values hold (value j is bin b_first + j)
// and the signed distances [s_lo, s_hi] from the midpoint where those bins' weights can be
// non-zero, reach = n_sigmas sigma + w/2 around each bin centre.
struct PetTofWindow {
    float w;      // bin width, mm
    float k;      // 1 / (sqrt2 sigma), 1/mm
    float reach;  // mm
    int b_first, b_last;
    float s_lo, s_hi;
};

__device__ __forceinline__ PetTofWindow pet_tof_window(const PetTof& tof, int b_first, int b_last) {
    PetTofWindow W;
    W.w = tof.width;
    W.k = 1.0f / (1.4142135623730951f * tof.sigma);
    W.reach = tof.n_sigmas * tof.sigma + 0.5f * tof.width;
    W.b_first = b_first;
    W.b_last = b_last;
    W.s_lo = (float)b_first * W.w - W.reach;
    W.s_hi = (float)b_last * W.w + W.reach;
    return W;
}

// The weight of bin b (edges lo, hi = (b -/+ 1/2) w) for a sample at s is the Gaussian mass over
// the bin, 0.5 [erf((hi - s) k) - erf((lo - s) k)]. It is evaluated from the tail masses beyond
// each edge, 0.5 erfc(|edge - s| k), which never subtracts two numbers close to 1 (so float32
// keeps its relative precision far in the tails), and lets consecutive bins share the erfc of
// their common edge.
__device__ __forceinline__ float pet_tof_tail(float edge, float s, float k) {
    return 0.5f * erfcf(fabsf(edge - s) * k);
}

__device__ __forceinline__ float pet_tof_bin(float s, float lo, float hi, float tail_lo,
                                             float tail_hi) {
    if (lo >= s) return tail_lo - tail_hi;  // bin entirely beyond s
    if (hi <= s) return tail_hi - tail_lo;  // bin entirely before s
    return 1.0f - tail_lo - tail_hi;        // bin around s
}

// Listmode weight of a sample at s for bin b from a table: the weight depends only on the distance
// d = |s - b w| from the bin centre, f(d) = 0.5 [erf((w/2 - d) k) + erf((w/2 + d) k)], which
// recon/pet/projector.py tabulates in float64 every 1/inv_step mm on [0, reach] (size entries, the
// last beyond reach) and which is interpolated linearly here: one pair of loads per sample instead
// of two erfc (relative error below 1e-5 within reach; tests/test_pet_projector.py checks it).
__device__ __forceinline__ float pet_tof_table_weight(const PetTofWindow& W,
                                                      const float* __restrict__ table,
                                                      float inv_step, int size, float s, int b) {
    const float d = fabsf(s - (float)b * W.w);
    if (d > W.reach) return 0.0f;
    const float u = d * inv_step;
    const int j = min((int)u, size - 2);
    const float frac = u - (float)j;
    return table[j] + frac * (table[j + 1] - table[j]);
}

// visit(j, weight) for every bin b_first + j of the window within reach of a sample at s;
// neighbouring bins share the erfc of their common edge.
template <class Visit>
__device__ __forceinline__ void pet_tof_bins(const PetTofWindow& W, float s, Visit visit) {
    const int b_lo = max(W.b_first, (int)floorf((s - W.reach) / W.w));
    const int b_hi = min(W.b_last, (int)ceilf((s + W.reach) / W.w));
    float lo = ((float)b_lo - 0.5f) * W.w;
    float tail_lo = pet_tof_tail(lo, s, W.k);
    for (int b = b_lo; b <= b_hi; ++b) {
        const float hi = ((float)b + 0.5f) * W.w;
        const float tail_hi = pet_tof_tail(hi, s, W.k);
        if (fabsf(s - (float)b * W.w) <= W.reach) {
            visit(b - W.b_first, pet_tof_bin(s, lo, hi, tail_lo, tail_hi));
        }
        lo = hi;
        tail_lo = tail_hi;
    }
}

// ---------------------------------------------------------------------------------- non-TOF
// out_values[i] = line integral of image along LOR i (mm times image units).
extern "C" __global__ void pet_joseph_forward(
    const float* __restrict__ image, PetGrid grid, const float* __restrict__ xstart,
    const float* __restrict__ xend, int n_lors, float* __restrict__ out_values) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_lors) return;
    const PetLor L = pet_lor_setup(grid, xstart, xend, i, -PET_NO_WINDOW, PET_NO_WINDOW);
    float acc = 0.0f;
    pet_walk(L, [&](const PetSample& S) { acc += pet_bilinear(image, L, S); });
    out_values[i] = acc * L.weight;
}

// Adjoint of pet_joseph_forward: adds values[i] along LOR i into out_image.
extern "C" __global__ void pet_joseph_back(
    const float* __restrict__ values, PetGrid grid, const float* __restrict__ xstart,
    const float* __restrict__ xend, int n_lors, float* __restrict__ out_image) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_lors || values[i] == 0.0f) return;
    const PetLor L = pet_lor_setup(grid, xstart, xend, i, -PET_NO_WINDOW, PET_NO_WINDOW);
    const float value = values[i] * L.weight;
    pet_walk(L, [&](const PetSample& S) { pet_bilinear_scatter(out_image, L, S, value); });
}

// ----------------------------------------------------------------------- TOF, sinogram mode
// out_values[i][b + max_bin] for b = -max_bin..max_bin: every TOF bin of LOR i. The LOR is walked
// once (over the reach of all bins); each sample updates only the bins within its reach.
extern "C" __global__ void pet_joseph_tof_sino_forward(
    const float* __restrict__ image, PetGrid grid, const float* __restrict__ xstart,
    const float* __restrict__ xend, int n_lors, PetTof tof, float* __restrict__ out_values) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_lors) return;
    const int n_tof = 2 * tof.max_bin + 1;
    float* out = out_values + i * n_tof;
    for (int j = 0; j < n_tof; ++j) out[j] = 0.0f;
    const PetTofWindow W = pet_tof_window(tof, -tof.max_bin, tof.max_bin);
    const PetLor L = pet_lor_setup(grid, xstart, xend, i, W.s_lo, W.s_hi);
    if (L.k0 > L.k1) return;
    pet_walk(L, [&](const PetSample& S) {
        const float v = pet_bilinear(image, L, S);
        if (v != 0.0f) pet_tof_bins(W, S.s, [&](int j, float weight) { out[j] += weight * v; });
    });
    for (int j = 0; j < n_tof; ++j) out[j] *= L.weight;
}

// Adjoint of pet_joseph_tof_sino_forward.
extern "C" __global__ void pet_joseph_tof_sino_back(
    const float* __restrict__ values, PetGrid grid, const float* __restrict__ xstart,
    const float* __restrict__ xend, int n_lors, PetTof tof, float* __restrict__ out_image) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_lors) return;
    const float* val = values + i * (2 * tof.max_bin + 1);
    const PetTofWindow W = pet_tof_window(tof, -tof.max_bin, tof.max_bin);
    const PetLor L = pet_lor_setup(grid, xstart, xend, i, W.s_lo, W.s_hi);
    pet_walk(L, [&](const PetSample& S) {
        float v = 0.0f;
        pet_tof_bins(W, S.s, [&](int j, float weight) { v += weight * val[j]; });
        if (v != 0.0f) pet_bilinear_scatter(out_image, L, S, v * L.weight);
    });
}

// ----------------------------------------------------------------------- TOF, listmode mode
// out_values[i]: the projection of LOR i into its own TOF bin tof_bin[i]. Only the planes within
// reach of that bin are walked.
extern "C" __global__ void pet_joseph_tof_lm_forward(
    const float* __restrict__ image, PetGrid grid, const float* __restrict__ xstart,
    const float* __restrict__ xend, int n_lors, PetTof tof, const int* __restrict__ tof_bin,
    const float* __restrict__ tof_table, float tof_inv_step, int tof_table_size,
    float* __restrict__ out_values) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_lors) return;
    const int b = tof_bin[i];
    const PetTofWindow W = pet_tof_window(tof, b, b);
    const PetLor L = pet_lor_setup(grid, xstart, xend, i, W.s_lo, W.s_hi);
    float acc = 0.0f;
    pet_walk(L, [&](const PetSample& S) {
        const float v = pet_bilinear(image, L, S);
        if (v != 0.0f) {
            acc += pet_tof_table_weight(W, tof_table, tof_inv_step, tof_table_size, S.s, b) * v;
        }
    });
    out_values[i] = acc * L.weight;
}

// Adjoint of pet_joseph_tof_lm_forward.
extern "C" __global__ void pet_joseph_tof_lm_back(
    const float* __restrict__ values, PetGrid grid, const float* __restrict__ xstart,
    const float* __restrict__ xend, int n_lors, PetTof tof, const int* __restrict__ tof_bin,
    const float* __restrict__ tof_table, float tof_inv_step, int tof_table_size,
    float* __restrict__ out_image) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_lors || values[i] == 0.0f) return;
    const int b = tof_bin[i];
    const PetTofWindow W = pet_tof_window(tof, b, b);
    const PetLor L = pet_lor_setup(grid, xstart, xend, i, W.s_lo, W.s_hi);
    const float value = values[i] * L.weight;
    pet_walk(L, [&](const PetSample& S) {
        const float w = pet_tof_table_weight(W, tof_table, tof_inv_step, tof_table_size, S.s, b);
        if (w != 0.0f) pet_bilinear_scatter(out_image, L, S, w * value);
    });
}
