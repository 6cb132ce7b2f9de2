package export

import "github.com/ptqgate/ptqgate/ptqcore/calib"

// FromCalibration returns the export input of a calibration run: its model
// and every quantizer with the configuration the recipe left it in and its
// amax (nil when never calibrated or disabled).
func FromCalibration(res *calib.Result) Input {
	in := Input{Model: res.Model, Quantizers: make([]Quantizer, len(res.Quantizers))}
	for i, q := range res.Quantizers {
		in.Quantizers[i] = Quantizer{Quantizer: q.Quantizer, Amax: q.Amax}
	}
	return in
}
