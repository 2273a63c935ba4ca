package tickets

import (
	"slices"
	"time"
)

// Allowed lists the transition actions (in Actions order) that actor may
// take on t at now and that would change it, so that a page offers only
// those. It runs the same checks as Transition on a copy of t.
func Allowed(t Ticket, actor Actor, now time.Time) []string {
	var out []string
	for _, action := range Actions {
		cp := t
		cp.History = slices.Clone(t.History)
		if changed, err := apply(&cp, action, actor, actor.Name, "", now); err == nil && changed {
			out = append(out, action)
		}
	}
	return out
}
