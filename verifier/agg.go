package verifier

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/ptqgate/ptqgate/reports"
)

// idRanges formats sorted ids compactly ("0-3, 7, 9-12"), eliding the
// middle of very long lists.
func idRanges(ids []int) string {
	ids = append([]int(nil), ids...)
	sort.Ints(ids)
	var parts []string
	for i := 0; i < len(ids); {
		j := i
		for j+1 < len(ids) && ids[j+1] == ids[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(ids[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", ids[i], ids[j]))
		}
		i = j + 1
	}
	if len(parts) > 12 {
		parts = append(append(parts[:6], "…"), parts[len(parts)-5:]...)
	}
	return strings.Join(parts, ", ")
}

// group collects findings of one kind so that one finding is emitted per
// group (e.g. all experts of a layer lacking the same tensor).
type group struct {
	rule, tok      string
	sev            reports.Severity
	module, tensor string
	msg            string // message; "%s" is replaced by the id list
	behavior       string
	source         string
	ids            []int
	names          []string
}

// groups is an ordered set of groups.
type groups struct {
	order []string
	m     map[string]*group
}

// add records one occurrence (id ≥ 0 for expert ids, name for tensors);
// the first call for a key fixes the group's fields.
func (gs *groups) add(key string, proto group, id int, name string) {
	if gs.m == nil {
		gs.m = map[string]*group{}
	}
	g := gs.m[key]
	if g == nil {
		p := proto
		g = &p
		gs.m[key] = g
		gs.order = append(gs.order, key)
	}
	if id >= 0 {
		g.ids = append(g.ids, id)
	}
	if name != "" {
		g.names = append(g.names, name)
	}
}

// flush emits one finding per group.
func (gs *groups) flush(v *run) {
	for _, k := range gs.order {
		g := gs.m[k]
		msg := g.msg
		if strings.Contains(msg, "%s") {
			list := idRanges(g.ids)
			if len(g.ids) == 0 {
				list = listNames(g.names)
			}
			msg = strings.Replace(msg, "%s", list, 1)
		}
		if strings.Contains(msg, "%d") {
			n := len(g.ids)
			if n == 0 {
				n = len(g.names)
			}
			msg = strings.Replace(msg, "%d", strconv.Itoa(n), 1)
		}
		v.add(g.rule, g.sev, g.tok, g.tensor, g.module, msg, g.behavior, g.source)
	}
	gs.order, gs.m = nil, nil
}
