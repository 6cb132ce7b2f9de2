package calib

import (
	"testing"

	"github.com/ptqgate/ptqgate/ptqcore/backend"
	"github.com/ptqgate/ptqgate/ptqcore/quant"
)

func TestReductionFor(t *testing.T) {
	axis := func(a int) *int { return &a }
	static := &quant.BlockSizes{LastDim: 16, Type: quant.BlockStatic, ScaleBits: quant.E4M3}
	for _, tc := range []struct {
		name string
		role quant.Role
		cfg  func(c *quant.Config)
		want backend.Reduction
		bad  bool
	}{
		{"fp8 per tensor", quant.RoleInput, func(c *quant.Config) {}, backend.Reduction{Kind: backend.PerTensor}, false},
		{"nvfp4 dynamic blocks: global amax", quant.RoleWeight, func(c *quant.Config) { *c = quant.NVFP4Config() }, backend.Reduction{Kind: backend.PerTensor}, false},
		{"weight axis 0", quant.RoleWeight, func(c *quant.Config) { c.Axis = axis(0) }, backend.Reduction{Kind: backend.PerRow}, false},
		{"weight axis -1", quant.RoleWeight, func(c *quant.Config) { c.Axis = axis(-1) }, backend.Reduction{Kind: backend.PerColumn}, false},
		{"input axis -1", quant.RoleInput, func(c *quant.Config) { c.Axis = axis(-1) }, backend.Reduction{Kind: backend.PerColumn}, false},
		{"static blocks", quant.RoleWeight, func(c *quant.Config) { c.BlockSizes = static }, backend.Reduction{Kind: backend.PerBlock, Block: 16}, false},
		{"input axis 0", quant.RoleInput, func(c *quant.Config) { c.Axis = axis(0) }, backend.Reduction{}, true},
		{"axes tuple", quant.RoleWeight, func(c *quant.Config) { c.Axes = []int{0, 1} }, backend.Reduction{}, true},
		{"kv static blocks", quant.RoleKBMM, func(c *quant.Config) { c.BlockSizes = static }, backend.Reduction{}, true},
		{"2-D blocks", quant.RoleWeight, func(c *quant.Config) {
			c.BlockSizes = &quant.BlockSizes{LastDim: 16, Type: quant.BlockStatic, Other: map[int]int{-2: 16}}
		}, backend.Reduction{}, true},
	} {
		q := quant.Quantizer{Name: "m.q", Role: tc.role, Config: quant.FP8Config()}
		tc.cfg(&q.Config)
		got, err := reductionFor(q)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("%s: %+v, %v", tc.name, got, err)
		}
		if err != nil {
			if _, ok := err.(*quant.UnsupportedError); !ok {
				t.Errorf("%s: error %T is not unsupported (exit 2)", tc.name, err)
			}
		}
	}
}
