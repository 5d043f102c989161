package workflows_test

import (
	"encoding/json"
	"time"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/workflows"
	"github.com/cloudservers/cloudservers/workflows/sagatest"
)

// eventTimeout is the sagas' wait for a notification in these tests; the
// test environment skips it in no time.
const eventTimeout = time.Minute

const (
	serverID   = "srv-1"
	customerID = "cust-1"
)

var requestedAt = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func params(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func request(opID string, op cloudservers.OperationType, p any) cloudservers.Request {
	r := cloudservers.Request{OperationID: opID, ServerID: serverID, CustomerID: customerID, Operation: op, RequestedAt: requestedAt}
	if p != nil {
		r.Params = params(p)
	}
	return r
}

var createParams = cloudservers.CreateParams{Name: "web-1", Size: "s-1vcpu-64mb", Image: "tiny", Region: "region-one"}

// newServer is the server as the lifecycle hands it to create.
func newServer() cloudservers.Server {
	return cloudservers.Server{
		ID: serverID, CustomerID: customerID, Name: "web-1", Status: cloudservers.StatusQueued,
		Size: "s-1vcpu-64mb", Image: "tiny", Region: "region-one", CreatedAt: requestedAt,
	}
}

// activeServer is a server create left running.
func activeServer() cloudservers.Server {
	s := newServer()
	s.Status = cloudservers.StatusActive
	s.NovaInstanceID = sagatest.InstanceID(serverID)
	s.PortID = sagatest.PortID(serverID)
	s.PrivateIPv4 = sagatest.PrivateIP
	s.FloatingIPID = sagatest.FloatingIPID(serverID)
	s.PublicIPv4 = sagatest.PublicIP
	return s
}

func offServer() cloudservers.Server {
	s := activeServer()
	s.Status = cloudservers.StatusOff
	return s
}

func input(req cloudservers.Request, srv cloudservers.Server) workflows.OperationInput {
	return workflows.OperationInput{Request: req, Server: srv, EventTimeout: eventTimeout}
}

var (
	createSaga = sagatest.Saga{
		Workflow: workflows.CreateServerWorkflow,
		Input:    input(request("op-create", cloudservers.OpCreate, createParams), newServer()),
		Steps: []sagatest.Step{
			{Activity: "CreatePort", Undo: "DeletePort"},
			{Activity: "CreateNovaServer", Undo: "DeleteNovaServer"},
			{Name: workflows.StepWaitForNovaBuild, Waits: "CreateNovaServer", Failures: []sagatest.Failure{
				sagatest.BuildFailure("CreateNovaServer", "PortBindingFailed: Binding failed for port "+sagatest.PortID(serverID)),
				sagatest.EventFailure("CreateNovaServer", "compute_task.build_instances.error", "Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures for instance "+sagatest.InstanceID(serverID)+"."),
				sagatest.ErrorStateFailure("CreateNovaServer", "PortBindingFailed: Binding failed for port "+sagatest.PortID(serverID)),
				sagatest.LostFailure("CreateNovaServer", activities.NovaServer{Status: "BUILD", TaskState: "spawning"}),
				sagatest.LostFailure("CreateNovaServer", activities.NovaServer{Status: "ERROR", Fault: "No valid host was found."}),
			}},
			{Activity: "AllocateFloatingIP", Undo: "ReleaseFloatingIP"},
			{Activity: "AssociateFloatingIP", Undo: "DisassociateFloatingIP"},
		},
	}

	deleteSaga = sagatest.Saga{
		Workflow: workflows.DeleteServerWorkflow,
		Input:    input(request("op-delete", cloudservers.OpDelete, nil), activeServer()),
		Steps: []sagatest.Step{
			{Activity: "DisassociateFloatingIP"},
			{Activity: "ReleaseFloatingIP"},
			{Activity: "DeleteNovaServer", Waits: "DeleteNovaServer", Failures: []sagatest.Failure{
				sagatest.EventFailure("DeleteNovaServer", "instance.delete.error", "Failed to terminate instance: libvirt error"),
				sagatest.ErrorStateFailure("DeleteNovaServer", "Failed to terminate instance"),
				sagatest.LostFailure("DeleteNovaServer", activities.NovaServer{Status: "ACTIVE", TaskState: "deleting"}),
			}},
			{Activity: "DeletePort"},
		},
	}
)

func rebootSaga(kind string) sagatest.Saga {
	return sagatest.Saga{
		Workflow: workflows.RebootServerWorkflow,
		Input:    input(request("op-reboot-"+kind, cloudservers.OpReboot, cloudservers.RebootParams{Type: kind}), activeServer()),
		Steps: []sagatest.Step{
			{Activity: "RebootNovaServer"},
			{Waits: "RebootNovaServer", Failures: []sagatest.Failure{
				sagatest.EventFailure("RebootNovaServer", "instance.reboot.error", "Cannot reboot instance: libvirt error"),
				sagatest.ErrorStateFailure("RebootNovaServer", "reboot failed"),
				sagatest.LostFailure("RebootNovaServer", activities.NovaServer{Status: "REBOOT", TaskState: "rebooting"}),
				sagatest.LostFailure("RebootNovaServer", activities.NovaServer{Status: "ERROR", Fault: "reboot failed"}),
			}},
		},
	}
}

var (
	powerOffSaga = sagatest.Saga{
		Workflow: workflows.PowerOffServerWorkflow,
		Input:    input(request("op-off", cloudservers.OpPowerOff, nil), activeServer()),
		Steps: []sagatest.Step{
			{Activity: "StopNovaServer"},
			{Waits: "StopNovaServer", Failures: []sagatest.Failure{
				sagatest.EventFailure("StopNovaServer", "instance.power_off.error", "Instance failed to shutdown"),
				sagatest.ErrorStateFailure("StopNovaServer", "Instance failed to shutdown"),
				sagatest.LostFailure("StopNovaServer", activities.NovaServer{Status: "ACTIVE", TaskState: "powering-off"}),
			}},
		},
	}

	powerOnSaga = sagatest.Saga{
		Workflow: workflows.PowerOnServerWorkflow,
		Input:    input(request("op-on", cloudservers.OpPowerOn, nil), offServer()),
		Steps: []sagatest.Step{
			{Activity: "StartNovaServer"},
			{Waits: "StartNovaServer", Failures: []sagatest.Failure{
				sagatest.EventFailure("StartNovaServer", "instance.power_on.error", "Instance failed to start"),
				sagatest.ErrorStateFailure("StartNovaServer", "Instance failed to start"),
				sagatest.LostFailure("StartNovaServer", activities.NovaServer{Status: "SHUTOFF", TaskState: "powering-on"}),
			}},
		},
	}
)

func resizeSaga(srv cloudservers.Server) sagatest.Saga {
	return sagatest.Saga{
		Workflow: workflows.ResizeServerWorkflow,
		Input:    input(request("op-resize", cloudservers.OpResize, cloudservers.ResizeParams{Size: "s-1vcpu-128mb"}), srv),
		Steps: []sagatest.Step{
			{Activity: "ResizeNovaServer", Undo: "RevertResize"},
			{Name: workflows.StepWaitForNovaResize, Waits: "ResizeNovaServer", Failures: []sagatest.Failure{
				sagatest.EventFailure("ResizeNovaServer", "instance.resize.error", "No valid host was found."),
				sagatest.EventFailure("ResizeNovaServer", "instance.resize_prep.error", "No valid host was found."),
				sagatest.EventFailure("ResizeNovaServer", "instance.resize_finish.error", "disk resize failed"),
				sagatest.EventFailure("ResizeNovaServer", "compute_task.migrate_server.error", "No valid host was found."),
				sagatest.ErrorStateFailure("ResizeNovaServer", "disk resize failed"),
				sagatest.LostFailure("ResizeNovaServer", activities.NovaServer{Status: "RESIZE", TaskState: "resize_migrating"}),
			}},
			{Activity: "ConfirmResize", Waits: "ConfirmResize", Failures: []sagatest.Failure{
				sagatest.EventFailure("ConfirmResize", "instance.resize_confirm.error", "confirm failed"),
				sagatest.LostFailure("ConfirmResize", activities.NovaServer{Status: "VERIFY_RESIZE", TaskState: ""}),
			}},
		},
	}
}
