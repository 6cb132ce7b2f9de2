package contracts_test

import (
	"fmt"
	"path/filepath"
	"sync"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/fixtures/catalogue"
	"github.com/ptqgate/ptqgate/ptqcore/calib"
	"github.com/ptqgate/ptqgate/ptqcore/export"
	"github.com/ptqgate/ptqgate/suites/internal/framework"
)

// cleanCase is a checkpoint that must load wherever its format loads.
type cleanCase struct {
	Name   string
	Model  catalogue.Model
	Format catalogue.Format
	Scope  catalogue.Scope
	// Build writes it into a new folder.
	Build func(dir string) error
}

// builtClean lists the catalogue builder's clean checkpoints: every model,
// format, quantization scope and KV setting, plus a sharded one.
func builtClean() []cleanCase {
	var out []cleanCase
	for _, m := range []catalogue.Model{catalogue.Qwen3MoE, catalogue.Qwen35MoE} {
		for _, f := range catalogue.Formats() {
			for _, s := range []catalogue.Scope{catalogue.ScopeAll, catalogue.ScopeMLP, catalogue.ScopeExperts} {
				for _, kv := range []bool{false, true} {
					opt := catalogue.Options{Model: m, Scope: s, KV: kv, Report: true}
					name := fmt.Sprintf("built %s %s %s", m, f, s)
					if kv {
						name += " + FP8 KV"
					}
					out = append(out, cleanCase{Name: name, Model: m, Format: f, Scope: s,
						Build: func(dir string) error { return catalogue.Clean(f, dir, opt) }})
				}
			}
		}
	}
	out = append(out, cleanCase{Name: "built qwen3_moe NVFP4 experts + FP8 KV, sharded", Model: catalogue.Qwen3MoE,
		Format: catalogue.NVFP4, Scope: catalogue.ScopeExperts, Build: func(dir string) error {
			return catalogue.Clean(catalogue.NVFP4, dir, catalogue.Options{Scope: catalogue.ScopeExperts, KV: true, MaxShardSize: 64 << 10})
		}})
	return out
}

// presets are the recipes ptqgate exports with, with the format and scope
// each gives in the catalogue builder's terms.
var presets = []struct {
	Name   string
	Format catalogue.Format
	Scope  catalogue.Scope
}{
	{"fp8_default-fp8_kv", catalogue.FP8, catalogue.ScopeAll},
	{"nvfp4_default-fp8_kv", catalogue.NVFP4, catalogue.ScopeAll},
	{"nvfp4_mlp_only-fp8_kv", catalogue.NVFP4, catalogue.ScopeMLP},
	{"nvfp4_experts_only-fp8_kv", catalogue.NVFP4, catalogue.ScopeExperts},
	{"w4a16_nvfp4", catalogue.W4A16NVFP4, catalogue.ScopeAll},
}

// exportedClean lists ptqgate's own exports of the calibrated fixtures.
func exportedClean() []cleanCase {
	var out []cleanCase
	for _, fx := range []struct {
		name  string
		model catalogue.Model
	}{{framework.Qwen3MoETiny, catalogue.Qwen3MoE}, {framework.Qwen35MoETiny, catalogue.Qwen35MoE}} {
		for _, p := range presets {
			out = append(out, cleanCase{Name: fmt.Sprintf("ptqgate export of %s with %s", fx.name, p.Name), Model: fx.model,
				Format: p.Format, Scope: p.Scope, Build: func(dir string) error { return exportFixture(fx.name, p.Name, dir) }})
		}
	}
	return out
}

// exportFixture calibrates a built-in fixture with a preset and exports it.
func exportFixture(fixture, preset, dir string) error {
	model := dir + ".model"
	opt := framework.FixtureOptions(fixture)
	if err := writeFixture(model, opt); err != nil {
		return err
	}
	res, err := framework.Calibrate(model, preset, framework.CalibFor(fixture), calib.Options{})
	if err != nil {
		return fmt.Errorf("calibrate %s with %s: %w", fixture, preset, err)
	}
	_, err = framework.Export(res, dir, export.Options{})
	return err
}

// checkpointCache builds each checkpoint once per suite process.
type checkpointCache struct {
	root string
	mu   sync.Mutex
	dirs map[string]string
	errs map[string]error
}

var checkpoints *checkpointCache

func newCheckpointCache(root string) *checkpointCache {
	return &checkpointCache{root: root, dirs: map[string]string{}, errs: map[string]error{}}
}

// get returns the folder of the named checkpoint, building it the first time.
func (c *checkpointCache) get(name string, build func(dir string) error) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.dirs[name]; ok {
		return d, c.errs[name]
	}
	d := filepath.Join(c.root, fmt.Sprintf("ckpt%03d", len(c.dirs)))
	err := build(d)
	c.dirs[name], c.errs[name] = d, err
	return d, err
}

// crafted returns the folder of catalogue entry id's crafted checkpoint.
func (c *checkpointCache) crafted(id string) (string, error) {
	return c.get("crafted "+id, func(dir string) error { return catalogue.Build(id, dir) })
}

// writeFixture writes a fixture checkpoint.
func writeFixture(dir string, opt fixtures.Options) error { return fixtures.Write(dir, opt) }
