package quant

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// builtin is the embedded recipe tree: presets under general/ptq, units
// under configs/.
//
//go:embed recipes
var builtin embed.FS

const builtinRoot = "recipes"

// srcFile is a YAML file on disk or in the embedded tree.
type srcFile struct {
	path     string // absolute disk path, or a slash path under builtinRoot
	embedded bool
}

// display names the file in messages.
func (f srcFile) display() string {
	if f.embedded {
		return "ptqgate:" + strings.TrimPrefix(f.path, builtinRoot+"/")
	}
	return f.path
}

func (f srcFile) read() ([]byte, error) {
	if f.embedded {
		return builtin.ReadFile(f.path)
	}
	return os.ReadFile(f.path)
}

// nodeKind is the shape of a YAML value.
type nodeKind int

const (
	kindNull nodeKind = iota
	kindScalar
	kindMap
	kindList
)

// node is a YAML value with its source position; mapping keys keep their
// order.
type node struct {
	kind  nodeKind
	tag   string // scalar tag: !!str, !!int, !!float, !!bool
	text  string // scalar text
	keys  []string
	vals  []*node
	items []*node
	file  srcFile
	line  int
}

func (n *node) get(key string) *node {
	for i, k := range n.keys {
		if k == key {
			return n.vals[i]
		}
	}
	return nil
}

func (n *node) has(key string) bool {
	for _, k := range n.keys {
		if k == key {
			return true
		}
	}
	return false
}

func (n *node) describe() string {
	switch n.kind {
	case kindNull:
		return "null"
	case kindMap:
		return "a mapping"
	case kindList:
		return "a list"
	}
	return fmt.Sprintf("%q", n.text)
}

// maxNodes bounds the values one file may expand to (aliases included), so
// that an alias bomb is an error rather than an out-of-memory crash.
const maxNodes = 1 << 18

// fromYAML converts a yaml.Node into a node, rejecting duplicate keys;
// budget counts down the values still allowed.
func fromYAML(y *yaml.Node, f srcFile, depth int, budget *int) (*node, error) {
	if *budget--; *budget < 0 {
		return nil, &RecipeError{File: f.display(), Line: y.Line, Msg: fmt.Sprintf("YAML expands to more than %d values (alias bomb?)", maxNodes)}
	}
	if depth > 100 {
		return nil, &RecipeError{File: f.display(), Line: y.Line, Msg: "YAML nested too deeply"}
	}
	for y.Kind == yaml.AliasNode {
		if y.Alias == nil {
			return nil, &RecipeError{File: f.display(), Line: y.Line, Msg: "dangling YAML alias"}
		}
		y = y.Alias
		depth++
		if depth > 100 {
			return nil, &RecipeError{File: f.display(), Line: y.Line, Msg: "YAML aliases nested too deeply"}
		}
	}
	n := &node{file: f, line: y.Line}
	switch y.Kind {
	case yaml.DocumentNode:
		if len(y.Content) == 0 {
			return n, nil
		}
		return fromYAML(y.Content[0], f, depth+1, budget)
	case yaml.ScalarNode:
		if y.ShortTag() == "!!null" {
			return n, nil
		}
		n.kind, n.tag, n.text = kindScalar, y.ShortTag(), y.Value
	case yaml.SequenceNode:
		n.kind = kindList
		for _, c := range y.Content {
			item, err := fromYAML(c, f, depth+1, budget)
			if err != nil {
				return nil, err
			}
			n.items = append(n.items, item)
		}
	case yaml.MappingNode:
		n.kind = kindMap
		for i := 0; i+1 < len(y.Content); i += 2 {
			k, v := y.Content[i], y.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return nil, &RecipeError{File: f.display(), Line: k.Line, Msg: "mapping keys must be scalars"}
			}
			if n.has(k.Value) {
				return nil, &RecipeError{File: f.display(), Line: k.Line, Key: k.Value, Msg: "duplicate key"}
			}
			val, err := fromYAML(v, f, depth+1, budget)
			if err != nil {
				return nil, err
			}
			n.keys = append(n.keys, k.Value)
			n.vals = append(n.vals, val)
		}
	default:
		return nil, &RecipeError{File: f.display(), Line: y.Line, Msg: "unsupported YAML node"}
	}
	return n, nil
}

// yamlFile is a parsed recipe or unit file.
type yamlFile struct {
	file    srcFile
	schema  string // last component of the # modelopt-schema: comment, "" if none
	imports map[string]string
	payload *node
}

// Schema names (last component of the modelopt-schema path).
const (
	schemaEntry     = "QuantizerCfgEntry"
	schemaEntryList = "QuantizerCfgListConfig"
	schemaAttribute = "QuantizerAttributeConfig"
)

// parseFile reads one or two YAML documents: a payload, or an imports mapping
// followed by a payload.
func parseFile(f srcFile) (*yamlFile, error) {
	data, err := f.read()
	if err != nil {
		return nil, err
	}
	yf := &yamlFile{file: f}
	if yf.schema, err = schemaComment(data, f); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*node
	budget := maxNodes
	for {
		var y yaml.Node
		err := dec.Decode(&y)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, &RecipeError{File: f.display(), Msg: "YAML does not parse: " + strings.TrimPrefix(err.Error(), "yaml: ")}
		}
		if len(docs) == 2 {
			return nil, &RecipeError{File: f.display(), Line: y.Line, Msg: "more than two YAML documents"}
		}
		n, err := fromYAML(&y, f, 0, &budget)
		if err != nil {
			return nil, err
		}
		docs = append(docs, n)
	}
	var head *node
	switch len(docs) {
	case 0:
		return nil, &RecipeError{File: f.display(), Msg: "empty file"}
	case 1:
		yf.payload = docs[0]
		if yf.payload.kind == kindMap && yf.payload.has("imports") {
			head = yf.payload
		}
	case 2:
		head, yf.payload = docs[0], docs[1]
		if head.kind != kindMap {
			return nil, &RecipeError{File: f.display(), Line: head.line, Msg: "the first of two YAML documents must be a mapping holding imports"}
		}
		for _, k := range head.keys {
			if k != "imports" {
				return nil, &RecipeError{File: f.display(), Line: head.line, Key: k, Msg: "unknown key in the imports document (only imports is allowed)"}
			}
		}
	}
	if yf.payload.kind != kindMap && yf.payload.kind != kindList {
		return nil, &RecipeError{File: f.display(), Line: yf.payload.line, Msg: "the file must hold a mapping or a list, not " + yf.payload.describe()}
	}
	if head != nil {
		imp := head.get("imports")
		if imp.kind != kindMap {
			return nil, &RecipeError{File: f.display(), Line: imp.line, Key: "imports", Msg: "must be a mapping of alias to unit path, not " + imp.describe()}
		}
		yf.imports = map[string]string{}
		for i, alias := range imp.keys {
			v := imp.vals[i]
			if v.kind != kindScalar || v.text == "" {
				return nil, &RecipeError{File: f.display(), Line: v.line, Key: "imports." + alias, Msg: "import path must be a non-empty string, not " + v.describe()}
			}
			yf.imports[alias] = v.text
		}
	}
	return yf, nil
}

// schemaComment reads "# modelopt-schema: <path>" from the leading comment
// block and returns the path's last component.
func schemaComment(data []byte, f srcFile) (string, error) {
	schema := ""
	for _, line := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(line)
		if t == "" {
			continue
		}
		if !strings.HasPrefix(t, "#") {
			break
		}
		rest := strings.TrimSpace(strings.TrimPrefix(t, "#"))
		if !strings.HasPrefix(rest, "modelopt-schema:") {
			continue
		}
		if schema != "" {
			return "", &RecipeError{File: f.display(), Msg: "more than one modelopt-schema comment"}
		}
		p := strings.TrimSpace(strings.TrimPrefix(rest, "modelopt-schema:"))
		if p == "" {
			return "", &RecipeError{File: f.display(), Msg: "empty modelopt-schema comment"}
		}
		schema = p[strings.LastIndex(p, ".")+1:]
	}
	return schema, nil
}

// resolver resolves $import references.
type resolver struct {
	stack []string // files being resolved, for cycle detection
	cache map[string]*node
	files map[string]*yamlFile
}

func newResolver() *resolver {
	return &resolver{cache: map[string]*node{}, files: map[string]*yamlFile{}}
}

// locate finds the unit file an import path names: relative to the
// importing file's folder and each ancestor folder, then in the embedded
// tree; ".yaml" and ".yml" may be omitted.
func locate(from srcFile, ref string) (srcFile, []string, error) {
	exts := []string{".yaml", ".yml", ""}
	var searched []string
	if !from.embedded {
		if filepath.IsAbs(ref) {
			for _, e := range exts {
				p := filepath.Clean(ref + e)
				if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
					return srcFile{path: p}, nil, nil
				}
			}
			return srcFile{}, []string{ref}, nil
		}
		dir := filepath.Dir(from.path)
		for {
			searched = append(searched, dir)
			for _, e := range exts {
				p := filepath.Join(dir, filepath.FromSlash(ref)+e)
				if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
					return srcFile{path: p}, nil, nil
				}
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	clean := path.Clean(strings.TrimPrefix(filepath.ToSlash(ref), "/"))
	if !strings.HasPrefix(clean, "../") && clean != ".." {
		for _, e := range exts {
			p := builtinRoot + "/" + clean + e
			if st, err := fs.Stat(builtin, p); err == nil && st.Mode().IsRegular() {
				return srcFile{path: p, embedded: true}, nil, nil
			}
		}
	}
	searched = append(searched, "ptqgate's built-in units")
	return srcFile{}, searched, nil
}

// loadUnit parses and resolves an imported file and returns its payload.
func (r *resolver) loadUnit(from *node, alias, ref string) (*node, *yamlFile, error) {
	f, searched, _ := locate(from.file, ref)
	if f.path == "" {
		return nil, nil, &RecipeError{File: from.file.display(), Line: from.line, Key: "$import " + alias,
			Msg: fmt.Sprintf("cannot find unit %q (searched %s)", ref, strings.Join(searched, ", "))}
	}
	id := f.display()
	for _, s := range r.stack {
		if s == id {
			return nil, nil, &RecipeError{File: from.file.display(), Line: from.line, Key: "$import " + alias,
				Msg: "circular import: " + strings.Join(append(append([]string{}, r.stack...), id), " -> ")}
		}
	}
	if n, ok := r.cache[id]; ok {
		return n, r.files[id], nil
	}
	yf, err := parseFile(f)
	if err != nil {
		return nil, nil, err
	}
	r.stack = append(r.stack, id)
	n, err := r.resolve(yf.payload, yf)
	r.stack = r.stack[:len(r.stack)-1]
	if err != nil {
		return nil, nil, err
	}
	r.cache[id], r.files[id] = n, yf
	return n, yf, nil
}

// importNames reads the value of a $import key: one alias or a list.
func importNames(v *node) ([]string, error) {
	switch v.kind {
	case kindScalar:
		return []string{v.text}, nil
	case kindList:
		var names []string
		for _, it := range v.items {
			if it.kind != kindScalar {
				return nil, &RecipeError{File: v.file.display(), Line: it.line, Key: "$import", Msg: "import names must be strings, not " + it.describe()}
			}
			names = append(names, it.text)
		}
		return names, nil
	}
	return nil, &RecipeError{File: v.file.display(), Line: v.line, Key: "$import", Msg: "must name an import, not " + v.describe()}
}

func (r *resolver) lookup(n *node, yf *yamlFile, alias string) (string, error) {
	if yf.imports == nil {
		return "", &RecipeError{File: n.file.display(), Line: n.line, Key: "$import " + alias, Msg: "the file declares no imports"}
	}
	ref, ok := yf.imports[alias]
	if !ok {
		return "", &RecipeError{File: n.file.display(), Line: n.line, Key: "$import " + alias, Msg: "not declared under imports"}
	}
	return ref, nil
}

// resolve returns n with every $import replaced. The top-level imports key
// of a file is dropped from its payload.
func (r *resolver) resolve(n *node, yf *yamlFile) (*node, error) {
	switch n.kind {
	case kindMap:
		out := &node{kind: kindMap, file: n.file, line: n.line}
		if imp := n.get("$import"); imp != nil {
			err := r.eachImport(imp, yf, func(alias string, u *node, uf *yamlFile) error {
				if u.kind != kindMap || uf.schema == schemaEntryList {
					return &RecipeError{File: imp.file.display(), Line: imp.line, Key: "$import " + alias,
						Msg: fmt.Sprintf("unit %s holds a list; a mapping import needs a mapping", uf.file.display())}
				}
				for i, k := range u.keys {
					out.set(k, u.vals[i])
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		for i, k := range n.keys {
			if k == "$import" || (k == "imports" && n == yf.payload) {
				continue
			}
			v, err := r.resolve(n.vals[i], yf)
			if err != nil {
				return nil, err
			}
			out.set(k, v)
		}
		return out, nil
	case kindList:
		out := &node{kind: kindList, file: n.file, line: n.line}
		for _, it := range n.items {
			imp := (*node)(nil)
			if it.kind == kindMap {
				imp = it.get("$import")
			}
			if imp == nil {
				v, err := r.resolve(it, yf)
				if err != nil {
					return nil, err
				}
				out.items = append(out.items, v)
				continue
			}
			if len(it.keys) != 1 {
				return nil, &RecipeError{File: it.file.display(), Line: it.line, Key: "$import",
					Msg: "a list-entry import must be a mapping whose only key is $import; write the entry inline to change it"}
			}
			err := r.eachImport(imp, yf, func(alias string, u *node, uf *yamlFile) error {
				switch {
				case uf.schema == schemaAttribute:
					return &RecipeError{File: imp.file.display(), Line: imp.line, Key: "$import " + alias,
						Msg: fmt.Sprintf("unit %s is a QuantizerAttributeConfig (a cfg), not a quant_cfg entry; import it under cfg", uf.file.display())}
				case u.kind == kindList && uf.schema != schemaEntry:
					out.items = append(out.items, u.items...)
				case u.kind == kindMap && uf.schema != schemaEntryList:
					out.items = append(out.items, u)
				default:
					return &RecipeError{File: imp.file.display(), Line: imp.line, Key: "$import " + alias,
						Msg: fmt.Sprintf("unit %s declares %s but holds %s", uf.file.display(), uf.schema, u.describe())}
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return n, nil
}

// eachImport resolves and loads, in order, every unit that the $import
// value imp names and passes it to use with its alias; the first error
// stops it.
func (r *resolver) eachImport(imp *node, yf *yamlFile, use func(alias string, u *node, uf *yamlFile) error) error {
	names, err := importNames(imp)
	if err != nil {
		return err
	}
	for _, alias := range names {
		ref, err := r.lookup(imp, yf, alias)
		if err != nil {
			return err
		}
		u, uf, err := r.loadUnit(imp, alias, ref)
		if err != nil {
			return err
		}
		if err := use(alias, u, uf); err != nil {
			return err
		}
	}
	return nil
}

// set adds or replaces a key (an inline key overrides an imported one).
func (n *node) set(k string, v *node) {
	for i, key := range n.keys {
		if key == k {
			n.vals[i] = v
			return
		}
	}
	n.keys = append(n.keys, k)
	n.vals = append(n.vals, v)
}
