package cloudservers_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cloudservers/cloudservers"
)

func op(t *testing.T, typ cloudservers.OperationType) cloudservers.OperationDef {
	t.Helper()
	d, ok := cloudservers.LookupOperation(typ)
	require.True(t, ok, "%s is in the table", typ)
	return d
}

func TestOperationStatuses(t *testing.T) {
	on, off, errored := cloudservers.StatusActive, cloudservers.StatusOff, cloudservers.StatusError
	for _, tc := range []struct {
		op                         cloudservers.OperationType
		before                     cloudservers.ServerStatus
		succeeded, failed, inError cloudservers.ServerStatus
	}{
		{cloudservers.OpCreate, cloudservers.StatusQueued, on, errored, errored},
		{cloudservers.OpDelete, on, cloudservers.StatusDeleted, errored, errored},
		{cloudservers.OpReboot, on, on, on, errored},
		{cloudservers.OpPowerOff, on, off, on, errored},
		{cloudservers.OpPowerOn, off, on, off, errored},
		{cloudservers.OpResize, off, off, off, errored},
		{cloudservers.OpResize, on, on, on, errored},
	} {
		d := op(t, tc.op)
		assert.Equal(t, tc.succeeded, d.SucceededStatus(tc.before), "%s from %s succeeded", tc.op, tc.before)
		assert.Equal(t, tc.failed, d.FailedStatus(tc.before, false), "%s from %s failed", tc.op, tc.before)
		assert.Equal(t, tc.inError, d.FailedStatus(tc.before, true), "%s from %s failed, instance in ERROR", tc.op, tc.before)
	}
}

func TestEveryOperationIsWellFormed(t *testing.T) {
	seen := map[cloudservers.OperationType]bool{}
	for _, d := range cloudservers.Operations() {
		assert.False(t, seen[d.Type], "%s listed once", d.Type)
		seen[d.Type] = true
		assert.True(t, d.Running == "" || d.Running.Known(), "%s: running status %q is a known status", d.Type, d.Running)
		for _, s := range append(append([]cloudservers.ServerStatus{}, d.From...), d.Succeeded, d.Failed, d.InstanceError) {
			assert.True(t, s == "" || s.Known(), "%s: status %q is a known status", d.Type, s)
		}
		assert.NotEmpty(t, d.API, "%s is exposed by the API", d.Type)
		if d.API == cloudservers.ExposeAction || d.API == cloudservers.ExposeRename {
			assert.NotEmpty(t, d.CLI.Name, "action %s has a CLI command", d.Type)
		}
	}
}

func TestValidateParams(t *testing.T) {
	cat := cloudservers.DefaultCatalog()
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	assert.NoError(t, op(t, cloudservers.OpPowerOff).ValidateParams(nil, cat))
	assert.ErrorContains(t, op(t, cloudservers.OpPowerOff).ValidateParams(raw(`{"force":true}`), cat), "unknown field")
	assert.ErrorContains(t, op(t, cloudservers.OpResize).ValidateParams(raw(`{"sise":"x"}`), cat), "unknown field")
	var pe *cloudservers.ParamError
	require.True(t, errors.As(op(t, cloudservers.OpResize).ValidateParams(raw(`{"size":"huge"}`), cat), &pe))
	assert.Equal(t, "size", pe.Field)

	var pes cloudservers.ParamErrors
	err := op(t, cloudservers.OpCreate).ValidateParams(raw(`{"name":"-bad","size":"s-1vcpu-64mb","image":"nope","region":"region-one"}`), cat)
	require.True(t, errors.As(err, &pes), "%v", err)
	var fields []string
	for _, p := range pes {
		fields = append(fields, p.Field)
	}
	assert.Equal(t, []string{"name", "image"}, fields, "every bad field, in order")
	assert.NoError(t, op(t, cloudservers.OpCreate).ValidateParams(raw(`{"name":"web-1","size":"s-1vcpu-64mb","image":"tiny","region":"region-one"}`), cat))
}

func TestQuota(t *testing.T) {
	cat := cloudservers.DefaultCatalog()
	srv := cloudservers.Server{Size: "s-1vcpu-64mb"}
	assert.Equal(t, cloudservers.Usage{Servers: 1, VCPUs: 1}, op(t, cloudservers.OpCreate).Quota(cat, cloudservers.Server{}, json.RawMessage(`{"size":"s-1vcpu-64mb"}`)))
	assert.Equal(t, cloudservers.Usage{}, op(t, cloudservers.OpResize).Quota(cat, srv, json.RawMessage(`{"size":"s-1vcpu-128mb"}`)), "same vCPUs: no claim")
}
