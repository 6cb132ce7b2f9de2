// gemm.cu — ptqgate's GEMM kernels: dst = round(x · wᵀ (+ bias)) with x
// [M, K] and w [N, K] both row-major (K contiguous), for Linear and for the
// segmented expert GEMM (GroupedLinear), which also returns each expert's
// max|x| from the same pass over x.
//
// Two kernels:
//   gemm_bf16_tc  bfloat16 tensor cores (mma.sync m16n8k16, float32
//                 accumulation), 128×128 output tiles, K in steps of 64
//                 through a 3-stage cp.async pipeline, swizzled shared
//                 memory; x and w stored as bfloat16, K a multiple of 8.
//                 Output rounded to bfloat16. Each output sums its K in
//                 the same order whatever tile it falls in.
//   gemm_f32      CUDA cores, float32 products and sums without fused
//                 multiply-add in ascending k (the backend contract's dot
//                 product, bit-identical to the CPU backend), any storage,
//                 rounded to the model dtype. Used for float32 and float16
//                 models (no TF32) and as the fallback.
//
// Grouping: with tiles != NULL, blockIdx.y indexes tiles[3·y …] = {first
// row, end row, expert} (built on the host: each expert's rows split into
// BM-row tiles); expert e uses w + e·N·K and its amax slot amax[e]. With
// tiles == NULL blockIdx.y is the BM-row tile of a plain GEMM (expert 0).
// The amax is taken by the blocks of the first column of output tiles,
// from the x tiles they load anyway, as magnitude bits (NaN wins) with
// atomicMax.
#include "common.cuh"

#define TC_BM 128
#define TC_BN 128
#define TC_BK 64
#define TC_STAGES 3
#define TC_THREADS 256

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
	int n = valid ? 16 : 0;
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
		     : "r"(addr));
}

__device__ __forceinline__ void mma_bf16(float* d, const uint32_t* a, uint32_t b0, uint32_t b1) {
	asm volatile(
	    "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
	    "{%0,%1,%2,%3};\n"
	    : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
	    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// tile_rows resolves blockIdx.y to a row range and expert.
__device__ __forceinline__ void tile_rows(const int* tiles, int bm, int M, int& row0, int& rowEnd, int& expert) {
	if (tiles) {
		row0 = tiles[3 * blockIdx.y];
		rowEnd = tiles[3 * blockIdx.y + 1];
		expert = tiles[3 * blockIdx.y + 2];
	} else {
		row0 = blockIdx.y * bm;
		rowEnd = M;
		expert = 0;
	}
}

// store2 writes the rounded values of columns col and col+1 of one row.
__device__ __forceinline__ void store2(void* C, int cst, long long idx, int col, int N, float v0, float v1) {
	if (col + 1 < N && (N & 1) == 0) {
		if (cst == ST_BF16) {
			uint32_t packed = (uint32_t)f32_to_bf16_bits(v0) | ((uint32_t)f32_to_bf16_bits(v1) << 16);
			*(uint32_t*)((uint16_t*)C + idx) = packed;
		} else {
			*(float2*)((float*)C + idx) = make_float2(v0, v1);
		}
		return;
	}
	if (col < N) stv(C, cst, idx, v0);
	if (col + 1 < N) stv(C, cst, idx + 1, v1);
}

// gemm_tc is the tensor-core GEMM with BN-column output tiles: 8 warps
// in a 2×4 grid, each computing 64×(BN/4) outputs.
template <int BN>
__device__ __forceinline__ void gemm_tc(const uint16_t* __restrict__ A, const uint16_t* __restrict__ B,
					void* __restrict__ C, int cst, const void* __restrict__ bias, int biasSt, int M, int N,
					int K, const int* __restrict__ tiles, uint32_t* __restrict__ amax) {
	constexpr int WN = BN / 4;   // columns per warp
	constexpr int NT = WN / 8;   // n8 tiles per warp
	constexpr int BL = BN / 32;  // w-tile chunks each thread copies per stage
	extern __shared__ __align__(128) uint16_t smem[];
	uint16_t* sA = smem;
	uint16_t* sB = smem + TC_STAGES * TC_BM * TC_BK;

	int row0, rowEnd, expert;
	tile_rows(tiles, TC_BM, M, row0, rowEnd, expert);
	const int n0 = blockIdx.x * BN;
	const uint16_t* Bx = B + (long long)expert * N * K;

	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	const int warpM = warp >> 2, warpN = warp & 3;
	const int KT = (K + TC_BK - 1) / TC_BK;

	// Each thread copies 4 16-byte chunks of the x tile and BL of the w tile.
	const int ldChunk = tid & 7, ldRow = tid >> 3;
	auto loadStage = [&](int stage, int kt) {
		const int kc = kt * TC_BK + ldChunk * 8;
		const bool kOK = kc < K;
		uint16_t* a = sA + stage * TC_BM * TC_BK;
		uint16_t* b = sB + stage * BN * TC_BK;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			const int r = ldRow + 32 * i;
			const int sw = ((ldChunk ^ (r & 7)) * 8);
			const int gr = row0 + r;
			const bool va = kOK && gr < rowEnd;
			const uint16_t* srcA = A + (va ? (long long)gr * K + kc : 0);
			cp_async16((uint32_t)__cvta_generic_to_shared(a + r * TC_BK + sw), srcA, va);
		}
#pragma unroll
		for (int i = 0; i < BL; i++) {
			const int r = ldRow + 32 * i;
			const int sw = ((ldChunk ^ (r & 7)) * 8);
			const int gn = n0 + r;
			const bool vb = kOK && gn < N;
			const uint16_t* srcB = Bx + (vb ? (long long)gn * K + kc : 0);
			cp_async16((uint32_t)__cvta_generic_to_shared(b + r * TC_BK + sw), srcB, vb);
		}
	};

	float acc[4][NT][4];
#pragma unroll
	for (int i = 0; i < 4; i++)
#pragma unroll
		for (int j = 0; j < NT; j++)
#pragma unroll
			for (int k = 0; k < 4; k++) acc[i][j][k] = 0.f;

	const bool doAmax = amax != 0 && blockIdx.x == 0 && warpN == 0;
	uint32_t amax2 = 0;

#pragma unroll
	for (int s = 0; s < TC_STAGES - 1; s++) {
		if (s < KT) loadStage(s, s);
		cp_async_commit();
	}
	for (int kt = 0; kt < KT; kt++) {
		cp_async_wait<TC_STAGES - 2>();
		__syncthreads();
		{
			const int next = kt + TC_STAGES - 1;
			if (next < KT) loadStage(next % TC_STAGES, next);
			cp_async_commit();
		}
		const int stage = kt % TC_STAGES;
		const uint16_t* a = sA + stage * TC_BM * TC_BK;
		const uint16_t* b = sB + stage * BN * TC_BK;
#pragma unroll
		for (int kk = 0; kk < TC_BK / 16; kk++) {
			uint32_t af[4][4];
#pragma unroll
			for (int mt = 0; mt < 4; mt++) {
				const int r = warpM * 64 + mt * 16 + (lane & 15);
				const int c = kk * 2 + (lane >> 4);
				ldmatrix_x4((uint32_t)__cvta_generic_to_shared(a + r * TC_BK + ((c ^ (r & 7)) * 8)), af[mt][0],
					    af[mt][1], af[mt][2], af[mt][3]);
			}
			if (doAmax) {
#pragma unroll
				for (int mt = 0; mt < 4; mt++)
#pragma unroll
					for (int q = 0; q < 4; q++) amax2 = __vmaxu2(amax2, af[mt][q] & 0x7fff7fffu);
			}
			uint32_t bfr[NT][2];
#pragma unroll
			for (int np = 0; np < NT / 2; np++) {
				const int n = warpN * WN + np * 16 + (lane & 7) + ((lane >> 4) << 3);
				const int c = kk * 2 + ((lane >> 3) & 1);
				uint32_t r0, r1, r2, r3;
				ldmatrix_x4((uint32_t)__cvta_generic_to_shared(b + n * TC_BK + ((c ^ (n & 7)) * 8)), r0, r1, r2, r3);
				bfr[np * 2][0] = r0;
				bfr[np * 2][1] = r1;
				bfr[np * 2 + 1][0] = r2;
				bfr[np * 2 + 1][1] = r3;
			}
#pragma unroll
			for (int mt = 0; mt < 4; mt++)
#pragma unroll
				for (int nt = 0; nt < NT; nt++) mma_bf16(acc[mt][nt], af[mt], bfr[nt][0], bfr[nt][1]);
		}
	}
	cp_async_wait<0>();

	if (doAmax) {
		uint32_t m = max(amax2 & 0xffffu, amax2 >> 16) << 16;
		m = warp_max_u32(m);
		if (lane == 0 && m != 0) atomicMax(&amax[expert], m);
	}

	const int nBase = n0 + warpN * WN + (lane & 3) * 2;
	const int rBase = row0 + warpM * 64 + (lane >> 2);
#pragma unroll
	for (int nt = 0; nt < NT; nt++) {
		const int col = nBase + nt * 8;
		if (col >= N) continue;
		float b0 = 0.f, b1 = 0.f;
		if (bias) {
			b0 = ldv(bias, biasSt, col);
			if (col + 1 < N) b1 = ldv(bias, biasSt, col + 1);
		}
#pragma unroll
		for (int mt = 0; mt < 4; mt++) {
#pragma unroll
			for (int h = 0; h < 2; h++) {
				const int row = rBase + mt * 16 + h * 8;
				if (row >= rowEnd) continue;
				float v0 = acc[mt][nt][2 * h], v1 = acc[mt][nt][2 * h + 1];
				if (bias) {
					v0 = add_rn(v0, b0);
					v1 = add_rn(v1, b1);
				}
				store2(C, cst, (long long)row * N + col, col, N, rnd(v0, DT_BF16), rnd(v1, DT_BF16));
			}
		}
	}
}

extern "C" __global__ void __launch_bounds__(TC_THREADS, 1)
    gemm_bf16_tc(const uint16_t* __restrict__ A, const uint16_t* __restrict__ B, void* __restrict__ C, int cst,
		 const void* __restrict__ bias, int biasSt, int M, int N, int K, const int* __restrict__ tiles,
		 uint32_t* __restrict__ amax) {
	gemm_tc<128>(A, B, C, cst, bias, biasSt, M, N, K, tiles, amax);
}

#define F_BM 64
#define F_BN 64
#define F_BK 16

extern "C" __global__ void __launch_bounds__(256)
    gemm_f32(const void* __restrict__ A, int ast, const void* __restrict__ B, int bst, void* __restrict__ C, int cst,
	     const void* __restrict__ bias, int biasSt, int M, int N, int K, const int* __restrict__ tiles,
	     uint32_t* __restrict__ amax, int dt) {
	__shared__ float sA[F_BK][F_BM + 1];
	__shared__ float sB[F_BK][F_BN + 1];
	__shared__ uint32_t red[32];

	int row0, rowEnd, expert;
	tile_rows(tiles, F_BM, M, row0, rowEnd, expert);
	const int n0 = blockIdx.x * F_BN;
	const long long bOff = (long long)expert * N * K;
	const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
	const bool doAmax = amax != 0 && blockIdx.x == 0;
	uint32_t am = 0;

	float acc[4][4];
#pragma unroll
	for (int i = 0; i < 4; i++)
#pragma unroll
		for (int j = 0; j < 4; j++) acc[i][j] = 0.f;

	for (int k0 = 0; k0 < K; k0 += F_BK) {
#pragma unroll
		for (int i = 0; i < 4; i++) {
			const int idx = tid + 256 * i;
			const int r = idx >> 4, k = idx & 15;
			const int gr = row0 + r, gk = k0 + k;
			float va = 0.f;
			if (gr < rowEnd && gk < K) va = ldv(A, ast, (long long)gr * K + gk);
			sA[k][r] = va;
			am = max(am, mag(va));
			const int gn = n0 + r;
			float vb = 0.f;
			if (gn < N && gk < K) vb = ldv(B, bst, bOff + (long long)gn * K + gk);
			sB[k][r] = vb;
		}
		__syncthreads();
#pragma unroll
		for (int k = 0; k < F_BK; k++) {
			float a[4], b[4];
#pragma unroll
			for (int i = 0; i < 4; i++) a[i] = sA[k][ty + 16 * i];
#pragma unroll
			for (int j = 0; j < 4; j++) b[j] = sB[k][tx + 16 * j];
#pragma unroll
			for (int i = 0; i < 4; i++)
#pragma unroll
				for (int j = 0; j < 4; j++) acc[i][j] = add_rn(acc[i][j], mul_rn(a[i], b[j]));
		}
		__syncthreads();
	}
	if (doAmax) {
		am = block_max_u32(am, red);
		if (tid == 0 && am != 0) atomicMax(&amax[expert], am);
	}
#pragma unroll
	for (int j = 0; j < 4; j++) {
		const int col = n0 + tx + 16 * j;
		if (col >= N) continue;
		const float bv = bias ? ldv(bias, biasSt, col) : 0.f;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			const int row = row0 + ty + 16 * i;
			if (row >= rowEnd) continue;
			float v = acc[i][j];
			if (bias) v = add_rn(v, bv);
			stv(C, cst, (long long)row * N + col, rnd(v, dt));
		}
	}
}
