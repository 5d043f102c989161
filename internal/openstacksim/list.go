package openstacksim

import (
	"net/url"
	"sort"
	"time"
)

// What the list calls of Neutron and Glance share: creation order, views
// taken under the lock, filtering and limit/marker paging. Each service
// keeps its own parameters, error bodies and links.

// byCreation returns the values of m oldest first, then by id (the order
// Neutron lists in).
func byCreation[T any](m map[string]*T, key func(*T) (created time.Time, id string)) []*T {
	out := make([]*T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		ti, idi := key(out[i])
		tj, idj := key(out[j])
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return idi < idj
	})
	return out
}

// lockedViews renders, under s.mu, the items list returns with view.
func lockedViews[T any](s *Sim, list func() []T, view func(T) map[string]any) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return viewsOf(list(), view)
}

func viewsOf[T any](items []T, view func(T) map[string]any) []map[string]any {
	out := make([]map[string]any, 0, len(items))
	for _, it := range items {
		out = append(out, view(it))
	}
	return out
}

// filter returns the items keep accepts, in their order.
func filter[T any](items []T, keep func(T) bool) []T {
	var out []T
	for _, it := range items {
		if keep(it) {
			out = append(out, it)
		}
	}
	return out
}

// afterMarker returns the items after the one whose id is marker (all of
// them when marker is empty), and whether that item is there.
func afterMarker[T any](items []T, id func(T) string, marker string) ([]T, bool) {
	if marker == "" {
		return items, true
	}
	for i, it := range items {
		if id(it) == marker {
			return items[i+1:], true
		}
	}
	return nil, false
}

// firstN returns the first n items and whether more follow.
func firstN[T any](items []T, n int) ([]T, bool) {
	if len(items) > n {
		return items[:n], true
	}
	return items, false
}

// withMarker is the query of the next page: q with its marker set.
func withMarker(q url.Values, marker string) string {
	next := url.Values{}
	for k, vs := range q {
		next[k] = vs
	}
	next.Set("marker", marker)
	return next.Encode()
}
