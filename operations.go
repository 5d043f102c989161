package cloudservers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
)

// OperationDef is what the system knows about one operation, as data: the
// API, the bridge, the CLI, the generated spec and the worker all read it
// from Operations, and workflows.Registry ties each to its saga. It holds
// nothing of Temporal, so every part can import it.
type OperationDef struct {
	Type OperationType
	// Params is the zero value of the operation's parameter struct (nil:
	// it takes none). Requests' params decode into it strictly; its fields'
	// json, example and enums tags describe the action's body in the spec.
	Params any
	// Validate checks decoded parameters against the catalogue (nil: any
	// that decode are valid).
	Validate func(params json.RawMessage, catalog Catalog) error
	// From lists the statuses the operation may start from; empty means a
	// new server (create).
	From []ServerStatus
	// Running is the server's status while the operation runs; empty: the
	// status it had (a rename).
	Running ServerStatus
	// Succeeded is the server's status when it succeeds; empty: the status
	// it had before (a resized server stays on or off).
	Succeeded ServerStatus
	// Failed is the server's status when it fails; empty: the status it
	// had before (nothing changed).
	Failed ServerStatus
	// InstanceError is the server's status when it fails and leaves the
	// Nova instance in ERROR; empty: as Failed.
	InstanceError ServerStatus
	// Applies checks the parameters against the server they would change
	// (nil: any server in From will do).
	Applies func(srv Server, params json.RawMessage) *ParamError
	// Quota is the operation's claim on the customer's quota, checked
	// before it is accepted (nil: none).
	Quota func(catalog Catalog, srv Server, params json.RawMessage) Usage
	// API is how the REST API exposes the operation.
	API Exposure
	// CLI is the CLI command of an action or a rename.
	CLI CLICommand
}

// Exposure names the endpoint an operation is asked for on.
type Exposure string

const (
	ExposeCreate Exposure = "POST /v1/servers"
	ExposeDelete Exposure = "DELETE /v1/servers/{id}"
	ExposeAction Exposure = "POST /v1/servers/{id}/actions"
	// ExposeRename is PUT and PATCH /v1/servers/{id}: a change of the
	// server's own fields.
	ExposeRename Exposure = "PUT|PATCH /v1/servers/{id}"
)

// CLICommand is the CLI command that starts an action.
type CLICommand struct {
	Name    string // "power-off"
	Summary string // "power a server off"
	Flags   []CLIFlag
}

// CLIFlag maps a CLI flag to a parameter: a string flag sets the parameter
// to its value; a boolean flag (Value set) sets it to Value.
type CLIFlag struct {
	Name     string
	Param    string // the parameter's JSON name
	Value    string // set: a boolean flag that sets Param to Value
	Required bool
	Usage    string
}

// Usage is a claim on a customer's quota.
type Usage struct {
	Servers int
	VCPUs   int
}

// Operations lists every operation customers can ask for. Adding one is one
// entry here and one in workflows.Registry (see docs/writing-a-saga.md).
func Operations() []OperationDef {
	return []OperationDef{
		{Type: OpCreate, Params: CreateParams{}, Validate: validateCreate,
			Running: StatusCreating, Succeeded: StatusActive, Failed: StatusError,
			Quota: createQuota, API: ExposeCreate},
		{Type: OpDelete, From: anyStatus,
			Running: StatusDeleting, Succeeded: StatusDeleted, Failed: StatusError,
			API: ExposeDelete},
		{Type: OpReboot, Params: RebootParams{}, Validate: validateReboot, From: running,
			Running: StatusRebooting, Succeeded: StatusActive, InstanceError: StatusError,
			API: ExposeAction, CLI: CLICommand{Name: "reboot", Summary: "reboot a server (soft unless -hard)",
				Flags: []CLIFlag{{Name: "hard", Param: "reboot_type", Value: "hard", Usage: "hard reboot (power cycle)"}}}},
		{Type: OpPowerOff, From: running,
			Running: StatusStopping, Succeeded: StatusOff, InstanceError: StatusError,
			API: ExposeAction, CLI: CLICommand{Name: "power-off", Summary: "power a server off"}},
		{Type: OpPowerOn, From: stopped,
			Running: StatusStarting, Succeeded: StatusActive, InstanceError: StatusError,
			API: ExposeAction, CLI: CLICommand{Name: "power-on", Summary: "power a server on"}},
		{Type: OpResize, Params: ResizeParams{}, Validate: validateResize, From: activeOrOff,
			Running: StatusResizing, InstanceError: StatusError, Applies: resizeApplies,
			Quota: resizeQuota, API: ExposeAction, CLI: CLICommand{Name: "resize", Summary: "resize a server",
				Flags: []CLIFlag{{Name: "size", Param: "size", Required: true, Usage: "the new size (see `servers sizes`)"}}}},
		{Type: OpRebuild, Params: RebuildParams{}, Validate: validateRebuild, From: running,
			Running: StatusRebuilding, Succeeded: StatusActive, InstanceError: StatusError,
			API: ExposeAction, CLI: CLICommand{Name: "rebuild", Summary: "rebuild a server from an image, keeping its ID and addresses",
				Flags: []CLIFlag{{Name: "image", Param: "image", Required: true, Usage: "the image (see `servers images`)"}}}},
		{Type: OpRename, Params: RenameParams{}, Validate: validateRename, From: anyStatus, Applies: renameApplies,
			API: ExposeRename, CLI: CLICommand{Name: "rename", Summary: "rename a server",
				Flags: []CLIFlag{{Name: "name", Param: "name", Required: true, Usage: "the new name"}}}},
	}
}

// ServerStatuses lists every status of a server, in the order of its life.
var ServerStatuses = []ServerStatus{
	StatusQueued, StatusCreating, StatusActive, StatusOff, StatusRebooting, StatusStopping, StatusStarting,
	StatusResizing, StatusRebuilding, StatusDeleting, StatusDeleted, StatusError,
}

// OperationStatuses lists every status of an operation.
var OperationStatuses = []OperationStatus{OperationPending, OperationRunning, OperationSucceeded, OperationFailed}

// Known reports whether s is a status of ServerStatuses.
func (s ServerStatus) Known() bool {
	for _, k := range ServerStatuses {
		if k == s {
			return true
		}
	}
	return false
}

var (
	running     = []ServerStatus{StatusActive}
	stopped     = []ServerStatus{StatusOff}
	activeOrOff = []ServerStatus{StatusActive, StatusOff}
	anyStatus   = []ServerStatus{StatusActive, StatusOff, StatusError}
)

// LookupOperation returns the definition of an operation.
func LookupOperation(op OperationType) (OperationDef, bool) {
	for _, d := range Operations() {
		if d.Type == op {
			return d, true
		}
	}
	return OperationDef{}, false
}

// Allowed reports whether the operation may start on a server in status;
// the reason says why not, for the customer.
func (d OperationDef) Allowed(status ServerStatus) error {
	if len(d.From) == 0 {
		return fmt.Errorf("%s applies to new servers only", d.Type)
	}
	for _, s := range d.From {
		if s == status {
			return nil
		}
	}
	return fmt.Errorf("cannot %s a server that is %s", d.Type, status)
}

// ValidateParams decodes a request's parameters strictly into the
// operation's Params and checks them with its Validate.
func (d OperationDef) ValidateParams(params json.RawMessage, catalog Catalog) error {
	if d.Params == nil {
		var none struct{}
		return DecodeParams(params, &none)
	}
	if d.Validate == nil {
		return DecodeParams(params, reflect.New(reflect.TypeOf(d.Params)).Interface())
	}
	return d.Validate(params, catalog)
}

// SucceededStatus is the server's status after the operation succeeded on a
// server that was in before.
func (d OperationDef) SucceededStatus(before ServerStatus) ServerStatus {
	if d.Succeeded == "" {
		return before
	}
	return d.Succeeded
}

// FailedStatus is the server's status after the operation failed on a
// server that was in before; instanceError says the failure left the Nova
// instance in ERROR.
func (d OperationDef) FailedStatus(before ServerStatus, instanceError bool) ServerStatus {
	if instanceError && d.InstanceError != "" {
		return d.InstanceError
	}
	if d.Failed == "" {
		return before
	}
	return d.Failed
}

// ParamError is a validation error about one parameter.
type ParamError struct {
	Field   string
	Problem string
}

func (e *ParamError) Error() string { return e.Problem }

// ParamErrors are the validation errors of several parameters, in field
// order.
type ParamErrors []*ParamError

func (e ParamErrors) Error() string {
	msgs := make([]string, len(e))
	for i, pe := range e {
		msgs[i] = pe.Problem
	}
	return strings.Join(msgs, "; ")
}

// err is nil when there is no error (a nil ParamErrors in an error
// interface is not nil).
func (e ParamErrors) err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

// DecodeParams decodes a request's parameters strictly: unknown fields are
// an error, so a typo never silently falls back to a default.
func DecodeParams(params json.RawMessage, v any) error {
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(params))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid parameters: %w", err)
	}
	return nil
}

// serverNameRE is what a server's name may be: a DNS label.
var serverNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$`)

// ValidServerName checks a server's name.
func ValidServerName(name string) *ParamError {
	if serverNameRE.MatchString(name) {
		return nil
	}
	return &ParamError{Field: "name", Problem: "name must be 1-63 letters, digits, dots or hyphens, starting and ending with a letter or digit"}
}

func validateCreate(params json.RawMessage, catalog Catalog) error {
	var p CreateParams
	if err := DecodeParams(params, &p); err != nil {
		return err
	}
	var bad ParamErrors
	if pe := ValidServerName(p.Name); pe != nil {
		bad = append(bad, pe)
	}
	if _, ok := catalog.Size(p.Size); !ok {
		bad = append(bad, &ParamError{Field: "size", Problem: fmt.Sprintf("unknown size %q (see GET /v1/sizes)", clip(p.Size))})
	}
	if _, ok := catalog.Image(p.Image); !ok {
		bad = append(bad, &ParamError{Field: "image", Problem: fmt.Sprintf("unknown image %q (see GET /v1/images)", clip(p.Image))})
	}
	if _, ok := catalog.Region(p.Region); !ok {
		bad = append(bad, &ParamError{Field: "region", Problem: fmt.Sprintf("unknown region %q (see GET /v1/regions)", clip(p.Region))})
	}
	return bad.err()
}

func createQuota(catalog Catalog, _ Server, params json.RawMessage) Usage {
	var p CreateParams
	_ = json.Unmarshal(params, &p)
	size, _ := catalog.Size(p.Size)
	return Usage{Servers: 1, VCPUs: size.VCPUs}
}

func validateReboot(params json.RawMessage, _ Catalog) error {
	var p RebootParams
	if err := DecodeParams(params, &p); err != nil {
		return err
	}
	if p.Type != "" && p.Type != "soft" && p.Type != "hard" {
		return &ParamError{Field: "reboot_type", Problem: fmt.Sprintf("reboot_type must be soft or hard, not %q", clip(p.Type))}
	}
	return nil
}

func validateResize(params json.RawMessage, catalog Catalog) error {
	var p ResizeParams
	if err := DecodeParams(params, &p); err != nil {
		return err
	}
	if _, ok := catalog.Size(p.Size); !ok {
		return &ParamError{Field: "size", Problem: fmt.Sprintf("unknown size %q (see GET /v1/sizes)", clip(p.Size))}
	}
	return nil
}

func resizeApplies(srv Server, params json.RawMessage) *ParamError {
	var p ResizeParams
	_ = json.Unmarshal(params, &p)
	if p.Size == srv.Size {
		return &ParamError{Field: "size", Problem: "the server already has size " + p.Size}
	}
	return nil
}

func validateRename(params json.RawMessage, _ Catalog) error {
	var p RenameParams
	if err := DecodeParams(params, &p); err != nil {
		return err
	}
	if pe := ValidServerName(p.Name); pe != nil {
		return pe
	}
	return nil
}

func renameApplies(srv Server, params json.RawMessage) *ParamError {
	var p RenameParams
	_ = json.Unmarshal(params, &p)
	if p.Name == srv.Name {
		return &ParamError{Field: "name", Problem: "the server is already named " + p.Name}
	}
	return nil
}

func validateRebuild(params json.RawMessage, catalog Catalog) error {
	var p RebuildParams
	if err := DecodeParams(params, &p); err != nil {
		return err
	}
	if _, ok := catalog.Image(p.Image); !ok {
		return &ParamError{Field: "image", Problem: fmt.Sprintf("unknown image %q (see GET /v1/images)", clip(p.Image))}
	}
	return nil
}

// resizeQuota claims the vCPUs the new size adds (none when it has fewer).
func resizeQuota(catalog Catalog, srv Server, params json.RawMessage) Usage {
	var p ResizeParams
	_ = json.Unmarshal(params, &p)
	to, _ := catalog.Size(p.Size)
	from, _ := catalog.Size(srv.Size)
	return Usage{VCPUs: max(0, to.VCPUs-from.VCPUs)}
}

// clip shortens a customer's input quoted back in an error.
func clip(s string) string {
	const limit = 80
	if len(s) > limit {
		return s[:limit] + "..."
	}
	return s
}
