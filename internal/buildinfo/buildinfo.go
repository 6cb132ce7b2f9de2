// Package buildinfo holds ptqgate's version, set at link time with
// -ldflags "-X github.com/ptqgate/ptqgate/internal/buildinfo.Version=...".
package buildinfo

// Version is the ptqgate release version.
var Version = "0.1.0"

// Producer is the string ptqgate writes into the safetensors __metadata__
// of the files it creates.
func Producer() string { return "ptqgate " + Version }
