// Single-scatter simulation, the sum over scatter points for every detector pair (the GPU twin of
// recon/pet/_sss_cpu.py: the same kernel with the same arguments in the same order, the same
// helpers under the same names). One thread per detector pair.
//
// The model (C. C. Watson, D. Newport, M. E. Casey, "A single scatter simulation technique for
// scatter correction in 3D PET", in Three-Dimensional Image Reconstruction in Radiology and
// Nuclear Medicine, Kluwer 1996, 255-268; C. C. Watson, "New, faster, image-based scatter
// correction for 3D PET", IEEE Trans. Nucl. Sci. 47 (2000) 1587-1594): for detectors A and B and
// scatter points S of volume V_S,
//
//   s_AB = R_AB^2 / (cos_A cos_B) * sum_S V_S mu_S / sigma_KN * dsigma/dOmega(theta) * eps(E')/eps(511)
//          * cos_AS cos_BS / (R_AS^2 R_BS^2)
//          * [ exp(-a_SA - k a_SB) e_SA + exp(-k a_SA - a_SB) e_SB ]
//
// with a_SD = the 511 keV attenuation line integral from S to detector D, e_SD the emission line
// integral from S to D, k = mu(E')/mu(511) (water-like tissue), theta the scattering angle at S and
// E' = 511/(2 - cos theta). The first term is an annihilation on the S-A segment whose photon
// towards S scatters into B (so the path to B is at E'); the second its mirror. cos_XS is the
// cosine between the path S->X and the normal of detector X (its projected area), cos_A, cos_B
// those of the unscattered line A-B: s_AB is the scatter divided by the geometric efficiency of
// the unscattered LOR, i.e. in the units of a line integral of the emission image, as the true
// coincidences of the projector. The table lut holds, for cos theta = -1 .. 1 in n_lut equal steps,
// (dsigma/dOmega / sigma_KN * eps(E')/eps(511), mu(E')/mu(511)).
//
// TOF (C. C. Watson, "Extension of single scatter simulation to scatter correction of
// time-of-flight PET", IEEE Trans. Nucl. Sci. 54 (2007) 1679-1686): an annihilation at distance s
// from S on the S-A segment gives the photon paths R_AS - s and s + R_BS, so the measured position
// (signed from the LOR midpoint towards B) is x = (R_AS - R_BS)/2 - s. cum holds, for every
// scatter point and detector, the emission profile along S -> D blurred by the TOF resolution and
// accumulated: cum[z] = the emission whose blurred position relative to the S-D midpoint (towards
// D) is below z, at z = (k - (n_edges - 1)/2) step. So the S-A term puts
// cum_SA(-lo - R_BS/2) - cum_SA(-hi - R_BS/2) into the TOF bin [lo, hi], and the S-B term
// cum_SB(hi - R_AS/2) - cum_SB(lo - R_AS/2).
//
// Layout: det_pos, det_normal (n_det, 3) float32 world mm (normals: unit, pointing into the ring);
// point_pos (n_points, 3); point_weight (n_points,) = V_S mu_S (mm^3/mm); att, emis
// (n_points, n_det); cum (n_points, n_det, n_edges) (TOF only); lut (n_lut, 2). out is (n_pairs,)
// or (n_pairs, n_tof) with the TOF bins in increasing order, and is ADDED to (the caller zeroes it;
// scatter points come in chunks).
//
// Compiled at run time by CuPy (NVRTC); in CI the same file is compiled by g++ through
// tests/cuda_compat/recon_cuda_compat.h and compared with the numba kernel.

#define SSS_MAX_TOF 128

struct SssTof {
    int n_tof;    // TOF bins of the output; 0 for non-TOF
    float width;  // TOF bin width, mm
    int n_edges;  // entries of cum per (point, detector)
    float step;   // spacing of those entries, mm
};

// The two tabulated factors at cos theta = c, interpolated linearly.
__device__ __forceinline__ void sss_lut(const float* __restrict__ lut, int n_lut, float c,
                                        float* factor, float* mu_ratio) {
    float x = (c + 1.0f) * 0.5f * (float)(n_lut - 1);
    x = fminf(fmaxf(x, 0.0f), (float)(n_lut - 1));
    const int k = min((int)x, n_lut - 2);
    const float w = x - (float)k;
    *factor = lut[2 * k] + w * (lut[2 * k + 2] - lut[2 * k]);
    *mu_ratio = lut[2 * k + 1] + w * (lut[2 * k + 3] - lut[2 * k + 1]);
}

// The accumulated blurred emission of one (point, detector) row at z mm from the S-D midpoint:
// 0 below the first entry, the total beyond the last, linear in between.
__device__ __forceinline__ float sss_cumulative(const float* __restrict__ row, int n_edges,
                                                float step, float z) {
    const float f = z / step + 0.5f * (float)(n_edges - 1);
    if (!(f > 0.0f)) return row[0];
    if (f >= (float)(n_edges - 1)) return row[n_edges - 1];
    const int k = (int)f;
    const float w = f - (float)k;
    return row[k] + w * (row[k + 1] - row[k]);
}

extern "C" __global__ void sss_pairs(
    const int* __restrict__ det_a, const int* __restrict__ det_b, int n_pairs,
    const float* __restrict__ det_pos, const float* __restrict__ det_normal, int n_det,
    const float* __restrict__ point_pos, const float* __restrict__ point_weight, int n_points,
    const float* __restrict__ att, const float* __restrict__ emis, const float* __restrict__ cum,
    const float* __restrict__ lut, int n_lut, SssTof tof, float* __restrict__ out) {
    const long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_pairs) return;
    const int a = det_a[p], b = det_b[p];
    const float ax = det_pos[3 * a], ay = det_pos[3 * a + 1], az = det_pos[3 * a + 2];
    const float bx = det_pos[3 * b], by = det_pos[3 * b + 1], bz = det_pos[3 * b + 2];
    const float nax = det_normal[3 * a], nay = det_normal[3 * a + 1], naz = det_normal[3 * a + 2];
    const float nbx = det_normal[3 * b], nby = det_normal[3 * b + 1], nbz = det_normal[3 * b + 2];
    const float dx = bx - ax, dy = by - ay, dz = bz - az;
    const float length = sqrtf(dx * dx + dy * dy + dz * dz);
    if (!(length > 0.0f)) return;
    const float cos_a = (nax * dx + nay * dy + naz * dz) / length;
    const float cos_b = -(nbx * dx + nby * dy + nbz * dz) / length;
    if (!(cos_a > 0.0f && cos_b > 0.0f)) return;
    const float norm = length * length / (cos_a * cos_b);
    const int n_tof = tof.n_tof;
    const float half_bins = 0.5f * (float)n_tof;  // edge j of the TOF bins is (j - n_tof/2) width
    float acc[SSS_MAX_TOF];
    for (int j = 0; j < n_tof; ++j) acc[j] = 0.0f;
    float total = 0.0f;
    for (int s = 0; s < n_points; ++s) {
        const float sx = point_pos[3 * s], sy = point_pos[3 * s + 1], sz = point_pos[3 * s + 2];
        const float vax = ax - sx, vay = ay - sy, vaz = az - sz;
        const float vbx = bx - sx, vby = by - sy, vbz = bz - sz;
        const float ra2 = vax * vax + vay * vay + vaz * vaz;
        const float rb2 = vbx * vbx + vby * vby + vbz * vbz;
        const float ra = sqrtf(ra2), rb = sqrtf(rb2);
        if (!(ra > 0.0f && rb > 0.0f)) continue;
        const float inc_a = -(nax * vax + nay * vay + naz * vaz) / ra;
        const float inc_b = -(nbx * vbx + nby * vby + nbz * vbz) / rb;
        if (!(inc_a > 0.0f && inc_b > 0.0f)) continue;
        const float cos_theta = -(vax * vbx + vay * vby + vaz * vbz) / (ra * rb);
        float factor, mu_ratio;
        sss_lut(lut, n_lut, cos_theta, &factor, &mu_ratio);
        const float g = point_weight[s] * inc_a * inc_b / (ra2 * rb2) * factor;
        if (!(g > 0.0f)) continue;
        const long long ia = (long long)s * n_det + a, ib = (long long)s * n_det + b;
        const float att_a = att[ia], att_b = att[ib];
        const float keep_a = expf(-att_a - mu_ratio * att_b);  // annihilation on S-A
        const float keep_b = expf(-mu_ratio * att_a - att_b);  // annihilation on S-B
        if (n_tof == 0) {
            total += g * (keep_a * emis[ia] + keep_b * emis[ib]);
            continue;
        }
        const float* row_a = cum + ia * tof.n_edges;
        const float* row_b = cum + ib * tof.n_edges;
        float edge = -half_bins * tof.width;
        float prev_a = sss_cumulative(row_a, tof.n_edges, tof.step, -edge - 0.5f * rb);
        float prev_b = sss_cumulative(row_b, tof.n_edges, tof.step, edge - 0.5f * ra);
        for (int j = 0; j < n_tof; ++j) {
            edge = ((float)(j + 1) - half_bins) * tof.width;
            const float next_a = sss_cumulative(row_a, tof.n_edges, tof.step, -edge - 0.5f * rb);
            const float next_b = sss_cumulative(row_b, tof.n_edges, tof.step, edge - 0.5f * ra);
            acc[j] += g * (keep_a * (prev_a - next_a) + keep_b * (next_b - prev_b));
            prev_a = next_a;
            prev_b = next_b;
        }
    }
    if (n_tof == 0) {
        out[p] += norm * total;
    } else {
        for (int j = 0; j < n_tof; ++j) out[p * n_tof + j] += norm * acc[j];
    }
}
