package cuda

import (
	"fmt"
	"strconv"
	"strings"
)

// WeightMode says where uploaded weights live.
type WeightMode int

// Weight placement modes.
const (
	// WeightsAuto keeps weights resident while they fit the per-device
	// budget (filling devices in order) and streams the rest.
	WeightsAuto WeightMode = iota
	// WeightsResident keeps every weight resident (an upload that does not
	// fit is an error).
	WeightsResident
	// WeightsStream streams every weight of Options.StreamMinBytes or more through
	// the per-device window, whatever the free memory.
	WeightsStream
)

// String returns the mode as PTQGATE_CUDA_WEIGHTS spells it.
func (m WeightMode) String() string {
	switch m {
	case WeightsAuto:
		return "auto"
	case WeightsResident:
		return "resident"
	case WeightsStream:
		return "stream"
	}
	return fmt.Sprintf("WeightMode(%d)", int(m))
}

// DefaultStreamMinBytes is the size below which a weight always stays
// resident (norm weights, biases, small routers).
const DefaultStreamMinBytes = 4 << 20

// Options configures the backend. The zero value uses every visible GPU
// with automatic weight placement.
type Options struct {
	// Devices are the device ordinals to use, in layer order (nil: all
	// visible devices, CUDA_VISIBLE_DEVICES applies). An ordinal may be
	// repeated, which runs several logical devices on one GPU (tests).
	Devices []int
	// Weights selects the placement mode.
	Weights WeightMode
	// WeightBudget is the resident-weight budget per device in bytes (0:
	// the free memory at start minus Reserve).
	WeightBudget int64
	// Reserve is the memory per device kept free of resident weights for
	// activations and the streaming window (0: 8 GiB or 15% of the
	// device's memory, whichever is more).
	Reserve int64
	// StreamWindow bounds the device memory of streamed weights per
	// device in bytes (0: 2 GiB or three times the largest streamed
	// weight, whichever is more).
	StreamWindow int64
	// StreamMinBytes is the size below which a weight stays resident in
	// every mode (0: DefaultStreamMinBytes).
	StreamMinBytes int64
}

// Environment variables read by OptionsFromEnv.
const (
	EnvDevices      = "PTQGATE_CUDA_DEVICES"       // "0,1"
	EnvWeights      = "PTQGATE_CUDA_WEIGHTS"       // auto | resident | stream
	EnvWeightBudget = "PTQGATE_CUDA_WEIGHT_BUDGET" // bytes, e.g. 40GiB
	EnvReserve      = "PTQGATE_CUDA_RESERVE"       // bytes, e.g. 8GiB
	EnvStreamWindow = "PTQGATE_CUDA_STREAM_WINDOW" // bytes, e.g. 3GiB
)

// OptionsFromEnv reads the options from the environment (getenv is
// os.Getenv outside tests). Unset variables keep the defaults.
func OptionsFromEnv(getenv func(string) string) (Options, error) {
	var o Options
	if v := strings.TrimSpace(getenv(EnvDevices)); v != "" {
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 0 {
				return o, fmt.Errorf("%s=%q: want comma-separated device ordinals", EnvDevices, v)
			}
			o.Devices = append(o.Devices, n)
		}
	}
	switch v := strings.TrimSpace(getenv(EnvWeights)); v {
	case "", "auto":
	case "resident":
		o.Weights = WeightsResident
	case "stream":
		o.Weights = WeightsStream
	default:
		return o, fmt.Errorf("%s=%q: want auto, resident or stream", EnvWeights, v)
	}
	for _, x := range []struct {
		name string
		dst  *int64
	}{{EnvWeightBudget, &o.WeightBudget}, {EnvReserve, &o.Reserve}, {EnvStreamWindow, &o.StreamWindow}} {
		v := strings.TrimSpace(getenv(x.name))
		if v == "" {
			continue
		}
		n, err := ParseBytes(v)
		if err != nil {
			return o, fmt.Errorf("%s: %w", x.name, err)
		}
		*x.dst = n
	}
	return o, nil
}

// ParseBytes reads a byte count: a number with an optional unit B, KiB,
// MiB, GiB, TiB (or K, M, G, T, also powers of 1024), e.g. "40GiB", "1.5G".
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || f*mult > 1<<62 {
		return 0, fmt.Errorf("%q is not a byte count (e.g. 40GiB, 512MiB, 1073741824)", s)
	}
	return int64(f * mult), nil
}
