// Pairwise priors on the 26-neighbourhood of a 3-D image (the GPU twin of
// recon/algorithms/_prior_cpu.py; same arguments, same arithmetic, and the same order of
// addition as its "rows" layout, bit for bit; its default "pairs" layout adds the same terms in
// another order). One thread per voxel.
//
// R(x) = 1/2 sum_j sum_{k in N(j)} w_jk kappa_j kappa_k phi(x_j, x_k): every pair counted from
// both ends, hence the 1/2. w_jk is the weight of the offset from j to k (1 / distance in mm,
// from the grid's voxel sizes); neighbours outside the image are left out (no padding, no
// wrap-around). phi is
//   quadratic (kind 0):                 phi(a, b) = (a - b)^2
//   relative difference (kind 1):       phi(a, b) = (a - b)^2 / (a + b + gamma |a - b| + eps)
// (Nuyts et al., IEEE Trans. Nucl. Sci. 49:56-60, 2002). Since phi is symmetric, dR/dx_j =
// sum_k w_jk kappa_j kappa_k dphi/da(x_j, x_k), and the diagonal of the Hessian is the same sum of
// d2phi/da2 (the curvature of a separable surrogate at x). With u = a - b, s = sign(u),
// D = a + b + gamma |u| + eps and M = a + 3 b + gamma |u| + 2 eps:
//   dphi/da   = u M / D^2,
//   d2phi/da2 = 2 (D^2 - u M (1 + gamma s)) / D^3   (= 2 (2 b + eps)^2 / D^3 for gamma = 0).
//
// Layout: images (z, y, x) float32, C order; weights[27] indexed by (dz+1)*9 + (dy+1)*3 + (dx+1)
// (the centre entry unused); kappa an image of per-voxel weights, or ignored when has_kappa is 0.
// z_block: the image is nz / z_block independent images stacked along z (one per isotope of a
// multi-isotope model; z_block = nz for one image), and neighbours across their seams are left
// out as those outside the image are. Voxels with kappa 0 get 0.
// `what`: 0 writes each voxel's sum of w kappa kappa phi (the value is half their total), 1 the
// gradient, 2 the Hessian diagonal.
//
// Compiled at run time by CuPy (NVRTC); in CI the same file is compiled by g++ through
// tests/cuda_compat/recon_cuda_compat.h and compared with the numba kernel.

#ifndef PRIOR_BLOCK
#define PRIOR_BLOCK 256
#endif

// phi, dphi/da and d2phi/da2 of one pair (a at the voxel, b at its neighbour).
__device__ __forceinline__ void prior_pair(int kind, float a, float b, float gamma, float eps,
                                           float* phi, float* d1, float* d2) {
    const float u = a - b;
    if (kind == 0) {
        *phi = u * u;
        *d1 = 2.0f * u;
        *d2 = 2.0f;
        return;
    }
    const float au = fabsf(u);
    const float s = (u > 0.0f) ? 1.0f : ((u < 0.0f) ? -1.0f : 0.0f);
    const float D = a + b + gamma * au + eps;
    const float M = a + 3.0f * b + gamma * au + 2.0f * eps;
    const float inv = 1.0f / D;
    *phi = u * u * inv;
    *d1 = u * M * inv * inv;
    *d2 = 2.0f * (D * D - u * M * (1.0f + gamma * s)) * inv * inv * inv;
}

extern "C" __global__ void prior_terms(const float* __restrict__ x,
                                       const float* __restrict__ kappa, int has_kappa, int nz,
                                       int ny, int nx, const float* __restrict__ weights,
                                       int z_block, int kind, float gamma, float eps, int what,
                                       float* __restrict__ out) {
    const long long n = (long long)nz * ny * nx;
    const long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    const int ix = (int)(j % nx);
    const int iy = (int)((j / nx) % ny);
    const int iz = (int)(j / ((long long)nx * ny));
    const float a = x[j];
    const float kj = has_kappa ? kappa[j] : 1.0f;
    if (kj == 0.0f) {  // no prior term where kappa is 0 (outside the field of view)
        out[j] = 0.0f;
        return;
    }
    float acc = 0.0f;
    const int block = iz / z_block;
    for (int dz = -1; dz <= 1; ++dz) {
        const int z = iz + dz;
        if (z < 0 || z >= nz || z / z_block != block) continue;
        for (int dy = -1; dy <= 1; ++dy) {
            const int y = iy + dy;
            if (y < 0 || y >= ny) continue;
            for (int dx = -1; dx <= 1; ++dx) {
                const int xx = ix + dx;
                if (xx < 0 || xx >= nx || (dz == 0 && dy == 0 && dx == 0)) continue;
                const long long k = ((long long)z * ny + y) * nx + xx;
                const float w = weights[(dz + 1) * 9 + (dy + 1) * 3 + (dx + 1)] * kj *
                                (has_kappa ? kappa[k] : 1.0f);
                float phi, d1, d2;
                prior_pair(kind, a, x[k], gamma, eps, &phi, &d1, &d2);
                acc += w * (what == 0 ? phi : (what == 1 ? d1 : d2));
            }
        }
    }
    out[j] = acc;
}
