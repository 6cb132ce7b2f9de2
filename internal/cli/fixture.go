package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ptqgate/ptqgate/fixtures"
	"github.com/ptqgate/ptqgate/ptqcore/safetensors"
)

func init() { register(newFixtureCmd) }

func newFixtureCmd(a *App) *cobra.Command {
	var (
		list        bool
		outDir      string
		layers      int
		experts     int
		topK        int
		dtype       string
		layout      string
		seed        uint64
		unreachable []string
		force       bool
		shardSize   int64
	)
	c := &cobra.Command{
		Use:   "fixture NAME --out DIR [options] | fixture --list",
		Short: "Write a deterministic tiny MoE checkpoint (Hugging Face layout)",
		Long: `Write a built-in tiny Mixture-of-Experts checkpoint into --out: config.json,
generation_config.json and model.safetensors (or shards with
model.safetensors.index.json when --max-shard-size is given), in the layout
transformers 5.17 writes. The same options always give byte-identical files.

Fixtures (ptqgate fixture --list): qwen3-moe-tiny, qwen3-moe-dense-tiny and
qwen3_5-moe-tiny, with the shapes of the reference cases of testdata/hf and
random weights. Flags override the fixture's defaults.

--unreachable LAYER:EXPERT (repeatable) makes an expert impossible for the
router to select (the fixture's default list, e.g. 1:7 for qwen3-moe-tiny,
is replaced; --unreachable none clears it). An existing non-empty --out is
refused unless --force is given; --force replaces the checkpoint files in it
(config files, the index and every .safetensors file) and leaves others.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if list {
				if len(args) > 0 {
					return Usagef("fixture: --list takes no NAME")
				}
				return listFixtures(a)
			}
			if len(args) == 0 {
				return Usagef("fixture: missing NAME (one of %s; see --list)", fixtureNames())
			}
			opt, err := fixtures.Defaults(args[0])
			if err != nil {
				return err
			}
			if outDir == "" {
				return Usagef("fixture: --out DIR is required")
			}
			fl := c.Flags()
			if fl.Changed("layers") {
				opt.Layers = layers
			}
			if fl.Changed("experts") {
				opt.Experts = experts
			}
			if fl.Changed("top-k") {
				opt.TopK = topK
			}
			if fl.Changed("dtype") {
				opt.DType = dtype
			}
			if fl.Changed("layout") {
				opt.Layout = fixtures.Layout(layout)
			}
			if fl.Changed("seed") {
				opt.Seed = seed
			}
			if fl.Changed("max-shard-size") {
				opt.MaxShardSize = shardSize
			}
			opt.Force = force
			if fl.Changed("unreachable") {
				opt.Unreachable = nil
				for _, s := range unreachable {
					for _, part := range strings.Split(s, ",") {
						if part == "none" {
							continue
						}
						ref, err := fixtures.ParseExpertRef(part)
						if err != nil {
							return Usagef("fixture: --unreachable: %v", err)
						}
						opt.Unreachable = append(opt.Unreachable, ref)
					}
				}
			} else {
				opt.Unreachable = fitting(opt.Unreachable, func(r fixtures.ExpertRef) bool {
					return r.Layer < opt.Layers && r.Expert < opt.Experts
				})
			}
			var dense []int
			for _, l := range opt.MLPOnlyLayers {
				if l < opt.Layers {
					dense = append(dense, l)
				}
			}
			if opt.MLPOnlyLayers != nil {
				opt.MLPOnlyLayers = append([]int{}, dense...)
			}
			if err := fixtures.Write(outDir, opt); err != nil {
				return err
			}
			return reportFixture(a, args[0], outDir, opt)
		},
	}
	f := c.Flags()
	f.BoolVar(&list, "list", false, "list the built-in fixtures")
	f.StringVar(&outDir, "out", "", "write the checkpoint into `DIR`")
	f.IntVar(&layers, "layers", 0, "number of decoder layers")
	f.IntVar(&experts, "experts", 0, "routed experts per MoE layer")
	f.IntVar(&topK, "top-k", 0, "experts per token (num_experts_per_tok)")
	f.StringVar(&dtype, "dtype", "", "weight dtype: bf16 (default) or f32")
	f.StringVar(&layout, "layout", "", "expert layout: per-expert (default, what save_pretrained writes) or fused")
	f.Uint64Var(&seed, "seed", 0, "random seed of the weights")
	f.StringArrayVar(&unreachable, "unreachable", nil, "make expert `LAYER:EXPERT` unreachable by the router (repeatable; none clears the default)")
	f.BoolVar(&force, "force", false, "overwrite the checkpoint files of an existing non-empty --out")
	f.Int64Var(&shardSize, "max-shard-size", 0, "shard the weights into files of at most `BYTES` (0: one model.safetensors)")
	return c
}

func fitting(refs []fixtures.ExpertRef, ok func(fixtures.ExpertRef) bool) []fixtures.ExpertRef {
	var out []fixtures.ExpertRef
	for _, r := range refs {
		if ok(r) {
			out = append(out, r)
		}
	}
	return out
}

func fixtureNames() string {
	var names []string
	for _, f := range fixtures.Names() {
		names = append(names, f.Name)
	}
	return strings.Join(names, ", ")
}

func listFixtures(a *App) error {
	width := 0
	for _, f := range fixtures.Names() {
		width = max(width, len(f.Name))
	}
	for _, f := range fixtures.Names() {
		if _, err := fmt.Fprintf(a.Stdout, "%-*s  %s\n", width, f.Name, f.Description); err != nil {
			return err
		}
	}
	return nil
}

func reportFixture(a *App, name, dir string, opt fixtures.Options) error {
	ck, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return fmt.Errorf("fixture %s: reading back %s: %w", name, dir, err)
	}
	defer ck.Close()
	var bytes int64
	for _, t := range ck.Tensors() {
		bytes += t.Size
	}
	refs := make([]string, len(opt.Unreachable))
	for i, r := range opt.Unreachable {
		refs[i] = r.String()
	}
	unr := "none"
	if len(refs) > 0 {
		unr = strings.Join(refs, " ")
	}
	_, err = fmt.Fprintf(a.Stdout, "wrote fixture %s to %s: %s, %d layers, %d experts, top-%d, %s, %s experts; %d tensors, %d bytes in %d file(s); unreachable experts: %s\n",
		name, dir, opt.Architecture, opt.Layers, opt.Experts, opt.TopK, opt.DType, opt.Layout, len(ck.Names()), bytes, len(ck.Files()), unr)
	return err
}
