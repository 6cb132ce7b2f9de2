// Package cuda is the CUDA backend of ptqcore: backend.Backend on NVIDIA
// GPUs through the driver API (gorgonia.org/cu plus a few calls it lacks),
// with kernels written in CUDA C under kernels/ and embedded as PTX. The
// backend itself is built only with the cuda build tag; the pure-Go
// planning code in the untagged files (tile schedules, scatter orders,
// RoPE tables, bfloat16 packing, the weight-streaming policy, options)
// compiles everywhere and is tested without a GPU.
//
// Numerics (backend.Backend's contract):
//   - bfloat16 models: GEMMs and attention run on bfloat16 tensor cores
//     (mma.sync, float32 accumulation); every rounding point of the
//     contract is kept (outputs, attention scores and probabilities,
//     silu, RoPE, norms), only the order of float32 accumulation inside
//     a dot product differs from the CPU backend. One output element is
//     computed by the same instruction sequence whichever rows surround
//     it, so Linear and GroupedLinear (eager and grouped experts) agree
//     bit for bit.
//   - float32 and float16 models: CUDA-core kernels with float32 products
//     and sums without fused multiply-add in ascending index order (no
//     TF32), float64 where the CPU backend uses float64, so results match
//     the CPU backend bit for bit except for sums reduced in a different
//     order (norm and softmax denominators, in float64).
//
// Storage: a tensor lives in device memory as float32 or bfloat16. Alloc
// is lazy; the first operation that writes a tensor picks bfloat16 when it
// rounds to bfloat16, else float32. Upload stores bfloat16 when every value
// is a bfloat16 value. Operations read either storage.
//
// Execution: one worker goroutine, locked to an OS thread, makes every
// CUDA call of the compute path (Ginkgo and other callers may call the
// backend from any goroutine). Operations without a result (Linear,
// RMSNorm, Attention, Free, …) are checked for shapes in the caller and
// then queued to the worker without waiting, so the caller prepares the
// next operation while the worker launches; a device failure of a queued
// operation is returned by the next call. Work runs on one non-blocking
// stream per device and is synchronised only where a result comes back to
// the host (GroupedLinear's amax, RouterTopK, Amax, Download). Kernel
// arguments, small index uploads (through a page-locked staging arena)
// and launches are all checked; errors name the call and the kernel.
// SetProfiling/Profile time every kernel with CUDA events and report the
// GPU idle time between kernels.
//
// Memory: each device has a stream-ordered memory pool; the pool's
// high-water marks are the memory figures (Stats). Weights stay resident
// while they fit a per-device budget (devices fill in order, so the layers
// of a model too large for one GPU spread over all visible GPUs, the
// activations following the layer being computed); weights beyond every
// budget stream: the backend keeps a reference to the host data and a
// copier goroutine per device uploads the tensors the forward will need
// next (learned from the order of use) on a copy stream while the compute
// stream runs, evicting the least recently used streamed weights, so GPU
// memory holds about a layer's weights plus the activations.
package cuda
