package cli

import (
	"encoding/json"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
	"github.com/spf13/cobra"

	"github.com/ptqgate/ptqgate/ptqcore/quant"
)

func init() { register(newRecipesCmd) }

func newRecipesCmd(a *App) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "recipes",
		Short: "List the built-in recipe presets",
		Long: `List the recipe presets that quantize --recipe NAME accepts: the toolkit's
recipe basenames, their newer spellings (aliases), the calibration algorithm
and a one-line description. --recipe also takes a recipe YAML file in the
toolkit's shape; its imports resolve against the file's folder and its
ancestors, then against the units built into ptqgate.

With --json the list is printed as a JSON array of
{"name", "aliases", "description", "algorithm"}.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			presets := quant.Presets()
			if asJSON {
				enc := json.NewEncoder(a.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(presets)
			}
			t := tablewriter.NewTable(a.Stdout,
				tablewriter.WithHeaderAutoFormat(tw.Off),
				tablewriter.WithRowAlignment(tw.AlignLeft),
				tablewriter.WithRowAutoWrap(tw.WrapNone))
			t.Header("preset", "aliases", "algorithm", "description")
			for _, p := range presets {
				if err := t.Append(p.Name, strings.Join(p.Aliases, ", "), p.Algorithm, p.Description); err != nil {
					return err
				}
			}
			return t.Render()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the presets as a JSON array on stdout")
	return c
}
