package workflows_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/workflows/sagatest"
)

// What each saga hands to OpenStack and returns, beyond the generated
// failure tables.

func args(c *sagatest.Cloud, name string) []any {
	var out []any
	for _, call := range c.Calls() {
		if call.Name == name {
			out = append(out, call.Arg)
		}
	}
	return out
}

func TestCreateSaga(t *testing.T) {
	t.Run("wires the resources together and returns the server", func(t *testing.T) {
		o := createSaga.Run(t, nil)
		require.NoError(t, o.Err)
		c := o.Cloud
		assert.Equal(t, []any{activities.CreatePortInput{ServerID: serverID, CustomerID: customerID, Region: "region-one"}}, args(c, "CreatePort"))
		assert.Equal(t, []any{activities.CreateNovaServerInput{ServerID: serverID, CustomerID: customerID, Size: "s-1vcpu-64mb", Image: "tiny", PortID: sagatest.PortID(serverID)}}, args(c, "CreateNovaServer"))
		assert.Equal(t, []any{activities.AllocateFloatingIPInput{ServerID: serverID, Region: "region-one"}}, args(c, "AllocateFloatingIP"))
		assert.Equal(t, []any{activities.AssociateFloatingIPInput{FloatingIPID: sagatest.FloatingIPID(serverID), PortID: sagatest.PortID(serverID)}}, args(c, "AssociateFloatingIP"))

		s := o.Result.Server
		assert.Equal(t, sagatest.InstanceID(serverID), s.NovaInstanceID)
		assert.Equal(t, sagatest.PortID(serverID), s.PortID)
		assert.Equal(t, sagatest.PrivateIP, s.PrivateIPv4)
		assert.Equal(t, sagatest.FloatingIPID(serverID), s.FloatingIPID)
		assert.Equal(t, sagatest.PublicIP, s.PublicIPv4)
		assert.Equal(t, "web-1", s.Name)
	})

	t.Run("compensations undo exactly what was made", func(t *testing.T) {
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Fail("AssociateFloatingIP", sagatest.NonRetryable("port has no fixed IP"))
		})
		sagatest.RequireStepFailure(t, o.Err)
		c := o.Cloud
		assert.Equal(t, []any{sagatest.FloatingIPID(serverID)}, args(c, "ReleaseFloatingIP"))
		assert.Equal(t, []any{sagatest.InstanceID(serverID)}, args(c, "DeleteNovaServer"))
		assert.Equal(t, []any{sagatest.PortID(serverID)}, args(c, "DeletePort"))
		assert.Empty(t, args(c, "DisassociateFloatingIP"), "the association failed: nothing to disassociate")
	})

	t.Run("a compensation that fails is reported and the others still run", func(t *testing.T) {
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Fail("AssociateFloatingIP", sagatest.NonRetryable("port has no fixed IP"))
			c.Fail("ReleaseFloatingIP", sagatest.NonRetryable("floating IP is in use"))
		})
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Equal(t, []string{"ReleaseFloatingIP", "DeleteNovaServer", "DeletePort"}, f.Compensations)
		assert.Equal(t, []string{"ReleaseFloatingIP: floating IP is in use"}, f.CompensationErrors)
		after, _ := o.Cloud.CallsAfterFailure()
		assert.Equal(t, []string{"ReleaseFloatingIP", "DeleteNovaServer", "DeletePort"}, after)
		assert.Contains(t, o.Err.Error(), "compensation errors: ReleaseFloatingIP: floating IP is in use")
	})

	t.Run("a compensation failing with a retryable error is retried until it succeeds", func(t *testing.T) {
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Fail("AllocateFloatingIP", sagatest.NonRetryable("quota exceeded"))
			c.Fail("DeletePort", sagatest.Retryable("neutron 503"), sagatest.Retryable("neutron 503"))
		})
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Empty(t, f.CompensationErrors)
		assert.Equal(t, 3, o.Cloud.Count("DeletePort"))
	})
}

func TestDeleteSaga(t *testing.T) {
	t.Run("removes everything and returns the server without public IP (the lifecycle marks it deleted)", func(t *testing.T) {
		o := deleteSaga.Run(t, nil)
		require.NoError(t, o.Err)
		c := o.Cloud
		assert.Equal(t, []any{sagatest.FloatingIPID(serverID)}, args(c, "DisassociateFloatingIP"))
		assert.Equal(t, []any{sagatest.FloatingIPID(serverID)}, args(c, "ReleaseFloatingIP"))
		assert.Equal(t, []any{sagatest.InstanceID(serverID)}, args(c, "DeleteNovaServer"))
		assert.Equal(t, []any{sagatest.PortID(serverID)}, args(c, "DeletePort"))
		assert.Empty(t, o.Result.Server.PublicIPv4)
		assert.Empty(t, o.Result.Server.FloatingIPID)
	})

	t.Run("a server without a floating IP on record: a leftover one is found and released", func(t *testing.T) {
		s := deleteSaga
		s.Input.Server.FloatingIPID, s.Input.Server.PublicIPv4 = "", ""
		s.Setup = func(c *sagatest.Cloud) {
			c.LeftoverFloatingIP(activities.FloatingIP{ID: "fip-leftover", Address: "203.0.113.99"})
		}
		o := s.Run(t, nil)
		require.NoError(t, o.Err)
		assert.Equal(t, []string{"FindFloatingIP", "DisassociateFloatingIP", "ReleaseFloatingIP", "DeleteNovaServer", "DeletePort"}, o.Cloud.OpenStackCalls())
		assert.Equal(t, []any{"fip-leftover"}, args(o.Cloud, "ReleaseFloatingIP"))
	})

	t.Run("what a create that failed early left: nothing but the lookup", func(t *testing.T) {
		s := deleteSaga
		s.Input.Server = newServer()
		s.Input.Server.Status = cloudservers.StatusError
		o := s.Run(t, nil)
		require.NoError(t, o.Err)
		assert.Equal(t, []string{"FindFloatingIP"}, o.Cloud.OpenStackCalls())
	})

	t.Run("the FindFloatingIP step fails", func(t *testing.T) {
		s := deleteSaga
		s.Input.Server.FloatingIPID = ""
		o := s.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Fail("FindFloatingIP", sagatest.NonRetryable("neutron says no"))
		})
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Equal(t, "FindFloatingIP", f.Step)
		assert.Equal(t, []string{"FindFloatingIP"}, o.Cloud.OpenStackCalls())
	})

	t.Run("an instance already gone: no wait, no read", func(t *testing.T) {
		o := deleteSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.AlreadyDone("DeleteNovaServer")
			c.Notify("DeleteNovaServer")
		})
		require.NoError(t, o.Err)
		assert.Equal(t, deleteSaga.HappyCalls(), o.Cloud.OpenStackCalls())
	})
}

func TestNovaActionSagas(t *testing.T) {
	for _, kind := range []string{"soft", "hard"} {
		t.Run("reboot "+kind+" asks for that reboot", func(t *testing.T) {
			o := rebootSaga(kind).Run(t, nil)
			require.NoError(t, o.Err)
			assert.Equal(t, []any{activities.RebootInput{InstanceID: sagatest.InstanceID(serverID), Type: kind}}, args(o.Cloud, "RebootNovaServer"))
		})
	}
	t.Run("power off stops the Nova server", func(t *testing.T) {
		o := powerOffSaga.Run(t, nil)
		require.NoError(t, o.Err)
		assert.Equal(t, []any{sagatest.InstanceID(serverID)}, args(o.Cloud, "StopNovaServer"))
	})
	t.Run("power on starts the Nova server", func(t *testing.T) {
		o := powerOnSaga.Run(t, nil)
		require.NoError(t, o.Err)
		assert.Equal(t, []any{sagatest.InstanceID(serverID)}, args(o.Cloud, "StartNovaServer"))
	})
	t.Run("a lost power-off notification with Nova showing SHUTOFF succeeds", func(t *testing.T) {
		o := powerOffSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Notify("StopNovaServer")
		})
		require.NoError(t, o.Err)
		assert.Equal(t, []string{"StopNovaServer", "GetNovaServer"}, o.Cloud.OpenStackCalls())
	})
}

func TestResizeSaga(t *testing.T) {
	for _, srv := range []cloudservers.Server{activeServer(), offServer()} {
		t.Run("a server that is "+string(srv.Status)+" gets the new size (the lifecycle keeps its status)", func(t *testing.T) {
			o := resizeSaga(srv).Run(t, nil)
			require.NoError(t, o.Err)
			assert.Equal(t, []any{activities.ResizeInput{InstanceID: sagatest.InstanceID(serverID), Size: "s-1vcpu-128mb"}}, args(o.Cloud, "ResizeNovaServer"))
			assert.Equal(t, "s-1vcpu-128mb", o.Result.Server.Size)
		})
	}

	t.Run("the revert's lost notification is reconciled against the status before the resize", func(t *testing.T) {
		for _, c := range []struct {
			srv       cloudservers.Server
			shows     string
			wantError bool
		}{
			{offServer(), "SHUTOFF", false},
			{activeServer(), "ACTIVE", false},
			{activeServer(), "SHUTOFF", true},
		} {
			o := resizeSaga(c.srv).Run(t, func(_ *testsuite.TestWorkflowEnvironment, cl *sagatest.Cloud) {
				cl.Notify("ResizeNovaServer", sagatest.ErrorEvent("instance.resize.error", "No valid host was found."))
				cl.Notify("RevertResize")
				cl.AnswerGet(activities.NovaServer{Status: c.shows}, false)
			})
			f := sagatest.RequireStepFailure(t, o.Err)
			assert.Equal(t, []string{"RevertResize"}, f.Compensations)
			if c.wantError {
				require.Len(t, f.CompensationErrors, 1, "server %s, Nova shows %s", c.srv.Status, c.shows)
				assert.Contains(t, f.CompensationErrors[0], "resize revert of Nova server inst-srv-1: no notification within 1m0s")
			} else {
				assert.Empty(t, f.CompensationErrors, "server %s, Nova shows %s", c.srv.Status, c.shows)
			}
		}
	})

	t.Run("a lost resize notification with Nova in VERIFY_RESIZE goes on to confirm", func(t *testing.T) {
		o := resizeSaga(activeServer()).Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Notify("ResizeNovaServer")
		})
		require.NoError(t, o.Err)
		assert.Equal(t, []string{"ResizeNovaServer", "GetNovaServer", "ConfirmResize"}, o.Cloud.OpenStackCalls())
	})
}
