// ops.cu — the element-wise, normalisation, routing, gather/scatter and
// reduction kernels of ptqgate's CUDA backend. Each follows the CPU
// backend's arithmetic (ptqcore/backend/cpu/ops.go) operation by
// operation: float32 products without FMA where the CPU multiplies in
// float32, float64 where the CPU computes in float64 (sums of squares,
// softmax denominators, exp, silu), so most results are bit-identical to
// the CPU's; sums accumulated in a different order (block reductions) can
// differ in the last float64 bit before the rounding to float32.
#include "common.cuh"

// convert copies n elements between storages (float32 ↔ bfloat16).
extern "C" __global__ void convert(const void* __restrict__ src, int sst, void* __restrict__ dst, int dst_st,
				   long long n) {
	for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
		stv(dst, dst_st, i, ldv(src, sst, i));
}

// rmsnorm: one block per row. kind 0: y = round(w·round(x·inv)); kind 1:
// y = round(x·inv·(1+w)); inv = 1/sqrt(mean(x²)+eps) per group.
extern "C" __global__ void __launch_bounds__(256)
    rmsnorm(const void* __restrict__ x, int xst, const void* __restrict__ w, int wst, void* __restrict__ y, int yst,
	    int cols, int group, float eps, int kind, int dt) {
	__shared__ double red[32];
	const long long base = (long long)blockIdx.x * cols;
	const int groups = cols / group;
	auto apply = [&](int g0, float inv, int first, int step) {
		for (int i = first; i < group; i += step) {
			const float v = ldv(x, xst, base + g0 + i), wv = ldv(w, wst, i);
			float o;
			if (kind == 0) {
				o = rnd(mul_rn(wv, rnd(mul_rn(v, inv), dt)), dt);
			} else {
				o = rnd(mul_rn(mul_rn(v, inv), add_rn(1.f, wv)), dt);
			}
			stv(y, yst, base + g0 + i, o);
		}
	};
	if (groups == 1) {
		double ss = 0.0;
		for (int i = threadIdx.x; i < group; i += blockDim.x) {
			const double v = ldv(x, xst, base + i);
			ss += v * v;
		}
		ss = block_sum_f64(ss, red);
		const float variance = (float)(ss / (double)group);
		const float inv = (float)(1.0 / sqrt((double)add_rn(variance, eps)));
		apply(0, inv, threadIdx.x, blockDim.x);
		return;
	}
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
	for (int g = warp; g < groups; g += nw) {
		const int g0 = g * group;
		double ss = 0.0;
		for (int i = lane; i < group; i += 32) {
			const double v = ldv(x, xst, base + g0 + i);
			ss += v * v;
		}
		ss = warp_sum_f64(ss);
		const float variance = (float)(ss / (double)group);
		const float inv = (float)(1.0 / sqrt((double)add_rn(variance, eps)));
		apply(g0, inv, lane, 32);
	}
}

// rope rotates x in place: blocks loop over rows, threads over (head,
// i < rotary/2); cos/sin tables are [position][rotary/2], already rounded
// to dt.
extern "C" __global__ void rope(void* __restrict__ x, int xst, int rows, int heads, int headDim, int rotary,
				const int* __restrict__ pos, const float* __restrict__ cosT, const float* __restrict__ sinT,
				int dt) {
	const int half = rotary / 2, per = heads * half;
	for (int r = blockIdx.x; r < rows; r += gridDim.x) {
		const long long rb = (long long)r * heads * headDim;
		const float* cr = cosT + (long long)pos[r] * half;
		const float* sr = sinT + (long long)pos[r] * half;
		for (int t = threadIdx.x; t < per; t += blockDim.x) {
			const int h = t / half, i = t - h * half;
			const long long b = rb + (long long)h * headDim;
			const float c = cr[i], s = sr[i];
			const float x1 = ldv(x, xst, b + i), x2 = ldv(x, xst, b + i + half);
			const float a = rnd(add_rn(rnd(mul_rn(x1, c), dt), rnd(mul_rn(-x2, s), dt)), dt);
			const float bb = rnd(add_rn(rnd(mul_rn(x2, c), dt), rnd(mul_rn(x1, s), dt)), dt);
			stv(x, xst, b + i, a);
			stv(x, xst, b + i + half, bb);
		}
	}
}

// silu_mul: out[r, i] = round(round(silu(gu[r, i]))·gu[r, I+i]), silu in
// float64; blocks loop over rows.
extern "C" __global__ void silu_mul(const void* __restrict__ gu, int gst, void* __restrict__ out, int ost, long long rows,
				    int I, int dt) {
	for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
		const long long gb = r * 2 * I, ob = r * I;
		for (int i = threadIdx.x; i < I; i += blockDim.x) {
			const double g = ldv(gu, gst, gb + i);
			const float u = ldv(gu, gst, gb + I + i);
			const float s = (float)(g / (1.0 + exp(-g)));
			stv(out, ost, ob + i, rnd(mul_rn(rnd(s, dt), u), dt));
		}
	}
}

// The *_bf16x8 kernels are the bfloat16-storage forms of the kernels
// above them, eight elements per thread with 16-byte loads and stores
// (rows a multiple of 8 elements); the arithmetic is the same.

extern "C" __global__ void silu_mul_bf16x8(const uint16_t* __restrict__ gu, uint16_t* __restrict__ out, long long rows,
					   int I, int dt) {
	const int per = I / 8;
	const long long n = rows * per;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n; t += (long long)gridDim.x * blockDim.x) {
		const long long r = t / per;
		const int c = (int)(t - r * per) * 8;
		float g[8], u[8], o[8];
		load8_bf16(gu + r * 2 * I + c, g);
		load8_bf16(gu + r * 2 * I + I + c, u);
#pragma unroll
		for (int i = 0; i < 8; i++) {
			const double gd = g[i];
			const float s = (float)(gd / (1.0 + exp(-gd)));
			o[i] = rnd(mul_rn(rnd(s, dt), u[i]), dt);
		}
		store8_bf16(out + r * I + c, o);
	}
}

extern "C" __global__ void add_bf16x8(const uint16_t* a, const uint16_t* b, uint16_t* out, long long n8, int dt) {
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n8; t += (long long)gridDim.x * blockDim.x) {
		float x[8], y[8];
		load8_bf16(a + 8 * t, x);
		load8_bf16(b + 8 * t, y);
#pragma unroll
		for (int i = 0; i < 8; i++) x[i] = rnd(add_rn(x[i], y[i]), dt);
		store8_bf16(out + 8 * t, x);
	}
}

extern "C" __global__ void scale_rows_bf16x8(uint16_t* __restrict__ x, const float* __restrict__ s, long long rows, int cols,
					     int dt) {
	const int per = cols / 8;
	const long long n = rows * per;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n; t += (long long)gridDim.x * blockDim.x) {
		const long long r = t / per;
		const float f = s[r];
		float v[8];
		load8_bf16(x + 8 * t, v);
#pragma unroll
		for (int i = 0; i < 8; i++) v[i] = rnd(mul_rn(v[i], f), dt);
		store8_bf16(x + 8 * t, v);
	}
}

extern "C" __global__ void scatter_add_rows_bf16x8(uint16_t* __restrict__ dst, const uint16_t* __restrict__ src,
						   const int* __restrict__ order, const int* __restrict__ start,
						   long long rows, int cols, int dt) {
	const int per = cols / 8;
	const long long n = rows * per;
	for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n; t += (long long)gridDim.x * blockDim.x) {
		const long long d = t / per;
		const int c = (int)(t - d * per) * 8;
		const int j0 = start[d], j1 = start[d + 1];
		if (j0 == j1) continue;
		float acc[8], v[8];
		load8_bf16(dst + d * cols + c, acc);
		for (int j = j0; j < j1; j++) {
			load8_bf16(src + (long long)order[j] * cols + c, v);
#pragma unroll
			for (int i = 0; i < 8; i++) acc[i] = rnd(add_rn(acc[i], v[i]), dt);
		}
		store8_bf16(dst + d * cols + c, acc);
	}
}

// add: out = round(a + b) element-wise (out may alias a or b).
extern "C" __global__ void add(const void* a, int ast, const void* b, int bst, void* out, int ost, long long n, int dt) {
	for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
		stv(out, ost, i, rnd(add_rn(ldv(a, ast, i), ldv(b, bst, i)), dt));
}

// scale_rows: x[r, :] = round(x[r, :]·s[r]); blocks loop over rows.
extern "C" __global__ void scale_rows(void* __restrict__ x, int xst, const float* __restrict__ s, long long rows, int cols,
				      int dt) {
	for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
		const float f = s[r];
		for (int c = threadIdx.x; c < cols; c += blockDim.x) {
			const long long i = r * cols + c;
			stv(x, xst, i, rnd(mul_rn(ldv(x, xst, i), f), dt));
		}
	}
}

// gather_rows: dst[r, :] = src[idx[r], :], converting the storage.
extern "C" __global__ void gather_rows(const void* __restrict__ src, int sst, void* __restrict__ dst, int dst_st,
				       const int* __restrict__ idx, long long rows, int cols) {
	for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
		const long long sb = (long long)idx[r] * cols, db = r * cols;
		for (int c = threadIdx.x; c < cols; c += blockDim.x) stv(dst, dst_st, db + c, ldv(src, sst, sb + c));
	}
}

// gather_rows_x16 copies rows of `words` 16-byte words (same storage).
extern "C" __global__ void gather_rows_x16(const uint4* __restrict__ src, uint4* __restrict__ dst,
					   const int* __restrict__ idx, long long rows, int words) {
	for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
		const uint4* s = src + (long long)idx[r] * words;
		uint4* d = dst + r * words;
		for (int c = threadIdx.x; c < words; c += blockDim.x) d[c] = s[c];
	}
}

// scatter_add_rows: for destination row d, the source rows order[start[d]
// .. start[d+1]) (ascending) are added one at a time, each sum rounded.
extern "C" __global__ void scatter_add_rows(void* __restrict__ dst, int dst_st, const void* __restrict__ src, int sst,
					    const int* __restrict__ order, const int* __restrict__ start, long long rows,
					    int cols, int dt) {
	for (long long d = blockIdx.x; d < rows; d += gridDim.x) {
		const int j0 = start[d], j1 = start[d + 1];
		if (j0 == j1) continue;
		for (int c = threadIdx.x; c < cols; c += blockDim.x) {
			const long long t = d * cols + c;
			float acc = ldv(dst, dst_st, t);
			for (int j = j0; j < j1; j++) acc = rnd(add_rn(acc, ldv(src, sst, (long long)order[j] * cols + c)), dt);
			stv(dst, dst_st, t, acc);
		}
	}
}

// topk_better orders router probabilities: a higher value wins, NaN loses
// to any number, ties go to the lower index.
__device__ __forceinline__ bool topk_better(float a, int ia, float b, int ib) {
	const bool an = a != a, bn = b != b;
	if (an != bn) return bn;
	if (!an && a != b) return a > b;
	return ia < ib;
}

// router_topk: one warp per row of logits [rows, E]: p = softmax (exp and
// sum in float64, p = e/sum in float32), the top k ≤ 32 (descending, ties
// to the lower index), renormalised in float32 in selection order if
// normalize, rounded to dt. Dynamic shared memory per warp: E floats and
// E bytes.
extern "C" __global__ void __launch_bounds__(128)
    router_topk(const void* __restrict__ logits, int lst, int rows, int E, int k, int normalize, int dt,
		int* __restrict__ outIdx, float* __restrict__ outW) {
	extern __shared__ float rp[];
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
	const int r = blockIdx.x * nw + warp;
	if (r >= rows) return;
	float* p = rp + warp * E;
	unsigned char* taken = (unsigned char*)(rp + nw * E) + warp * E;
	const long long base = (long long)r * E;
	float m = -INFINITY;
	for (int i = lane; i < E; i += 32) {
		const float v = ldv(logits, lst, base + i);
		p[i] = v;
		taken[i] = 0;
		if (v > m) m = v;
	}
	m = warp_max_f32(m);
	double sum = 0.0;
	for (int i = lane; i < E; i += 32) {
		const float e = (float)exp((double)(p[i] - m));
		p[i] = e;
		sum += (double)e;
	}
	sum = warp_sum_f64(sum);
	const float s32 = (float)sum;
	for (int i = lane; i < E; i += 32) p[i] = __fdiv_rn(p[i], s32);
	__syncwarp();
	float sel = 0.f;  // lane j keeps the j-th selected probability
	for (int j = 0; j < k; j++) {
		float bv = 0.f;
		int bi = -1;
		for (int i = lane; i < E; i += 32) {
			if (taken[i]) continue;
			const float v = p[i];
			if (bi < 0 || topk_better(v, i, bv, bi)) {
				bv = v;
				bi = i;
			}
		}
		for (int o = 16; o > 0; o >>= 1) {
			const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
			const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
			if (oi >= 0 && (bi < 0 || topk_better(ov, oi, bv, bi))) {
				bv = ov;
				bi = oi;
			}
		}
		if (lane == 0) {
			outIdx[(long long)r * k + j] = bi;
			taken[bi] = 1;
		}
		if (lane == j) sel = bv;
		__syncwarp();
	}
	float s = 0.f;
	if (normalize)
		for (int j = 0; j < k; j++) s = add_rn(s, __shfl_sync(0xffffffffu, sel, j));
	if (lane < k) {
		float v = sel;
		if (normalize) v = __fdiv_rn(v, s);
		outW[(long long)r * k + lane] = rnd(v, dt);
	}
}

// amax_tensor: max magnitude bits over n elements into out[0] (atomicMax).
extern "C" __global__ void __launch_bounds__(256) amax_tensor(const void* __restrict__ x, int st, long long n,
							      uint32_t* __restrict__ out) {
	__shared__ uint32_t red[32];
	uint32_t m = 0;
	for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
		m = max(m, mag(ldv(x, st, i)));
	m = block_max_u32(m, red);
	if (threadIdx.x == 0 && m != 0) atomicMax(out, m);
}

// amax_rows: one block per row.
extern "C" __global__ void __launch_bounds__(256) amax_rows(const void* __restrict__ x, int st, int cols,
							    uint32_t* __restrict__ out) {
	__shared__ uint32_t red[32];
	uint32_t m = 0;
	const long long base = (long long)blockIdx.x * cols;
	for (int i = threadIdx.x; i < cols; i += blockDim.x) m = max(m, mag(ldv(x, st, base + i)));
	m = block_max_u32(m, red);
	if (threadIdx.x == 0) out[blockIdx.x] = m;
}

// amax_cols: one thread per column, rows in chunks of rowsPer (grid.y);
// partial maxima meet with atomicMax.
extern "C" __global__ void amax_cols(const void* __restrict__ x, int st, long long rows, int cols, int rowsPer,
				     uint32_t* __restrict__ out) {
	const int c = blockIdx.x * blockDim.x + threadIdx.x;
	if (c >= cols) return;
	const long long r0 = (long long)blockIdx.y * rowsPer;
	const long long r1 = min(rows, r0 + rowsPer);
	uint32_t m = 0;
	for (long long r = r0; r < r1; r++) m = max(m, mag(ldv(x, st, r * cols + c)));
	if (m != 0) atomicMax(&out[c], m);
}

// amax_blocks: one thread per block of `block` consecutive elements.
extern "C" __global__ void amax_blocks(const void* __restrict__ x, int st, long long nblocks, int block,
				       uint32_t* __restrict__ out) {
	for (long long b = blockIdx.x * (long long)blockDim.x + threadIdx.x; b < nblocks; b += (long long)gridDim.x * blockDim.x) {
		uint32_t m = 0;
		for (int i = 0; i < block; i++) m = max(m, mag(ldv(x, st, b * block + i)));
		out[b] = m;
	}
}
