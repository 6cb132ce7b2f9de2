package verifier

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ptqgate/ptqgate/reports"
)

// ReportFile is the report ptqgate writes inside an export.
const ReportFile = "ptqgate_report.json"

// constantAmax is the amax of use_constant_amax quantizers, which export
// no scale tensor (INTERFACES.md Recipes).
const constantAmax = 448

// expectedTensors returns the tensors an enabled quantizer must have
// produced in the export (ModelOpt naming, specs/modelopt.md §4.2, §4.5).
func (v *run) expectedTensors(q reports.Quantizer) []string {
	n := q.Name
	cut := func(suffix string) (string, bool) {
		if strings.HasSuffix(n, suffix) {
			return strings.TrimSuffix(n, suffix), true
		}
		return "", false
	}
	var out []string
	scalesFor := func(m string) []string {
		s := []string{m + ".weight_scale"}
		if q.Format == "nvfp4" {
			s = append(s, m+".weight_scale_2")
		}
		return s
	}
	if i := strings.LastIndexByte(n, '.'); i > 0 && isDigits(n[i+1:]) {
		e, _ := strconv.Atoi(n[i+1:])
		base := n[:i]
		for _, proj := range []struct{ q, projs string }{
			{".gate_up_proj_weight_quantizers", "gate_proj,up_proj"},
			{".up_proj_weight_quantizers", "up_proj"},
			{".down_proj_weight_quantizers", "down_proj"},
		} {
			if c, ok := strings.CutSuffix(base, proj.q); ok {
				for _, p := range strings.Split(proj.projs, ",") {
					out = append(out, scalesFor(fmt.Sprintf("%s.%d.%s", c, e, p))...)
				}
				return out
			}
		}
		return nil
	}
	experts := func(container, projs, param string) []string {
		var o []string
		for e := 0; e < v.geo.experts; e++ {
			for _, p := range strings.Split(projs, ",") {
				o = append(o, fmt.Sprintf("%s.%d.%s.%s", container, e, p, param))
			}
		}
		return o
	}
	if c, ok := cut(".gate_up_proj_input_quantizer"); ok {
		return experts(c, "gate_proj,up_proj", "input_scale")
	}
	if c, ok := cut(".up_proj_input_quantizer"); ok {
		return experts(c, "up_proj", "input_scale")
	}
	if c, ok := cut(".down_proj_input_quantizer"); ok {
		return experts(c, "down_proj", "input_scale")
	}
	if m, ok := cut(".weight_quantizer"); ok {
		return scalesFor(m)
	}
	if m, ok := cut(".input_quantizer"); ok {
		return []string{m + ".input_scale"}
	}
	if a, ok := cut(".k_bmm_quantizer"); ok {
		return []string{a + ".k_proj.k_scale"}
	}
	if a, ok := cut(".v_bmm_quantizer"); ok {
		return []string{a + ".v_proj.v_scale"}
	}
	return nil
}

// checkReport cross-checks ptqgate_report.json, when the folder has one:
// every quantizer it says was enabled must have produced its tensors.
func (v *run) checkReport(dir string) {
	path := filepath.Join(dir, ReportFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return
	}
	v.evaluated("report.unreadable", reports.TargetAny)
	r, err := reports.ReadFile(path)
	if err != nil {
		v.addAny("report.unreadable", reports.SeverityError, "", "", fmt.Sprintf("%s: %v", ReportFile, err), "")
		return
	}
	v.evaluated("report.missing-tensor", reports.TargetAny)
	var gs groups
	for _, q := range r.Quantizers {
		if !q.Enabled || q.Format == "none" || strings.HasSuffix(q.Name, "output_quantizer") {
			continue
		}
		var missing []string
		for _, name := range v.expectedTensors(q) {
			if _, ok := v.ck.tensors[name]; !ok {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 {
			if strings.HasSuffix(q.Name, "weight_quantizer") || strings.Contains(q.Name, "weight_quantizers.") {
				// The weight itself must be stored quantized.
				for _, name := range v.expectedTensors(q) {
					m := v.mods.byName[strings.TrimSuffix(strings.TrimSuffix(name, "_2"), ".weight_scale")]
					if m != nil && m.stored() == fmtBF16 {
						missing = append(missing, m.name+".weight (stored unquantized)")
					}
				}
			}
			if len(missing) == 0 {
				continue
			}
		}
		if q.Amax != nil && q.Amax.PerTensor && len(q.Amax.Values) == 1 && float64(q.Amax.Values[0]) == constantAmax && !strings.Contains(q.Name, "weight_quantizer") {
			continue // constant amax: the toolkit exports no scale tensor
		}
		pat := namePattern(q.Name)
		gs.add(pat, group{rule: "report.missing-tensor", tok: reports.TargetAny, sev: reports.SeverityError, tensor: missing[0], module: q.Name,
			msg:      fmt.Sprintf("%s says %%d quantizers like %s were enabled (%s), but the export lacks their tensors (e.g. %s): %%s", ReportFile, pat, q.Format, missing[0]),
			behavior: "the engines never see the scale (uninitialised or default parameter): the quantized module loads with wrong numbers"}, -1, q.Name)
	}
	gs.flush(v)
}
