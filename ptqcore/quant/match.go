package quant

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// Match reports whether name matches the fnmatch pattern exactly as Python's
// fnmatch.fnmatchcase does: "*" matches any run of characters including dots,
// "?" one character, "[seq]" / "[!seq]" a character class (ranges allowed, an
// unclosed "[" is a literal), everything else literally; the whole name must
// match.
func Match(pattern, name string) bool { return compilePattern(pattern)(name) }

// compilePattern returns a matcher for an fnmatch pattern.
func compilePattern(pattern string) func(string) bool {
	if !strings.ContainsAny(pattern, "?[") {
		parts := strings.Split(pattern, "*")
		return func(name string) bool { return starMatch(parts, name) }
	}
	return compiled(pattern).MatchString
}

// starMatch matches a pattern whose only wildcard is "*", given as the
// literal parts between the stars, without regexps.
func starMatch(parts []string, name string) bool {
	if len(parts) == 1 {
		return parts[0] == name
	}
	first, last := parts[0], parts[len(parts)-1]
	if !strings.HasPrefix(name, first) {
		return false
	}
	name = name[len(first):]
	if len(name) < len(last) || !strings.HasSuffix(name, last) {
		return false
	}
	name = name[:len(name)-len(last)]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(name, p)
		if i < 0 {
			return false
		}
		name = name[i+len(p):]
	}
	return true
}

var patternCache sync.Map // pattern -> *regexp.Regexp

func compiled(pattern string) *regexp.Regexp {
	if re, ok := patternCache.Load(pattern); ok {
		return re.(*regexp.Regexp)
	}
	re := regexp.MustCompile(translate(pattern))
	patternCache.Store(pattern, re)
	return re
}

// translate turns an fnmatch pattern into an anchored RE2 expression,
// following CPython's fnmatch.translate.
func translate(pat string) string {
	rs := []rune(pat)
	var b strings.Builder
	b.WriteString(`^(?s:`)
	n := len(rs)
	for i := 0; i < n; {
		c := rs[i]
		i++
		switch c {
		case '*':
			for i < n && rs[i] == '*' {
				i++
			}
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '[':
			j := i
			if j < n && rs[j] == '!' {
				j++
			}
			if j < n && rs[j] == ']' {
				j++
			}
			for j < n && rs[j] != ']' {
				j++
			}
			if j >= n {
				b.WriteString(`\[`)
				continue
			}
			b.WriteString(charClass(rs[i:j]))
			i = j + 1
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`)$`)
	return b.String()
}

// charClass translates the inside of an fnmatch "[...]" (without brackets).
func charClass(stuff []rune) string {
	neg := false
	if len(stuff) > 0 && stuff[0] == '!' {
		neg = true
		stuff = stuff[1:]
	}
	var items []string
	for k := 0; k < len(stuff); k++ {
		// A range a-b needs a character on both sides of the hyphen; a
		// hyphen at either end is literal.
		if k+2 < len(stuff) && stuff[k+1] == '-' {
			lo, hi := stuff[k], stuff[k+2]
			if lo <= hi {
				items = append(items, fmt.Sprintf(`\x{%x}-\x{%x}`, lo, hi))
			}
			k += 2
			continue
		}
		items = append(items, fmt.Sprintf(`\x{%x}`, stuff[k]))
	}
	switch {
	case len(items) == 0 && !neg:
		return `[^\x00-\x{10FFFF}]` // empty class: never matches
	case len(items) == 0:
		return `.`
	case neg:
		return `[^` + strings.Join(items, "") + `]`
	}
	return `[` + strings.Join(items, "") + `]`
}

// Singular returns the name with ModelOpt's singular normalization (#1340):
// every "weight_quantizers.<n>", "weight_quantizer.<n>", "input_quantizers.<n>"
// or "input_quantizer.<n>" followed by the end of the name or a dot becomes
// "weight_quantizer" / "input_quantizer", so
// "…gate_up_proj_weight_quantizers.3" reads "…gate_up_proj_weight_quantizer".
// It is Python's re.sub(r"(weight_quantizers?|input_quantizers?)\.\d+(?=$|\.)").
func Singular(name string) string {
	var b strings.Builder
	rest := name
	changed := false
	for {
		i, end, repl := nextPlural(rest)
		if i < 0 {
			break
		}
		b.WriteString(rest[:i])
		b.WriteString(repl)
		rest = rest[end:]
		changed = true
	}
	if !changed {
		return name
	}
	b.WriteString(rest)
	return b.String()
}

// nextPlural finds the leftmost normalizable "(weight|input)_quantizer[s].<digits>"
// in s; it returns its start and end and the singular replacement, or -1.
func nextPlural(s string) (start, end int, repl string) {
	for off := 0; off < len(s); {
		wi := strings.Index(s[off:], "weight_quantizer")
		ii := strings.Index(s[off:], "input_quantizer")
		i, word := wi, "weight_quantizer"
		if i < 0 || (ii >= 0 && ii < i) {
			i, word = ii, "input_quantizer"
		}
		if i < 0 {
			return -1, 0, ""
		}
		i += off
		j := i + len(word)
		// Python's alternation tries "quantizers" first, then "quantizer".
		for _, k := range []int{j + 1, j} {
			if k == j+1 && (k > len(s) || s[j] != 's') {
				continue
			}
			if e := digitsRun(s, k); e > 0 {
				return i, e, word
			}
		}
		off = i + 1
	}
	return -1, 0, ""
}

// digitsRun checks for ".<digits>" at s[k:] followed by the end or a dot and
// returns the index after the digits, or -1.
func digitsRun(s string, k int) int {
	if k >= len(s) || s[k] != '.' {
		return -1
	}
	e := k + 1
	for e < len(s) && s[e] >= '0' && s[e] <= '9' {
		e++
	}
	if e == k+1 || (e < len(s) && s[e] != '.') {
		return -1
	}
	return e
}

// matchSingular tries the singular form when it differs from the name.
func matchSingular(m func(string) bool, name, singular string) bool {
	return singular != name && m(singular)
}
