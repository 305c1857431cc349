// Runs the kernels of kernels/pet.cu on the CPU with the launch grid recon/pet/_gpu.py uses
// (one thread per LOR, 256 per block). No kernel calls __syncthreads(), so threads run one after
// another and atomicAdd never races.
#include "recon_cuda_compat.h"
#include "pet.cu"

static unsigned blocks(long long n, unsigned threads) { return (unsigned)((n + threads - 1) / threads); }

#define PET_GRID_ARGS                                                                              \
    int nz, int ny, int nx, float x0, float y0, float z0, float dx, float dy, float dz,            \
        const float *xstart, const float *xend, int n_lors
#define PET_GRID_PASS nz, ny, nx, x0, y0, z0, dx, dy, dz, xstart, xend, n_lors
#define PET_LAUNCH(call) recon_launch(dim3(blocks(n_lors, PET_BLOCK)), dim3(PET_BLOCK), false, [&] { call; })

extern "C" void run_pet_joseph_forward(const float* image, PET_GRID_ARGS, float* out_values) {
    PET_LAUNCH(pet_joseph_forward(image, PET_GRID_PASS, out_values));
}

extern "C" void run_pet_joseph_back(const float* values, PET_GRID_ARGS, float* out_image) {
    PET_LAUNCH(pet_joseph_back(values, PET_GRID_PASS, out_image));
}

extern "C" void run_pet_joseph_tof_sino_forward(const float* image, PET_GRID_ARGS, float tof_width,
                                                float tof_sigma, float n_sigmas, int max_bin,
                                                float* out_values) {
    PET_LAUNCH(pet_joseph_tof_sino_forward(image, PET_GRID_PASS, tof_width, tof_sigma, n_sigmas, max_bin,
                                           out_values));
}

extern "C" void run_pet_joseph_tof_sino_back(const float* values, PET_GRID_ARGS, float tof_width,
                                             float tof_sigma, float n_sigmas, int max_bin, float* out_image) {
    PET_LAUNCH(pet_joseph_tof_sino_back(values, PET_GRID_PASS, tof_width, tof_sigma, n_sigmas, max_bin,
                                        out_image));
}

extern "C" void run_pet_joseph_tof_lm_forward(const float* image, PET_GRID_ARGS, float tof_width,
                                              float tof_sigma, float n_sigmas, const int* tof_bin,
                                              float* out_values) {
    PET_LAUNCH(pet_joseph_tof_lm_forward(image, PET_GRID_PASS, tof_width, tof_sigma, n_sigmas, tof_bin,
                                         out_values));
}

extern "C" void run_pet_joseph_tof_lm_back(const float* values, PET_GRID_ARGS, float tof_width,
                                           float tof_sigma, float n_sigmas, const int* tof_bin,
                                           float* out_image) {
    PET_LAUNCH(pet_joseph_tof_lm_back(values, PET_GRID_PASS, tof_width, tof_sigma, n_sigmas, tof_bin,
                                      out_image));
}
