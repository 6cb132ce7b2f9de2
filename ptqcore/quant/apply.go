package quant

import (
	"fmt"
	"sort"
	"strings"
)

// ApplyOptions changes how a recipe is applied.
type ApplyOptions struct {
	// NoSingularNormalization matches patterns against raw names only, as
	// ModelOpt did before #1340 (the plural-match fault): "*weight_quantizer"
	// then misses "…_weight_quantizers.<e>".
	NoSingularNormalization bool
}

// Applied is the result of applying a recipe to a model's quantizers.
type Applied struct {
	// Quantizers are the model's quantizers, in the given order, with the
	// configuration the recipe leaves them in.
	Quantizers []Quantizer
	// UnmatchedEnabling are the patterns of enabling entries that matched no
	// quantizer, and no alternative either (see UnmatchedEnablingEntries).
	// The caller reports them as errors (exit 1).
	UnmatchedEnabling []string
	// UnmatchedEnablingEntries are the entries behind UnmatchedEnabling.
	UnmatchedEnablingEntries []Entry
	// UnmatchedDisabling are the patterns of disabling entries that matched no
	// quantizer (information only: the default-disabled list names modules of
	// many architectures).
	UnmatchedDisabling []string
	// Unconfigured are the quantizers no entry touched.
	Unconfigured []string
	// InputWithoutWeight names modules (with the projection for fused
	// experts) whose input quantizer is enabled while their weight quantizers
	// are all disabled: ModelOpt calibrates such inputs but exports nothing
	// for an unquantized module.
	InputWithoutWeight []string
}

// Enabled returns the enabled quantizers.
func (a *Applied) Enabled() []Quantizer {
	var out []Quantizer
	for _, q := range a.Quantizers {
		if q.Config.Enable {
			out = append(out, q)
		}
	}
	return out
}

// Apply applies the recipe's entries in order to copies of qs, as ModelOpt's
// set_quantizer_by_cfg does: an entry with a cfg replaces the whole
// configuration of every quantizer it matches (enable from the entry), an
// entry without one only sets enable. A pattern matches the raw name or,
// unless opt.NoSingularNormalization, the singular-normalized name; an entry
// with a parent_class matches only quantizers whose module has that class.
//
// Coverage: an enabling entry that matched nothing is reported in
// UnmatchedEnabling unless another enabling entry with the same cfg, parent
// class and target (the quantizer kind its pattern ends with: weight, input,
// bmm or any) matched something. Such groups are the toolkit's per-architecture
// alternatives ("*.experts.*weight_quantizer" for HF experts,
// "*block_sparse_moe*weight_quantizer" for Mixtral); the group fails only
// when every alternative misses.
//
// The returned error is an *UnsupportedError (exit 2) when a quantizer is left
// enabled at the toolkit's INT8 default (no cfg ever set it), when an enabled
// quantizer's configuration is not one ptqgate supports (FP8 or NVFP4; FP8 for
// k/v bmm), or when a module combines formats ptqgate cannot export (FP8
// weight-only, NVFP4 weights with FP8 inputs, FP8 weights with NVFP4 inputs,
// different formats across the experts or projections of one fused experts
// module). The Applied result is returned with the error for reporting.
func (r *Recipe) Apply(qs []Quantizer, opt ApplyOptions) (*Applied, error) {
	out := &Applied{Quantizers: make([]Quantizer, len(qs))}
	copy(out.Quantizers, qs)
	touched := make([]bool, len(qs))
	configured := make([]bool, len(qs))
	hits := make([]int, len(r.Entries))
	singular := make([]string, len(qs))
	for qi, q := range qs {
		singular[qi] = Singular(q.Name)
	}

	for ei, e := range r.Entries {
		m := compilePattern(e.QuantizerName)
		for qi := range out.Quantizers {
			q := &out.Quantizers[qi]
			if e.ParentClass != "" && e.ParentClass != q.ParentClass {
				continue
			}
			if !m(q.Name) && (opt.NoSingularNormalization || !matchSingular(m, q.Name, singular[qi])) {
				continue
			}
			hits[ei]++
			touched[qi] = true
			if e.Cfg != nil {
				q.Config = *e.Cfg
				configured[qi] = true
			}
			q.Config.Enable = e.Enable
		}
	}

	// Coverage.
	groupHit := map[string]bool{}
	for ei, e := range r.Entries {
		if e.Enable && hits[ei] > 0 {
			groupHit[coverageGroup(e)] = true
		}
	}
	for ei, e := range r.Entries {
		if hits[ei] > 0 {
			continue
		}
		if e.Enable {
			if !groupHit[coverageGroup(e)] {
				out.UnmatchedEnabling = append(out.UnmatchedEnabling, e.QuantizerName)
				out.UnmatchedEnablingEntries = append(out.UnmatchedEnablingEntries, e)
			}
		} else {
			out.UnmatchedDisabling = append(out.UnmatchedDisabling, e.QuantizerName)
		}
	}
	for qi, q := range out.Quantizers {
		if !touched[qi] {
			out.Unconfigured = append(out.Unconfigured, q.Name)
		}
	}

	// Quantizers left enabled at the INT8 default.
	var atDefault []string
	for qi, q := range out.Quantizers {
		if q.Config.Enable && !configured[qi] {
			atDefault = append(atDefault, q.Name)
		}
	}
	if len(atDefault) > 0 {
		return out, &UnsupportedError{
			Subject: "recipe " + r.Name,
			Reason: fmt.Sprintf("%d quantizer(s) left enabled at the toolkit's INT8 default (no entry with a cfg matched them; start the recipe with a disable-all entry '*'): %s",
				len(atDefault), listNames(atDefault)),
		}
	}
	return out, checkSupported(r.Name, out)
}

// coverageGroup keys the alternatives an enabling entry belongs to.
func coverageGroup(e Entry) string {
	cfg := "toggle"
	if e.Cfg != nil {
		cfg = e.Cfg.key()
	}
	return cfg + "|" + e.ParentClass + "|" + patternTarget(e.QuantizerName)
}

// patternTarget is the quantizer kind a pattern is written for.
func patternTarget(p string) string {
	for _, t := range []string{"weight_quantizer", "input_quantizer", "bmm_quantizer"} {
		if strings.HasSuffix(p, t) || strings.HasSuffix(p, t+"s") {
			return t
		}
	}
	return "any"
}

// listNames joins names, eliding the middle of very long lists.
func listNames(names []string) string {
	const max = 12
	if len(names) <= max {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:max], ", ") + fmt.Sprintf(", … (%d more)", len(names)-max)
}

// supportedQuantizer says why an enabled quantizer's configuration is
// unsupported, or "".
func supportedQuantizer(q Quantizer) string {
	if why := supportedConfig(q.Config); why != "" {
		return why
	}
	if (q.Role == RoleKBMM || q.Role == RoleVBMM) && !q.Config.IsFP8() {
		return fmt.Sprintf("KV cache format %s is not supported (fp8 only)", q.Config.Format())
	}
	return ""
}

// checkSupported checks every enabled quantizer and every module's format
// combination.
func checkSupported(recipe string, a *Applied) error {
	for _, q := range a.Quantizers {
		if !q.Config.Enable {
			continue
		}
		if why := supportedQuantizer(q); why != "" {
			return unsupportedf("quantizer "+q.Name, "%s (recipe %s)", why, recipe)
		}
	}
	type group struct {
		input   *Quantizer
		weights []*Quantizer
	}
	groups := map[string]*group{}
	var order []string
	modProj := map[string][]string{} // fused experts module -> its group keys
	for i := range a.Quantizers {
		q := &a.Quantizers[i]
		if q.Role != RoleInput && q.Role != RoleWeight {
			continue
		}
		key := q.Module
		if q.Proj != "" {
			key += "." + q.Proj
		}
		g := groups[key]
		if g == nil {
			g = &group{}
			groups[key] = g
			order = append(order, key)
			if q.Proj != "" {
				modProj[q.Module] = append(modProj[q.Module], key)
			}
		}
		if q.Role == RoleInput {
			g.input = q
		} else {
			g.weights = append(g.weights, q)
		}
	}
	groupFormat := map[string]string{}
	for _, key := range order {
		g := groups[key]
		in := Config{}
		if g.input != nil {
			in = g.input.Config
		}
		format := ""
		for i, w := range g.weights {
			f := ModuleFormat(w.Config, in)
			if i == 0 {
				format = f
				continue
			}
			if f != format {
				return unsupportedf(key, "experts have different formats (%s: %s, %s: %s); one fused experts module needs one format (recipe %s)",
					g.weights[0].Name, formatName(format), w.Name, formatName(f), recipe)
			}
		}
		groupFormat[key] = format
		if len(g.weights) == 0 {
			continue
		}
		w := g.weights[0].Config
		switch {
		case format == "" && in.Enable:
			a.InputWithoutWeight = append(a.InputWithoutWeight, key)
		case format == AlgoFP8 && !in.Enable:
			return unsupportedf(key, "FP8 weight-only quantization is not supported: the engines expect a static input scale (enable the input quantizer as fp8) (recipe %s)", recipe)
		case format == AlgoFP8 && !in.IsFP8():
			return unsupportedf(key, "FP8 weights with %s inputs is not supported (recipe %s)", in.Format(), recipe)
		case format == AlgoNVFP4 && !in.IsNVFP4():
			return unsupportedf(key, "NVFP4 weights with %s inputs is not supported (recipe %s)", in.Format(), recipe)
		case format != "" && format != AlgoFP8 && format != AlgoNVFP4 && format != AlgoW4A16NVFP4:
			return unsupportedf(key, "module format %s (weight %s, input %s) is not supported (recipe %s)", format, w.Format(), in.Format(), recipe)
		}
	}
	mods := make([]string, 0, len(modProj))
	for mod := range modProj {
		mods = append(mods, mod)
	}
	sort.Strings(mods)
	for _, mod := range mods {
		keys := modProj[mod]
		for _, k := range keys[1:] {
			if groupFormat[k] != groupFormat[keys[0]] {
				return unsupportedf(mod, "projections have different formats (%s: %s, %s: %s); one fused experts module needs one format (recipe %s)",
					keys[0], formatName(groupFormat[keys[0]]), k, formatName(groupFormat[k]), recipe)
			}
		}
	}
	return nil
}

func formatName(f string) string {
	if f == "" {
		return "unquantized"
	}
	return f
}
