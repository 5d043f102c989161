package sagatest

import (
	"context"
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cloudservers/cloudservers/activities"
)

// The Cloud stands for every activity (but the reaper's), with the
// activity's signature: Install and Register take the list from
// activities.Activities, so a new activity is one method here.
func TestCloudStandsForEveryActivity(t *testing.T) {
	fakes, err := fakesOf(NewCloud(nil))
	require.NoError(t, err)
	acts := reflect.TypeOf((*activities.Activities)(nil))
	assert.Equal(t, acts.NumMethod()-len(notFaked), len(fakes))
	for name := range notFaked {
		_, ok := acts.MethodByName(name)
		assert.True(t, ok, "notFaked names activity %s, which does not exist", name)
	}
}

type partialCloud struct{ *Cloud }

// CreatePort has the wrong signature.
func (partialCloud) CreatePort(context.Context, string) error { return nil }

func TestAFakeWithoutAnActivityIsRefused(t *testing.T) {
	_, err := fakesOf(struct{}{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "GetNovaServer (no method)")

	_, err = fakesOf(partialCloud{NewCloud(nil)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "CreatePort (is func(context.Context, string) error")
}
