// deltanet.cu — the Gated DeltaNet and sigmoid-gate kernels of ptqgate's
// CUDA backend (Qwen3.5-MoE, backend.LinearAttention and
// backend.SigmoidGate). Each follows the CPU backend
// (ptqcore/backend/cpu/deltanet.go, gating.go) operation by operation:
// float32 products and sums without fused multiply-add in the CPU's
// order, float64 where the CPU computes in float64 (exp, log1p, silu,
// sigmoid, sums of squares), so results are bit-identical to the CPU's
// except where a float64 sum of squares is reduced in another order or a
// float64 library function differs from Go's in its last bit (rare; the
// rounding to float32 hides almost all of it).
#include "common.cuh"

// silu_f is x·sigmoid(x) evaluated in float64, rounded to float32.
__device__ __forceinline__ float silu_f(float x) {
	const double v = x;
	return (float)(v / (1.0 + exp(-v)));
}

// sigmoid_f is 1/(1+exp(-x)) evaluated in float64, rounded to float32.
__device__ __forceinline__ float sigmoid_f(float x) { return (float)(1.0 / (1.0 + exp(-(double)x))); }

// softplus_f is torch's softplus (beta 1, threshold 20): x above 20, else
// log1p(exp(x)) in float64 rounded to float32.
__device__ __forceinline__ float softplus_f(float x) {
	if (x > 20.f) {
		return x;
	}
	return (float)log1p(exp((double)x));
}

// causal_conv1d_silu: y[r, ch] = round(silu(round(Σ_{j<K} w[ch, j]·x[r-K+1+j, ch])))
// over the rows of r's sequence (starts[r] is its first row), accumulated
// in float32 in ascending j. Grid-stride over rows·C elements. y must not
// alias x.
extern "C" __global__ void causal_conv1d_silu(const void* __restrict__ x, int xst, const void* __restrict__ w, int wst,
					      void* __restrict__ y, int yst, const int* __restrict__ starts, long long rows,
					      int C, int K, int dt) {
	const long long n = rows * C;
	for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
		const long long r = i / C;
		const int ch = (int)(i - r * C);
		const long long s0 = starts[r];
		float acc = 0.f;
		for (int j = 0; j < K; j++) {
			const long long src = r - K + 1 + j;
			if (src >= s0) {
				acc = add_rn(acc, mul_rn(ldv(w, wst, (long long)ch * K + j), ldv(x, xst, src * C + ch)));
			}
		}
		stv(y, yst, i, rnd(silu_f(rnd(acc, dt)), dt));
	}
}

// deltanet_l2norm writes the float32 L2-normalised queries (scaled by
// `scale`) and keys of every row: out [rows, 2·nk·dk] = [q heads | k heads],
// v·rsqrt(Σv² + 1e-6) with the float32 squares summed in float64 and the
// sum rounded to float32 once. One warp per (row, head); qkv [rows, cols]
// holds q and k heads in its first 2·nk·dk columns.
extern "C" __global__ void deltanet_l2norm(const void* __restrict__ qkv, int st, float* __restrict__ out, long long rows,
					   int nk, int dk, int cols, float scale) {
	const int lane = threadIdx.x & 31, per = 2 * nk;
	const long long n = rows * per;
	const long long step = (long long)gridDim.x * (blockDim.x >> 5);
	for (long long t = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); t < n; t += step) {
		const long long r = t / per;
		const int h = (int)(t - r * per);
		const long long in = r * cols + (long long)h * dk;
		const long long o = r * 2 * nk * dk + (long long)h * dk;
		double ss = 0.0;
		for (int i = lane; i < dk; i += 32) {
			const float v = ldv(qkv, st, in + i);
			ss += (double)mul_rn(v, v);
		}
		ss = warp_sum_f64(ss);
		const float inv = (float)(1.0 / sqrt((double)add_rn((float)ss, 1e-6f)));
		for (int i = lane; i < dk; i += 32) {
			float v = mul_rn(ldv(qkv, st, in + i), inv);
			if (h < nk) {
				v = mul_rn(v, scale);
			}
			out[o + i] = v;
		}
	}
}

// gated_delta_rule runs the recurrence of one (sequence, value head) per
// block: blockIdx.x is the sequence (rows seq[s] … seq[s+1]-1), blockIdx.y
// the value head h (key head h / (nv/nk)); thread j < dv owns column j of
// the float32 state S [dk × dv] in dynamic shared memory (dk·dv + 2·dk
// floats: the state, then the row's key and query). Per row, in the CPU's
// order: g = -exp(A_log)·softplus(a + dt_bias), β = round(sigmoid(b)),
// S = S·exp(g); mem = Sᵀk (ascending i); δ = (v − mem)·β; S = S + k δᵀ;
// o = Sᵀq (ascending i); out = round(o). qk is deltanet_l2norm's output.
extern "C" __global__ void gated_delta_rule(const float* __restrict__ qk, const void* __restrict__ qkv, int xst,
					    const void* __restrict__ a, int ast, const void* __restrict__ b, int bst,
					    const void* __restrict__ alog, int alst, const void* __restrict__ dtb, int dbst,
					    void* __restrict__ out, int ost, const int* __restrict__ seq, int nk, int nv, int dk,
					    int dv, int cols, int dt) {
	extern __shared__ float sm[];
	float* S = sm;
	float* kv = sm + (long long)dk * dv; // key [dk], then query [dk]
	const int s = blockIdx.x, h = blockIdx.y, j = threadIdx.x;
	const int kh = h / (nv / nk), kd = nk * dk;
	if (j < dv) {
		for (int i = 0; i < dk; i++) {
			S[i * dv + j] = 0.f;
		}
	}
	const float negA = -(float)exp((double)ldv(alog, alst, h));
	const float bias = ldv(dtb, dbst, h);
	const int t0 = seq[s], t1 = seq[s + 1];
	for (int t = t0; t < t1; t++) {
		__syncthreads(); // the previous row has finished reading k and q
		const float* row = qk + (long long)t * 2 * kd;
		for (int i = j; i < dk; i += blockDim.x) {
			kv[i] = row[kd + kh * dk + i];
			kv[dk + i] = row[kh * dk + i];
		}
		__syncthreads();
		if (j >= dv) {
			continue;
		}
		const long long gi = (long long)t * nv + h;
		const float g = mul_rn(negA, softplus_f(add_rn(ldv(a, ast, gi), bias)));
		const float beta = rnd(sigmoid_f(ldv(b, bst, gi)), dt);
		const float decay = (float)exp((double)g);
		const float v = ldv(qkv, xst, (long long)t * cols + 2 * kd + h * dv + j);
		float mem = 0.f;
		for (int i = 0; i < dk; i++) {
			const float sv = mul_rn(S[i * dv + j], decay);
			S[i * dv + j] = sv;
			mem = add_rn(mem, mul_rn(sv, kv[i]));
		}
		const float delta = mul_rn(__fsub_rn(v, mem), beta);
		float o = 0.f;
		for (int i = 0; i < dk; i++) {
			const float sv = add_rn(S[i * dv + j], mul_rn(kv[i], delta));
			S[i * dv + j] = sv;
			o = add_rn(o, mul_rn(sv, kv[dk + i]));
		}
		stv(out, ost, (long long)t * nv * dv + (long long)h * dv + j, rnd(o, dt));
	}
}

// gated_rmsnorm: per group of `group` columns of a row, n = x·inv with
// inv = 1/sqrt(mean(x²)+eps) (float64 sum, float32 variance), y =
// round(round(w·round(n))·silu(z)). One warp per (row, group),
// grid-stride; y may alias x (every element is read before it is written,
// by the same lane).
extern "C" __global__ void gated_rmsnorm(const void* x, int xst, const void* __restrict__ z, int zst,
					 const void* __restrict__ w, int wst, void* y, int yst, long long rows, int cols,
					 int group, float eps, int dt) {
	const int lane = threadIdx.x & 31, groups = cols / group;
	const long long n = rows * groups;
	const long long step = (long long)gridDim.x * (blockDim.x >> 5);
	for (long long t = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); t < n; t += step) {
		const long long r = t / groups;
		const long long base = r * cols + (t - r * groups) * group;
		double ss = 0.0;
		for (int i = lane; i < group; i += 32) {
			const double v = ldv(x, xst, base + i);
			ss += v * v;
		}
		ss = warp_sum_f64(ss);
		const float variance = (float)(ss / (double)group);
		const float inv = (float)(1.0 / sqrt((double)add_rn(variance, eps)));
		for (int i = lane; i < group; i += 32) {
			const float v = ldv(x, xst, base + i);
			const float nv = rnd(mul_rn(ldv(w, wst, i), rnd(mul_rn(v, inv), dt)), dt);
			stv(y, yst, base + i, rnd(mul_rn(nv, silu_f(ldv(z, zst, base + i))), dt));
		}
	}
}

// sigmoid_mul: y = round(x·round(sigmoid(gate))), gate [rows, cols] or,
// with bcast, [rows, 1]. Grid-stride over the elements; y may alias x.
extern "C" __global__ void sigmoid_mul(const void* x, int xst, const void* __restrict__ gate, int gst, void* y, int yst,
				       long long rows, int cols, int bcast, int dt) {
	const long long n = rows * cols;
	for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
		const long long gi = bcast ? i / cols : i;
		const float s = rnd(sigmoid_f(ldv(gate, gst, gi)), dt);
		stv(y, yst, i, rnd(mul_rn(ldv(x, xst, i), s), dt));
	}
}
