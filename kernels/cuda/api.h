/* The C ABI of libmoed_cuda.so, moed's CUDA kernel library. The host side (kernels/cuda/loader.h)
 * dlopens the library and calls moed_cuda_api_v1(), so no host translation unit ever includes a
 * CUDA header and nothing links libcuda at build time: the library links the CUDA runtime
 * statically, and the runtime dlopens the driver (libcuda.so.1) on first use.
 *
 * Versioning: a struct of function pointers per ABI version. Fields are only ever appended to
 * MoedCudaApiV1 (struct_size tells a caller which exist); an incompatible change adds
 * moed_cuda_api_v2() beside it.
 *
 * Errors: every function returns 0 on success, otherwise a nonzero code (a cudaError_t value, or
 * MOED_CUDA_EINVAL for a rejected argument) and records a message that last_error() returns for
 * the calling thread. Kernels run asynchronously on `stream` (NULL: the legacy default stream);
 * launch errors are reported at once, execution errors at the next synchronize().
 *
 * Thread-safety: every function may be called from any thread; the current device is per thread
 * (as in the CUDA runtime). Plain C so that the header is also the documentation of the boundary. */
#ifndef MOED_KERNELS_CUDA_API_H_
#define MOED_KERNELS_CUDA_API_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOED_CUDA_API_VERSION 1
#define MOED_CUDA_EINVAL (-1)
#define MOED_CUDA_MAX_GEMV_TOKENS 8

typedef struct MoedCudaDeviceInfo {
  char name[256];
  int compute_major;
  int compute_minor;
  int multiprocessor_count;
  uint64_t total_memory_bytes;
  uint64_t l2_cache_bytes;
  int memory_bus_width_bits;
} MoedCudaDeviceInfo;

/* y[m][t][o] = sum_i W_m[o][i] * x[m][t][i] for t < n_tokens, o < n_out, m < n_matrices.
 * W_m is n_out rows of row_bytes bytes (GGUF block format of `ggml_type`, rows of n_in weights)
 * at w + m * w_matrix_stride_bytes; x_m and y_m are float32, token-major, at x + m * x_matrix_stride
 * and y + m * y_matrix_stride (in floats; 0 broadcasts one x to every matrix). All pointers are
 * device memory; w must be aligned to the type's field alignment (row starts of any GGUF tensor
 * are, given a 256-byte aligned base). */
typedef struct MoedCudaGemvArgs {
  uint32_t ggml_type; /* the moed::GgmlType value (IQ3_A770: its internal id 0x1000 + 42) */
  const void* w;
  uint64_t row_bytes;
  int64_t n_in;
  int64_t n_out;
  const float* x;
  float* y;
  int32_t n_tokens; /* 1..MOED_CUDA_MAX_GEMV_TOKENS */
  int32_t n_matrices; /* >= 1: a strided batch (e.g. one expert slice per matrix) in one launch */
  uint64_t w_matrix_stride_bytes;
  int64_t x_matrix_stride;
  int64_t y_matrix_stride;
} MoedCudaGemvArgs;

typedef struct MoedCudaApiV1 {
  uint32_t version;     /* MOED_CUDA_API_VERSION */
  uint32_t struct_size; /* sizeof(MoedCudaApiV1) of the library */
  const char* build_info; /* e.g. "CUDA 13.0, sm_90a + compute_80 PTX" */

  /* Devices. device_count fails (nonzero) when there is no driver; 0 devices is success. */
  int (*device_count)(int* count);
  int (*device_info)(int device, MoedCudaDeviceInfo* info);
  int (*set_device)(int device);

  /* Memory (device allocations; copies are synchronous with respect to the host). */
  int (*malloc_device)(void** ptr, size_t bytes);
  int (*free_device)(void* ptr);
  int (*copy_to_device)(void* dst, const void* src, size_t bytes);
  int (*copy_to_host)(void* dst, const void* src, size_t bytes);
  int (*memset_device)(void* ptr, int value, size_t bytes);

  /* Streams and events (for timing). */
  int (*synchronize)(void);
  int (*event_create)(void** event);
  int (*event_destroy)(void* event);
  int (*event_record)(void* event, void* stream);
  int (*event_elapsed_ms)(void* start, void* end, float* ms);

  /* Kernels. gemv_supports_type returns 1 if gemv accepts the type, else 0. */
  int (*gemv_supports_type)(uint32_t ggml_type);
  int (*gemv)(const MoedCudaGemvArgs* args, void* stream);
  /* y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w for n_rows rows of n floats (w NULL: no weight);
   * y may alias x. */
  int (*rms_norm)(const float* x, const float* w, int64_t n, int64_t n_rows, float eps, float* y,
                  void* stream);

  /* The message of the calling thread's last failure ("" if none). Valid until its next call. */
  const char* (*last_error)(void);
} MoedCudaApiV1;

/* The only exported symbol of libmoed_cuda.so. Never NULL; calling it does not touch the GPU. */
const MoedCudaApiV1* moed_cuda_api_v1(void);

#ifdef __cplusplus
}
#endif

#endif /* MOED_KERNELS_CUDA_API_H_ */
