package api

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers"
)

func TestBucketRoutesRefuseUntilRead(t *testing.T) {
	r := NewBucketRoutes()
	_, _, _, err := r.Route(context.Background(), 3, time.Millisecond)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeUnavailable || e.RetryAfter == 0 {
		t.Fatalf("before the first read: %v, want service_unavailable with Retry-After", err)
	}
	r.Install(4, cloudservers.DefaultBucketMap(2), nil)
	p, v, release, err := r.Route(context.Background(), 3, time.Millisecond)
	if err != nil || p != 1 || v != 4 {
		t.Fatalf("route bucket 3 = %d, version %d, %v; want partition 1, version 4", p, v, err)
	}
	release()
	r.Unavailable(errors.New("corrupted"))
	if _, _, _, err := r.Route(context.Background(), 3, time.Millisecond); !errors.As(err, &e) || e.Code != CodeUnavailable {
		t.Fatalf("after the map became unreadable: %v, want service_unavailable", err)
	}
}

func TestBucketRoutesFrozenBucketWaitsThenRefuses(t *testing.T) {
	r := NewBucketRoutes()
	m := cloudservers.DefaultBucketMap(2)
	r.Install(5, m, []int{3})
	// Another bucket is routed at once.
	if _, _, release, err := r.Route(context.Background(), 4, time.Millisecond); err != nil {
		t.Fatal(err)
	} else {
		release()
	}
	start := time.Now()
	_, _, _, err := r.Route(context.Background(), 3, 50*time.Millisecond)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeUnavailable || e.RetryAfter != 1 {
		t.Fatalf("frozen bucket: %v, want service_unavailable with Retry-After 1", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("refused after %v, before the freeze wait", d)
	}
	// A move that ends while the mutation waits lets it through, to the
	// new partition.
	done := make(chan struct{})
	var p int32
	var v int64
	go func() {
		defer close(done)
		var release func()
		p, v, release, err = r.Route(context.Background(), 3, 5*time.Second)
		if err == nil {
			release()
		}
	}()
	time.Sleep(20 * time.Millisecond)
	m[3] = 0
	r.Install(6, m, nil)
	<-done
	if err != nil || p != 0 || v != 6 {
		t.Fatalf("after the flip: partition %d version %d %v; want 0, 6", p, v, err)
	}
}

func TestBucketRoutesInstallWaitsForWritesInFlight(t *testing.T) {
	r := StaticBucketRoutes(2)
	_, _, release, err := r.Route(context.Background(), 1, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	installed := make(chan struct{})
	go func() {
		r.Install(1, cloudservers.DefaultBucketMap(3), []int{1})
		close(installed)
	}()
	select {
	case <-installed:
		t.Fatal("Install returned while a write routed by the older version was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	release()
	select {
	case <-installed:
	case <-time.After(5 * time.Second):
		t.Fatal("Install did not return after the write ended")
	}
	if r.Version() != 1 {
		t.Fatalf("version %d, want 1", r.Version())
	}
}
