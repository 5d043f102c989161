package zkcoord

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Assignment maps each partition of the requests topic to its ordered
// candidates: [primary, partner, further partners...]. It is configuration,
// the same in every process. In JSON it is an object keyed by partition
// number: {"0": ["bridge-a", "bridge-b"], "1": ["bridge-b", "bridge-a"]}.
type Assignment map[int32][]string

// DefaultAssignment spreads partitions over two processes: partition p has
// primary a when p is even and b when it is odd, the other as its partner.
func DefaultAssignment(partitions int32, a, b string) Assignment {
	out := make(Assignment, partitions)
	for p := range partitions {
		if p%2 == 0 {
			out[p] = []string{a, b}
		} else {
			out[p] = []string{b, a}
		}
	}
	return out
}

// Validate reports every reason the assignment cannot work for a topic with
// the given number of partitions and the given set of processes: a
// partition without candidates, a partition the topic does not have, a
// process listed twice for one partition (or as its own partner), an
// unknown or invalid process name.
func (a Assignment) Validate(partitions int32, processes []string) error {
	var errs []error
	if partitions <= 0 {
		errs = append(errs, fmt.Errorf("the topic must have at least one partition, not %d", partitions))
	}
	if len(processes) == 0 {
		errs = append(errs, errors.New("no processes configured"))
	}
	for i, p := range processes {
		if err := checkNodeName(p); err != nil {
			errs = append(errs, fmt.Errorf("process %q: invalid name: %w", p, err))
		}
		if slices.Contains(processes[:i], p) {
			errs = append(errs, fmt.Errorf("process %q is configured twice", p))
		}
	}
	for p := range partitions {
		if len(a[p]) == 0 {
			errs = append(errs, fmt.Errorf("partition %d has no owner: list at least a primary", p))
		}
	}
	for _, p := range a.Partitions() {
		cands := a[p]
		if p < 0 || p >= partitions {
			errs = append(errs, fmt.Errorf("partition %d is outside the topic (partitions 0..%d)", p, partitions-1))
		}
		for i, c := range cands {
			switch {
			case c == "":
				errs = append(errs, fmt.Errorf("partition %d: candidate %d is empty", p, i+1))
				continue
			case !slices.Contains(processes, c):
				errs = append(errs, fmt.Errorf("partition %d: unknown process %q (known: %s)", p, c, strings.Join(processes, ", ")))
			}
			if j := slices.Index(cands[:i], c); j >= 0 {
				if j == 0 {
					errs = append(errs, fmt.Errorf("partition %d: process %q is listed as its own partner", p, c))
				} else {
					errs = append(errs, fmt.Errorf("partition %d: process %q is listed twice", p, c))
				}
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid partition assignment: %w", errors.Join(errs...))
}

// Partitions lists the assignment's partitions in ascending order.
func (a Assignment) Partitions() []int32 {
	out := make([]int32, 0, len(a))
	for p := range a {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// PartitionsOf lists, in ascending order, the partitions for which process
// is a candidate (primary or partner).
func (a Assignment) PartitionsOf(process string) []int32 {
	var out []int32
	for _, p := range a.Partitions() {
		if slices.Contains(a[p], process) {
			out = append(out, p)
		}
	}
	return out
}

// Primary is the partition's first candidate ("" when it has none).
func (a Assignment) Primary(partition int32) string {
	if c := a[partition]; len(c) > 0 {
		return c[0]
	}
	return ""
}
