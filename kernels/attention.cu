// attention.cu — causal grouped-query attention over sequences packed
// along the rows (backend.Backend.Attention), in eager order:
// scores = round(round(q·k)·scale), causal mask, p = round(softmax_f32),
// out = round(Σ_j p_j·v_j); query head h reads key/value head h/(H/KVH).
//
//   attn_bf16_d64 / attn_bf16_d128  flash-style tiled kernel on bfloat16
//       tensor cores for bfloat16 models: one block of 4 warps per
//       (64-query tile, head); key/value tiles of 64 rows stream through
//       shared memory. Three sweeps over the keys: the row maximum, the
//       softmax denominator with that maximum, then p (rounded to
//       bfloat16, exactly the eager rounding point) times V on the tensor
//       cores. Nothing of size seq×seq is materialised.
//   attn_ref  one block per (query row, head) on CUDA cores for any head
//       size, storage and dtype (float32 and float16 models): dot
//       products and the p·v sums in float32 without FMA in ascending
//       order, exp and the softmax denominator in float64, as the CPU
//       backend computes them.
//
// qtiles (flash) holds per blockIdx.x {first row of the sequence, its
// length, first query of the tile}; rowStart (ref) holds per row the
// first row of its sequence.
#include "common.cuh"

#define AT_BQ 64
#define AT_BK 64

__device__ __forceinline__ void at_cp_async16(uint32_t dst, const void* src, bool valid) {
	int n = valid ? 16 : 0;
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void at_commit_wait() {
	asm volatile("cp.async.commit_group;\n" ::);
	asm volatile("cp.async.wait_group 0;\n" ::);
}
__device__ __forceinline__ void at_ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
		     : "r"(addr));
}
__device__ __forceinline__ void at_ldmatrix_x4_trans(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
						     uint32_t& r3) {
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
		     : "r"(addr));
}
__device__ __forceinline__ void at_mma(float* d, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
				       uint32_t b1) {
	asm volatile(
	    "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
	    "{%0,%1,%2,%3};\n"
	    : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
	    : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// swz returns the element offset of 16-byte chunk c of row r in a tile
// whose rows hold D bfloat16 values, XOR-swizzled so that ldmatrix reads
// eight rows without bank conflicts.
template <int D>
__device__ __forceinline__ int swz(int r, int c) {
	return r * D + ((c ^ (r & 7)) * 8);
}

// loadTile copies rows [first, first+64) (those below limit) of a
// row-major source with the given row stride into a swizzled tile.
template <int D>
__device__ __forceinline__ void loadTile(uint16_t* tile, const uint16_t* src, long long stride, int first, int limit) {
	constexpr int CH = D / 8;
	for (int i = threadIdx.x; i < AT_BK * CH; i += blockDim.x) {
		const int r = i / CH, c = i % CH;
		const bool ok = first + r < limit;
		const uint16_t* s = src + (ok ? (long long)(first + r) * stride + c * 8 : 0);
		at_cp_async16((uint32_t)__cvta_generic_to_shared(tile + swz<D>(r, c)), s, ok);
	}
}

// scoreTile computes this warp's 16×64 block of rounded, scaled scores
// against the key tile in sK (masked entries are -inf).
template <int D>
__device__ __forceinline__ void scoreTile(const uint16_t* sQ, const uint16_t* sK, float s[8][4], int warp, int lane,
					  int qBase, int kBase, int seqLen, float scale) {
#pragma unroll
	for (int nt = 0; nt < 8; nt++)
#pragma unroll
		for (int e = 0; e < 4; e++) s[nt][e] = 0.f;
#pragma unroll
	for (int kd = 0; kd < D / 16; kd++) {
		uint32_t a0, a1, a2, a3;
		{
			const int r = warp * 16 + (lane & 15);
			const int c = kd * 2 + (lane >> 4);
			at_ldmatrix_x4((uint32_t)__cvta_generic_to_shared(sQ + swz<D>(r, c)), a0, a1, a2, a3);
		}
#pragma unroll
		for (int np = 0; np < 4; np++) {
			const int n = np * 16 + (lane & 7) + ((lane >> 4) << 3);
			const int c = kd * 2 + ((lane >> 3) & 1);
			uint32_t b0, b1, b2, b3;
			at_ldmatrix_x4((uint32_t)__cvta_generic_to_shared(sK + swz<D>(n, c)), b0, b1, b2, b3);
			at_mma(s[2 * np], a0, a1, a2, a3, b0, b1);
			at_mma(s[2 * np + 1], a0, a1, a2, a3, b2, b3);
		}
	}
	const int q0 = qBase + warp * 16 + (lane >> 2);
#pragma unroll
	for (int nt = 0; nt < 8; nt++) {
#pragma unroll
		for (int e = 0; e < 4; e++) {
			const int q = q0 + (e >> 1) * 8;
			const int k = kBase + nt * 8 + (lane & 3) * 2 + (e & 1);
			const bool ok = k <= q && k < seqLen && q < seqLen;
			s[nt][e] = ok ? rnd(__fmul_rn(rnd(s[nt][e], DT_BF16), scale), DT_BF16) : -INFINITY;
		}
	}
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
	return (uint32_t)f32_to_bf16_bits(lo) | ((uint32_t)f32_to_bf16_bits(hi) << 16);
}

template <int D>
__device__ __forceinline__ void attn_bf16(const uint16_t* __restrict__ Q, const uint16_t* __restrict__ K,
					  const uint16_t* __restrict__ V, void* __restrict__ O, int ost,
					  const int* __restrict__ qtiles, int H, int KVH, float scale) {
	extern __shared__ __align__(128) uint16_t smem[];
	uint16_t* sQ = smem;
	uint16_t* sK = smem + AT_BQ * D;
	uint16_t* sV = sK + AT_BK * D;

	const int seqStart = qtiles[3 * blockIdx.x], seqLen = qtiles[3 * blockIdx.x + 1], qBase = qtiles[3 * blockIdx.x + 2];
	const int h = blockIdx.y, kvh = h / (H / KVH);
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const long long qStride = (long long)H * D, kvStride = (long long)KVH * D;
	const uint16_t* q = Q + (long long)seqStart * qStride + h * D;
	const uint16_t* k = K + (long long)seqStart * kvStride + kvh * D;
	const uint16_t* v = V + (long long)seqStart * kvStride + kvh * D;

	loadTile<D>(sQ, q, qStride, qBase, seqLen);
	const int kEnd = min(qBase + AT_BQ, seqLen);  // keys [0, kEnd) matter
	const int nTiles = (kEnd + AT_BK - 1) / AT_BK;

	float s[8][4];
	// Sweep 1: row maxima and softmax denominators, online: each thread
	// keeps (max, sum of exp(s - max)) over its columns, rescaling the sum
	// when the maximum grows; the four threads of a row combine at the end.
	float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
	for (int t = 0; t < nTiles; t++) {
		__syncthreads();
		loadTile<D>(sK, k, kvStride, t * AT_BK, seqLen);
		at_commit_wait();
		__syncthreads();
		scoreTile<D>(sQ, sK, s, warp, lane, qBase, t * AT_BK, seqLen, scale);
#pragma unroll
		for (int i = 0; i < 2; i++) {
			float mt = m[i];
#pragma unroll
			for (int nt = 0; nt < 8; nt++) mt = fmaxf(mt, fmaxf(s[nt][2 * i], s[nt][2 * i + 1]));
			if (mt == -INFINITY) continue;
			float acc = m[i] == -INFINITY ? 0.f : __fmul_rn(l[i], expf(m[i] - mt));
#pragma unroll
			for (int nt = 0; nt < 8; nt++)
#pragma unroll
				for (int e = 0; e < 2; e++)
					if (s[nt][2 * i + e] != -INFINITY) acc = add_rn(acc, expf(s[nt][2 * i + e] - mt));
			m[i] = mt;
			l[i] = acc;
		}
	}
#pragma unroll
	for (int i = 0; i < 2; i++) {
#pragma unroll
		for (int o = 1; o <= 2; o <<= 1) {
			const float mo = __shfl_xor_sync(0xffffffffu, m[i], o);
			const float lo = __shfl_xor_sync(0xffffffffu, l[i], o);
			const float mn = fmaxf(m[i], mo);
			if (mn != -INFINITY) {
				const float a = m[i] == -INFINITY ? 0.f : __fmul_rn(l[i], expf(m[i] - mn));
				const float b = mo == -INFINITY ? 0.f : __fmul_rn(lo, expf(mo - mn));
				l[i] = add_rn(a, b);
			}
			m[i] = mn;
		}
	}
	// Sweep 2: p = round(exp(s-m)/l), out += p·v.
	float o[D / 8][4];
#pragma unroll
	for (int i = 0; i < D / 8; i++)
#pragma unroll
		for (int e = 0; e < 4; e++) o[i][e] = 0.f;
	for (int t = 0; t < nTiles; t++) {
		__syncthreads();
		loadTile<D>(sK, k, kvStride, t * AT_BK, seqLen);
		loadTile<D>(sV, v, kvStride, t * AT_BK, seqLen);
		at_commit_wait();
		__syncthreads();
		scoreTile<D>(sQ, sK, s, warp, lane, qBase, t * AT_BK, seqLen, scale);
		uint32_t pa[8][2];
#pragma unroll
		for (int nt = 0; nt < 8; nt++) {
			float p[4];
#pragma unroll
			for (int e = 0; e < 4; e++)
				p[e] = s[nt][e] == -INFINITY ? 0.f : rnd(__fdiv_rn(expf(s[nt][e] - m[e >> 1]), l[e >> 1]), DT_BF16);
			pa[nt][0] = pack_bf16(p[0], p[1]);
			pa[nt][1] = pack_bf16(p[2], p[3]);
		}
#pragma unroll
		for (int kc = 0; kc < 4; kc++) {
#pragma unroll
			for (int dp = 0; dp < D / 16; dp++) {
				const int key = kc * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
				const int c = dp * 2 + (lane >> 4);
				uint32_t b0, b1, b2, b3;
				at_ldmatrix_x4_trans((uint32_t)__cvta_generic_to_shared(sV + swz<D>(key, c)), b0, b1, b2, b3);
				at_mma(o[2 * dp], pa[2 * kc][0], pa[2 * kc][1], pa[2 * kc + 1][0], pa[2 * kc + 1][1], b0, b1);
				at_mma(o[2 * dp + 1], pa[2 * kc][0], pa[2 * kc][1], pa[2 * kc + 1][0], pa[2 * kc + 1][1], b2, b3);
			}
		}
	}
	const int qr = qBase + warp * 16 + (lane >> 2);
#pragma unroll
	for (int i = 0; i < D / 8; i++) {
		const int d = i * 8 + (lane & 3) * 2;
#pragma unroll
		for (int hh = 0; hh < 2; hh++) {
			const int qq = qr + hh * 8;
			if (qq >= seqLen) continue;
			const long long idx = (long long)(seqStart + qq) * qStride + h * D + d;
			const float v0 = rnd(o[i][2 * hh], DT_BF16), v1 = rnd(o[i][2 * hh + 1], DT_BF16);
			if (ost == ST_BF16) {
				*(uint32_t*)((uint16_t*)O + idx) = pack_bf16(v0, v1);
			} else {
				*(float2*)((float*)O + idx) = make_float2(v0, v1);
			}
		}
	}
}

extern "C" __global__ void __launch_bounds__(128) attn_bf16_d64(const uint16_t* Q, const uint16_t* K, const uint16_t* V,
								void* O, int ost, const int* qtiles, int H, int KVH,
								float scale) {
	attn_bf16<64>(Q, K, V, O, ost, qtiles, H, KVH, scale);
}

extern "C" __global__ void __launch_bounds__(128) attn_bf16_d128(const uint16_t* Q, const uint16_t* K,
								 const uint16_t* V, void* O, int ost, const int* qtiles,
								 int H, int KVH, float scale) {
	attn_bf16<128>(Q, K, V, O, ost, qtiles, H, KVH, scale);
}

// attn_ref: grid (rows, heads), 128 threads, dynamic shared memory of
// (maxLen + D) floats.
extern "C" __global__ void __launch_bounds__(128)
    attn_ref(const void* __restrict__ Q, int qst, const void* __restrict__ K, int kst, const void* __restrict__ V,
	     int vst, void* __restrict__ O, int ost, const int* __restrict__ rowStart, int H, int KVH, int D,
	     float scale, int dt) {
	extern __shared__ float sh[];
	__shared__ double redd[32];
	__shared__ float redf[32];
	const int row = blockIdx.x, h = blockIdx.y, kvh = h / (H / KVH);
	const int start = rowStart[row], t = row - start;  // keys 0..t of the sequence
	float* sq = sh;
	float* sc = sh + D;
	const long long qStride = (long long)H * D, kvStride = (long long)KVH * D;
	for (int d = threadIdx.x; d < D; d += blockDim.x) sq[d] = ldv(Q, qst, row * qStride + h * D + d);
	__syncthreads();
	float mx = -INFINITY;
	for (int j = threadIdx.x; j <= t; j += blockDim.x) {
		const long long kb = (long long)(start + j) * kvStride + kvh * D;
		float acc = 0.f;
		for (int d = 0; d < D; d++) acc = add_rn(acc, mul_rn(sq[d], ldv(K, kst, kb + d)));
		const float s = rnd(mul_rn(rnd(acc, dt), scale), dt);
		sc[j] = s;
		mx = fmaxf(mx, s);
	}
	mx = block_max_f32(mx, redf);
	double sum = 0.0;
	for (int j = threadIdx.x; j <= t; j += blockDim.x) {
		const float e = (float)exp((double)(sc[j] - mx));
		sc[j] = e;
		sum += (double)e;
	}
	sum = block_sum_f64(sum, redd);
	const float s32 = (float)sum;
	for (int j = threadIdx.x; j <= t; j += blockDim.x) sc[j] = rnd(__fdiv_rn(sc[j], s32), dt);
	__syncthreads();
	for (int d = threadIdx.x; d < D; d += blockDim.x) {
		float acc = 0.f;
		for (int j = 0; j <= t; j++)
			acc = add_rn(acc, mul_rn(sc[j], ldv(V, vst, (long long)(start + j) * kvStride + kvh * D + d)));
		stv(O, ost, row * qStride + h * D + d, rnd(acc, dt));
	}
}
