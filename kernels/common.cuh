// common.cuh — helpers shared by ptqgate's CUDA kernels.
//
// Storage codes (how a tensor's elements sit in device memory) and dtype
// codes (what an operation rounds its outputs to) follow the Go side
// (ptqcore/backend/cuda): storage 0 = float32, 1 = bfloat16; dtype 0 =
// float32 (no rounding), 1 = bfloat16, 2 = float16 (round to nearest even).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#define ST_F32 0
#define ST_BF16 1
#define DT_F32 0
#define DT_BF16 1
#define DT_F16 2

typedef __nv_bfloat16 bf16;

// ldv reads element i of a tensor stored as st, widened to float32 (exact).
__device__ __forceinline__ float ldv(const void* p, int st, long long i) {
	if (st == ST_BF16) {
		return __uint_as_float(((uint32_t)((const uint16_t*)p)[i]) << 16);
	}
	return ((const float*)p)[i];
}

// f32_to_bf16_bits rounds to bfloat16, nearest even; NaN becomes 0x7FC0
// (numerics.F32ToBF16).
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float v) {
	uint32_t u = __float_as_uint(v);
	if ((u & 0x7fffffffu) > 0x7f800000u) {
		return 0x7fc0;
	}
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

// stv writes v to element i of a tensor stored as st. A bfloat16 store
// rounds to nearest even; the Go side only stores values that are already
// bfloat16 values there.
__device__ __forceinline__ void stv(void* p, int st, long long i, float v) {
	if (st == ST_BF16) {
		((uint16_t*)p)[i] = f32_to_bf16_bits(v);
	} else {
		((float*)p)[i] = v;
	}
}

// rnd rounds a float32 to the model dtype dt.
__device__ __forceinline__ float rnd(float v, int dt) {
	if (dt == DT_BF16) {
		return __uint_as_float(((uint32_t)f32_to_bf16_bits(v)) << 16);
	}
	if (dt == DT_F16) {
		return __half2float(__float2half_rn(v));
	}
	return v;
}

// mag returns the magnitude bits of a float32: for non-negative floats the
// bit patterns order like the values, +Inf is 0x7F800000 and every NaN is
// above it, so an unsigned max over magnitudes is max|x| with NaN winning.
__device__ __forceinline__ uint32_t mag(float v) { return __float_as_uint(v) & 0x7fffffffu; }

__device__ __forceinline__ uint32_t warp_max_u32(uint32_t v) {
	for (int o = 16; o > 0; o >>= 1) {
		v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
	}
	return v;
}

__device__ __forceinline__ float warp_max_f32(float v) {
	for (int o = 16; o > 0; o >>= 1) {
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	}
	return v;
}

__device__ __forceinline__ double warp_sum_f64(double v) {
	for (int o = 16; o > 0; o >>= 1) {
		v += __shfl_xor_sync(0xffffffffu, v, o);
	}
	return v;
}

// block_max_u32 reduces over a block of up to 1024 threads; every thread
// gets the result. sh needs 32 words.
__device__ __forceinline__ uint32_t block_max_u32(uint32_t v, uint32_t* sh) {
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
	v = warp_max_u32(v);
	__syncthreads();
	if (lane == 0) sh[w] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : 0u;
	return warp_max_u32(v);
}

// block_sum_f64 reduces over a block; every thread gets the result. sh
// needs 32 doubles.
__device__ __forceinline__ double block_sum_f64(double v, double* sh) {
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
	v = warp_sum_f64(v);
	__syncthreads();
	if (lane == 0) sh[w] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : 0.0;
	return warp_sum_f64(v);
}

__device__ __forceinline__ float block_max_f32(float v, float* sh) {
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
	v = warp_max_f32(v);
	__syncthreads();
	if (lane == 0) sh[w] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : -INFINITY;
	return warp_max_f32(v);
}

// Products and sums in float32 without fused multiply-add, as the backend
// contract's dot products are defined.
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }

// Eight bfloat16 values at a 16-byte aligned address, widened to float32
// (exact), and the reverse (rounding to nearest even: the callers store
// values that are already bfloat16 values or round on purpose).
__device__ __forceinline__ void load8_bf16(const void* p, float* v) {
	const uint4 u = *(const uint4*)p;
	const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
	for (int i = 0; i < 4; i++) {
		v[2 * i] = __uint_as_float(w[i] << 16);
		v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
	}
}

__device__ __forceinline__ void store8_bf16(void* p, const float* v) {
	uint32_t w[4];
#pragma unroll
	for (int i = 0; i < 4; i++)
		w[i] = (uint32_t)f32_to_bf16_bits(v[2 * i]) | ((uint32_t)f32_to_bf16_bits(v[2 * i + 1]) << 16);
	*(uint4*)p = make_uint4(w[0], w[1], w[2], w[3]);
}
