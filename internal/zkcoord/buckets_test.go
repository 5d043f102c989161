package zkcoord

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeBucketMap(t *testing.T) {
	good := `{"version":3,"partitions":2,"buckets":[0,1,0,1]}`
	m, err := DecodeBucketMap("/m", []byte(good), 4)
	if err != nil || m.Version != 3 || m.Partition(1) != 1 || m.Frozen(1) {
		t.Fatalf("good map: %+v %v", m, err)
	}
	moving := `{"version":4,"partitions":3,"buckets":[0,1,0,1],"move":{"buckets":[1],"from":[1],"to":2,"since":"2026-12-02T00:00:00Z","by":"x"}}`
	if m, err := DecodeBucketMap("/m", []byte(moving), 4); err != nil || !m.Frozen(1) || m.Frozen(0) {
		t.Fatalf("map with a move: %+v %v", m, err)
	}
	for name, tc := range map[string]struct{ data, want string }{
		"not JSON":          {`garbage`, "not a bucket map JSON object"},
		"unknown field":     {`{"version":1,"partitions":1,"buckets":[0,0,0,0],"extra":1}`, "unknown field"},
		"too few buckets":   {`{"version":1,"partitions":2,"buckets":[0,1]}`, "2 buckets (want 4)"},
		"outside partition": {`{"version":1,"partitions":2,"buckets":[0,1,2,0]}`, "bucket 2 maps to partition 2"},
		"no version":        {`{"partitions":2,"buckets":[0,1,0,1]}`, "version 0"},
		"no partitions":     {`{"version":1,"partitions":0,"buckets":[0,0,0,0]}`, "partitions 0"},
		"bad move":          {`{"version":1,"partitions":2,"buckets":[0,1,0,1],"move":{"buckets":[9],"from":[0],"to":5}}`, "partition 5"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeBucketMap("/m", []byte(tc.data), 4)
			var corrupt *CorruptBucketMapError
			if !errors.As(err, &corrupt) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "mutations are refused") {
				t.Fatalf("error %v, want a CorruptBucketMapError mentioning %q", err, tc.want)
			}
		})
	}
}
