// quant.cu — export-side quantize/pack kernels, bit-identical to
// ptqcore/export (QuantizeFP8, NVFP4BlockScales, QuantizeNVFP4) and
// ptqcore/numerics (F32ToE4M3, F32ToE4M3Sat, F32ToE2M1). E4M3 codes come
// from the hardware cvt.rn.satfinite.e4m3x2.f32 (compute_90 with nvcc
// 11.8's PTX ISA 7.8), applied only
// after the value has been clamped to ±448, so saturation never decides a
// code; NaN is encoded as numerics does (0x7F, 0xFF with the sign bit).
#include "common.cuh"

// e4m3 casts a value already within ±448 (or NaN) to float8_e4m3fn.
__device__ __forceinline__ uint8_t e4m3(float v) {
	if (v != v) return (__float_as_uint(v) >> 24 & 0x80) | 0x7f;
	uint16_t r;
	const float zero = 0.f;
	asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(r) : "f"(zero), "f"(v));
	return (uint8_t)(r & 0xff);
}

// e4m3_to_f32 decodes a float8_e4m3fn byte (0x7F/0xFF are NaN).
__device__ __forceinline__ float e4m3_to_f32(uint8_t b) {
	const uint32_t s = (uint32_t)(b & 0x80) << 24;
	const int e = (b >> 3) & 0xf, m = b & 7;
	if (e == 0xf && m == 7) return __uint_as_float(s | 0x7fc00000u);
	if (e == 0) return __uint_as_float(s | __float_as_uint((float)m * 0.001953125f));  // m·2^-9
	return __uint_as_float(s | ((uint32_t)(e + 120) << 23) | ((uint32_t)m << 20));
}

// fp8_quantize: q = round_dt(w/scale) (scale already rounded to dt on the
// host); mode 0 (export): |q| > 464 or NaN records the smallest such index
// in *bad and writes 0; mode 1 (saturating quantizer): clamp to ±448, NaN
// stays NaN.
extern "C" __global__ void fp8_quantize(const void* __restrict__ w, int wst, long long n, float scale, int dt, int mode,
					uint8_t* __restrict__ out, unsigned long long* __restrict__ bad) {
	for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
		const float q = rnd(__fdiv_rn(ldv(w, wst, i), scale), dt);
		uint8_t code;
		if (mode == 0 && !(q <= 464.f && q >= -464.f)) {
			atomicMin(bad, (unsigned long long)i);
			code = 0;
		} else {
			code = e4m3(q != q ? q : fminf(fmaxf(q, -448.f), 448.f));
		}
		out[i] = code;
	}
}

// gomax/gomin follow Go's built-in max/min: NaN wins.
__device__ __forceinline__ float gomax(float a, float b) { return (a != a || b != b) ? __int_as_float(0x7fc00000) : fmaxf(a, b); }
__device__ __forceinline__ float gomin(float a, float b) { return (a != a || b != b) ? __int_as_float(0x7fc00000) : fminf(a, b); }

// e2m1 is ModelOpt's _cast_fp4 (numerics.F32ToE2M1).
__device__ __forceinline__ uint8_t e2m1(float f) {
	float a = f;
	uint8_t sign = 0;
	if (f < 0.f) {
		a = -f;
		sign = 8;
	}
	uint8_t code = (0.25f < a) + (0.75f < a) + (1.25f < a) + (1.75f < a) + (2.5f < a) + (3.5f < a) + (5.f < a);
	if (a == 0.75f || a == 1.75f || a == 3.5f) code++;
	return sign + code;
}

// nvfp4_quantize: one thread per (row, 16-element block) of a [rows,
// cols] weight zero-padded to kp = cols rounded up to 16: the E4M3 block
// scale s = clamp(block_amax / (6·scale2), 2^-9, 448) (1 where 0), then
// the E2M1 codes of w / (e4m3(s)·scale2) packed two per byte (even
// element in the low nibble). packed [rows, kp/2], scales [rows, kp/16].
extern "C" __global__ void nvfp4_quantize(const void* __restrict__ w, int wst, int rows, int cols, float scale2,
					  uint8_t* __restrict__ packed, uint8_t* __restrict__ scales) {
	const int kp = (cols + 15) / 16 * 16, nb = kp / 16;
	const long long total = (long long)rows * nb;
	const float denom = __fmul_rn(6.f, scale2);
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
		const int r = (int)(t / nb), b = (int)(t % nb);
		const long long rb = (long long)r * cols;
		float v[16];
		float bmax = 0.f;
#pragma unroll
		for (int j = 0; j < 16; j++) {
			const int c = b * 16 + j;
			v[j] = c < cols ? ldv(w, wst, rb + c) : 0.f;
			bmax = gomax(bmax, fabsf(v[j]));
		}
		float s = __fdiv_rn(bmax, denom);
		if (s == 0.f) s = 1.f;
		const uint8_t sc = e4m3(gomin(gomax(s, 0.001953125f), 448.f));
		scales[t] = sc;
		const float d = __fmul_rn(e4m3_to_f32(sc), scale2);
		uint8_t* o = packed + (long long)r * (kp / 2) + b * 8;
#pragma unroll
		for (int j = 0; j < 16; j += 2) o[j / 2] = e2m1(__fdiv_rn(v[j], d)) | (e2m1(__fdiv_rn(v[j + 1], d)) << 4);
	}
}
