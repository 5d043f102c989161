package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cloudservers/cloudservers/internal/telemetry"
)

// TestReadyz: /readyz answers 200 while every dependency answers, and 503
// with Retry-After naming the missing one, its address and its error.
func TestReadyz(t *testing.T) {
	var temporalDown atomic.Bool
	deps := []readiness{
		{"zookeeper", "z1:2181", func(context.Context) error { return nil }},
		{"temporal", "127.0.0.1:7233", func(context.Context) error {
			if temporalDown.Load() {
				return errors.New("connection refused")
			}
			return nil
		}},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	stop, err := serveStatus(addr, slog.New(slog.NewTextHandler(io.Discard, nil)), telemetry.NewRegistry(), deps, nil)
	require.NoError(t, err)
	defer stop()

	get := func() (int, string, map[string]any) {
		resp, err := http.Get("http://" + addr + "/readyz")
		require.NoError(t, err)
		defer resp.Body.Close()
		var body map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		return resp.StatusCode, resp.Header.Get("Retry-After"), body
	}
	code, _, body := get()
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ready", body["status"])
	assert.Equal(t, map[string]any{"zookeeper": "ok", "temporal": "ok"}, body["dependencies"])

	temporalDown.Store(true)
	code, retry, body := get()
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "1", retry)
	assert.Equal(t, []any{"temporal"}, body["missing"])
	assert.Equal(t, "127.0.0.1:7233: connection refused", body["dependencies"].(map[string]any)["temporal"])
	assert.Equal(t, "ok", body["dependencies"].(map[string]any)["zookeeper"])
}

// The worker's readiness names what it has not connected to yet, in the
// order it connects (OpenStack, Kafka, Temporal).
func TestWorkerReadiness(t *testing.T) {
	w := &workerReady{}
	deps := w.deps("k1:9092", "127.0.0.1:7233")
	state, missing := readyReport(context.Background(), deps)
	assert.Equal(t, []string{"openstack", "kafka", "temporal"}, missing)
	assert.Equal(t, "k1:9092: not connected yet (retrying)", state["kafka"])
	w.openstack.Store(true)
	w.kafka.Store(true)
	state, missing = readyReport(context.Background(), deps)
	assert.Equal(t, []string{"temporal"}, missing)
	assert.Equal(t, "ok", state["openstack"])
	assert.Equal(t, "ok", state["kafka"])
}
