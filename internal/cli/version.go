package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/ptqgate/ptqgate/internal/buildinfo"
)

func init() { register(newVersionCmd) }

func newVersionCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the ptqgate version",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(a.Stdout, "ptqgate %s (%s, %s/%s)\n", buildinfo.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
