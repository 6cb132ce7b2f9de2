package reports

import (
	"errors"
	"os"
)

func writeString(p, s string) error { return os.WriteFile(p, []byte(s), 0o644) }

func asInvalid(err error, target **InvalidReportError) bool { return errors.As(err, target) }
