package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ptqgate/ptqgate/ptqcore/quant"
)

func runRecipesCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &App{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	code = a.Run(args)
	return out.String(), errb.String(), code
}

func TestRecipesTable(t *testing.T) {
	out, errOut, code := runRecipesCLI(t, "recipes")
	if code != ExitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, want := range []string{"preset", "aliases", "algorithm", "description"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("header %q lacks %q", lines[1], want)
		}
	}
	for _, p := range quant.Presets() {
		row := ""
		for _, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(strings.Trim(l, "│|")), p.Name+" ") {
				row = l
			}
		}
		if row == "" {
			t.Errorf("no row for %s in\n%s", p.Name, out)
			continue
		}
		for _, want := range append([]string{p.Algorithm, p.Description}, p.Aliases...) {
			if !strings.Contains(row, want) {
				t.Errorf("row %q lacks %q", row, want)
			}
		}
	}
	if !strings.Contains(out, "nvfp4_experts_only-kv_fp8_layerwise") || !strings.Contains(out, "max (layerwise)") {
		t.Errorf("layerwise preset missing:\n%s", out)
	}
}

func TestRecipesJSON(t *testing.T) {
	out, _, code := runRecipesCLI(t, "recipes", "--json")
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	want := quant.Presets()
	if len(got) != len(want) {
		t.Fatalf("%d presets, want %d", len(got), len(want))
	}
	for i, p := range want {
		g := got[i]
		if g["name"] != p.Name || g["description"] != p.Description || g["algorithm"] != p.Algorithm {
			t.Errorf("preset %d = %v, want %+v", i, g, p)
		}
		aliases, ok := g["aliases"].([]any)
		if !ok || len(aliases) != len(p.Aliases) {
			t.Errorf("%s: aliases %v (must be an array, empty when none)", p.Name, g["aliases"])
		}
	}
	if got[0]["name"] != "fp8_default-fp8_kv" || got[0]["aliases"].([]any)[0] != "fp8_default-kv_fp8" {
		t.Errorf("first preset %v", got[0])
	}
}

func TestRecipesUsage(t *testing.T) {
	for _, args := range [][]string{{"recipes", "extra"}, {"recipes", "--bogus"}} {
		if _, _, code := runRecipesCLI(t, args...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, ExitUsage)
		}
	}
	out, _, code := runRecipesCLI(t, "recipes", "--help")
	if code != ExitOK || !strings.Contains(out, "--json") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
}
