// Runs the kernels of kernels/spect.cu on the CPU with the launch grids recon/spect/_gpu.py uses.
#include "recon_cuda_compat.h"
#include "spect.cu"

static unsigned blocks(long long n, unsigned threads) { return (unsigned)((n + threads - 1) / threads); }

extern "C" void run_spect_attenuation(const float* mu, int nz, int ny, int nx, const int* view_ids, int n_views,
                                      const float* cos_t, const float* sin_t, const float* s0, const float* u_pos,
                                      int n_u, float x0, float y0, float inv_delta, float delta, int n_d,
                                      float* out_att) {
    recon_launch(dim3(blocks((long long)n_views * nz * n_u, 64)), dim3(64), false, [&] {
        spect_attenuation(mu, nz, ny, nx, view_ids, n_views, cos_t, sin_t, s0, u_pos, n_u, x0, y0, inv_delta,
                          delta, n_d, out_att);
    });
}

extern "C" void run_spect_rotate_forward(const float* image, int nz, int ny, int nx, const float* att,
                                         const int* att_rows, int has_att, const int* view_ids, int n_views,
                                         const float* cos_t, const float* sin_t, const float* s0,
                                         const float* u_pos, int n_u, float x0, float y0, float inv_delta,
                                         float delta, int n_d, float* out_q) {
    recon_launch(dim3(blocks((long long)n_views * n_d * nz * n_u, 256)), dim3(256), false, [&] {
        spect_rotate_forward(image, nz, ny, nx, att, att_rows, has_att, view_ids, n_views, cos_t, sin_t, s0,
                             u_pos, n_u, x0, y0, inv_delta, delta, n_d, out_q);
    });
}

extern "C" void run_spect_rotate_back(const float* q, int nz, int ny, int nx, const float* att,
                                      const int* att_rows, int has_att, const int* view_ids, int n_views,
                                      const float* cos_t, const float* sin_t, const float* s0, const float* u_pos,
                                      int n_u, float x0, float y0, float inv_delta, float delta, int n_d,
                                      float* out_image) {
    recon_launch(dim3(blocks((long long)nz * ny * nx, 128)), dim3(128), false, [&] {
        spect_rotate_back(q, nz, ny, nx, att, att_rows, has_att, view_ids, n_views, cos_t, sin_t, s0, u_pos,
                          n_u, x0, y0, inv_delta, delta, n_d, out_image);
    });
}

extern "C" void run_spect_blur_sum_forward(const float* q, const int* view_ids, int n_views, int n_d, int nz,
                                           int n_u, const float* blur_w, const int* blur_n, float* scratch,
                                           float* out_planes, int threads) {
    recon_launch(dim3(n_views), dim3(threads), true, [&] {
        spect_blur_sum_forward(q, view_ids, n_views, n_d, nz, n_u, blur_w, blur_n, scratch, out_planes);
    });
}

extern "C" void run_spect_blur_spread_back(const float* planes, const int* view_ids, int n_views, int n_d, int nz,
                                           int n_u, const float* blur_w, const int* blur_n, float* scratch,
                                           float* out_q, int threads) {
    recon_launch(dim3(n_views), dim3(threads), true, [&] {
        spect_blur_spread_back(planes, view_ids, n_views, n_d, nz, n_u, blur_w, blur_n, scratch, out_q);
    });
}
