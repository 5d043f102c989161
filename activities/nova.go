package activities

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"go.temporal.io/sdk/temporal"

	"github.com/cloudservers/cloudservers"
)

// CreateNovaServerInput asks for the Nova instance of a server.
type CreateNovaServerInput struct {
	ServerID   string `json:"server_id"`
	CustomerID string `json:"customer_id"`
	Size       string `json:"size"`
	Image      string `json:"image"`
	PortID     string `json:"port_id"`
	KeyName    string `json:"key_name,omitempty"`
}

// NovaAction is what an activity that asked Nova for something learnt: the
// instance, the request ID Nova's notifications for it will carry, and
// whether there is nothing to wait for (the instance was already in the
// wanted state, or already gone).
type NovaAction struct {
	InstanceID  string `json:"instance_id"`
	RequestID   string `json:"request_id,omitempty"`
	AlreadyDone bool   `json:"already_done,omitempty"`
}

// NovaServer is the result of the one reconciliation read a saga may make
// when a notification did not come in time.
type NovaServer struct {
	InstanceID string `json:"instance_id"`
	Status     string `json:"status"` // Nova's: BUILD, ACTIVE, SHUTOFF, VERIFY_RESIZE, ERROR, ... ; "DELETED" when 404
	TaskState  string `json:"task_state,omitempty"`
	Flavor     string `json:"flavor,omitempty"`
	Fault      string `json:"fault,omitempty"`
	PrivateIP  string `json:"private_ip,omitempty"`
}

// CreateNovaServer boots the server's Nova instance on its port. It is named
// cs-<server id> and carries the server and customer IDs in its metadata:
// the name lets a retry find an instance an earlier attempt created, and
// both travel in every notification Nova sends about it.
func (a *Activities) CreateNovaServer(ctx context.Context, in CreateNovaServerInput) (NovaAction, error) {
	name := cloudservers.NovaServerName(in.ServerID)
	if existing, err := a.findNovaServer(ctx, name); err != nil {
		return NovaAction{}, err
	} else if existing != "" {
		// An earlier attempt created it; its mapping may not have been
		// published (the attempt died in between): publish it again.
		return NovaAction{InstanceID: existing}, a.publishInstance(ctx, existing, in.ServerID, in.CustomerID)
	}
	flavorID, err := a.flavorID(ctx, in.Size)
	if err != nil {
		return NovaAction{}, err
	}
	imageID, err := a.imageID(ctx, in.Image)
	if err != nil {
		return NovaAction{}, err
	}
	opts := servers.CreateOpts{
		Name:      name,
		FlavorRef: flavorID,
		ImageRef:  imageID,
		Networks:  []servers.Network{{Port: in.PortID}},
		Metadata: map[string]string{
			cloudservers.MetadataServerID:   in.ServerID,
			cloudservers.MetadataCustomerID: in.CustomerID,
		},
		Tags: []string{"cloudservers"},
	}
	var create servers.CreateOptsBuilder = opts
	if in.KeyName != "" {
		create = keyPairOpts{CreateOptsBuilder: opts, keyName: in.KeyName}
	}
	r := servers.Create(ctx, a.clients.Compute, create, nil)
	s, err := r.Extract()
	if err != nil {
		return NovaAction{}, classify(fmt.Sprintf("create Nova server %s for server %s", name, in.ServerID), err)
	}
	// Nova notifies as it builds; most notifications carry the name and
	// metadata, but some (compute_task.build_instances.error) only the
	// UUID, which the router maps through this record. A failed publish
	// fails the attempt; the retry finds the instance and publishes again.
	if err := a.publishInstance(ctx, s.ID, in.ServerID, in.CustomerID); err != nil {
		return NovaAction{}, err
	}
	return NovaAction{InstanceID: s.ID, RequestID: requestID(r.Header)}, nil
}

// keyPairOpts adds key_name, which gophercloud keeps in its keypairs
// extension, to a server create.
type keyPairOpts struct {
	servers.CreateOptsBuilder
	keyName string
}

func (o keyPairOpts) ToServerCreateMap() (map[string]any, error) {
	m, err := o.CreateOptsBuilder.ToServerCreateMap()
	if err != nil {
		return nil, err
	}
	m["server"].(map[string]any)["key_name"] = o.keyName
	return m, nil
}

func (a *Activities) findNovaServer(ctx context.Context, name string) (string, error) {
	pages, err := servers.List(a.clients.Compute, servers.ListOpts{Name: "^" + regexp.QuoteMeta(name) + "$"}).AllPages(ctx)
	if err != nil {
		return "", classify("look up Nova server "+name, err)
	}
	all, err := servers.ExtractServers(pages)
	if err != nil {
		return "", classify("look up Nova server "+name, err)
	}
	for _, s := range all {
		if s.Name == name {
			return s.ID, nil
		}
	}
	return "", nil
}

func (a *Activities) flavorID(ctx context.Context, size string) (string, error) {
	sz, ok := a.catalog.Size(size)
	if !ok {
		return "", temporal.NewNonRetryableApplicationError("unknown size "+size, ErrInvalidRequest, nil)
	}
	return a.cached("flavor/"+sz.Flavor, func() (string, error) {
		pages, err := flavors.ListDetail(a.clients.Compute, flavors.ListOpts{AccessType: flavors.AllAccess}).AllPages(ctx)
		if err != nil {
			return "", classify("list Nova flavors", err)
		}
		all, err := flavors.ExtractFlavors(pages)
		if err != nil {
			return "", classify("list Nova flavors", err)
		}
		for _, f := range all {
			if f.Name == sz.Flavor {
				return f.ID, nil
			}
		}
		return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("size %s: Nova flavor %s not found", size, sz.Flavor), ErrInvalidRequest, nil)
	})
}

func (a *Activities) imageID(ctx context.Context, image string) (string, error) {
	im, ok := a.catalog.Image(image)
	if !ok {
		return "", temporal.NewNonRetryableApplicationError("unknown image "+image, ErrInvalidRequest, nil)
	}
	return a.cached("image/"+im.GlanceName, func() (string, error) {
		pages, err := images.List(a.clients.Image, images.ListOpts{Name: im.GlanceName}).AllPages(ctx)
		if err != nil {
			return "", classify("list Glance images", err)
		}
		all, err := images.ExtractImages(pages)
		if err != nil {
			return "", classify("list Glance images", err)
		}
		for _, i := range all {
			if i.Name == im.GlanceName {
				return i.ID, nil
			}
		}
		return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("image %s: Glance image %s not found", image, im.GlanceName), ErrInvalidRequest, nil)
	})
}

// DeleteNovaServer deletes an instance. An instance that is already gone has
// been deleted: AlreadyDone tells the saga not to wait for a notification.
func (a *Activities) DeleteNovaServer(ctx context.Context, instanceID string) (NovaAction, error) {
	r := servers.Delete(ctx, a.clients.Compute, instanceID)
	if gophercloud.ResponseCodeIs(r.Err, http.StatusNotFound) {
		return NovaAction{InstanceID: instanceID, AlreadyDone: true}, nil
	}
	if r.Err != nil {
		return NovaAction{}, classify("delete Nova server "+instanceID, r.Err)
	}
	return NovaAction{InstanceID: instanceID, RequestID: requestID(r.Header)}, nil
}

// GetNovaServer is the single reconciliation read a saga makes when the
// notification it waited for did not arrive in time. A missing instance is
// reported as status DELETED, not as an error.
func (a *Activities) GetNovaServer(ctx context.Context, instanceID string) (NovaServer, error) {
	var s struct {
		servers.Server
		TaskState string `json:"OS-EXT-STS:task_state"`
	}
	r := servers.Get(ctx, a.clients.Compute, instanceID)
	if gophercloud.ResponseCodeIs(r.Err, http.StatusNotFound) {
		return NovaServer{InstanceID: instanceID, Status: "DELETED"}, nil
	}
	if err := r.ExtractInto(&s); err != nil {
		return NovaServer{}, classify("get Nova server "+instanceID, err)
	}
	out := NovaServer{InstanceID: instanceID, Status: s.Status, TaskState: s.TaskState, Fault: s.Fault.Message, PrivateIP: firstAddress(s.Addresses)}
	if name, ok := s.Flavor["original_name"].(string); ok {
		out.Flavor = name
	}
	return out, nil
}

func firstAddress(addresses map[string]any) string {
	for _, v := range addresses {
		list, _ := v.([]any)
		for _, item := range list {
			m, _ := item.(map[string]any)
			if t, _ := m["OS-EXT-IPS:type"].(string); t == "floating" {
				continue
			}
			if ip, ok := m["addr"].(string); ok {
				return ip
			}
		}
	}
	return ""
}

// RebootInput asks for a reboot of the given type ("soft" or "hard").
type RebootInput struct {
	InstanceID string `json:"instance_id"`
	Type       string `json:"type"`
}

// RebootNovaServer reboots an instance.
func (a *Activities) RebootNovaServer(ctx context.Context, in RebootInput) (NovaAction, error) {
	how := servers.SoftReboot
	if in.Type == "hard" {
		how = servers.HardReboot
	}
	r := servers.Reboot(ctx, a.clients.Compute, in.InstanceID, servers.RebootOpts{Type: how})
	return a.action(ctx, "reboot", in.InstanceID, r.Header, r.Err, nil)
}

// StopNovaServer powers an instance off. An instance already off is done.
func (a *Activities) StopNovaServer(ctx context.Context, instanceID string) (NovaAction, error) {
	r := servers.Stop(ctx, a.clients.Compute, instanceID)
	return a.action(ctx, "stop", instanceID, r.Header, r.Err, []string{"SHUTOFF"})
}

// StartNovaServer powers an instance on. An instance already on is done.
func (a *Activities) StartNovaServer(ctx context.Context, instanceID string) (NovaAction, error) {
	r := servers.Start(ctx, a.clients.Compute, instanceID)
	return a.action(ctx, "start", instanceID, r.Header, r.Err, []string{"ACTIVE"})
}

// ResizeInput asks for a resize to a size.
type ResizeInput struct {
	InstanceID string `json:"instance_id"`
	Size       string `json:"size"`
}

// ResizeNovaServer resizes an instance; it then waits in VERIFY_RESIZE for
// a confirm or a revert. An instance already in VERIFY_RESIZE is done.
func (a *Activities) ResizeNovaServer(ctx context.Context, in ResizeInput) (NovaAction, error) {
	flavorID, err := a.flavorID(ctx, in.Size)
	if err != nil {
		return NovaAction{}, err
	}
	r := servers.Resize(ctx, a.clients.Compute, in.InstanceID, servers.ResizeOpts{FlavorRef: flavorID})
	return a.action(ctx, "resize", in.InstanceID, r.Header, r.Err, []string{"VERIFY_RESIZE"})
}

// ConfirmResize confirms a resize. An instance no longer in VERIFY_RESIZE
// (ACTIVE) was confirmed by an earlier attempt.
func (a *Activities) ConfirmResize(ctx context.Context, instanceID string) (NovaAction, error) {
	r := servers.ConfirmResize(ctx, a.clients.Compute, instanceID)
	return a.action(ctx, "confirm resize", instanceID, r.Header, r.Err, []string{"ACTIVE"})
}

// RevertResize reverts a resize (the compensation of ResizeNovaServer).
func (a *Activities) RevertResize(ctx context.Context, instanceID string) (NovaAction, error) {
	r := servers.RevertResize(ctx, a.clients.Compute, instanceID)
	if gophercloud.ResponseCodeIs(r.Err, http.StatusNotFound) {
		return NovaAction{InstanceID: instanceID, AlreadyDone: true}, nil
	}
	return a.action(ctx, "revert resize", instanceID, r.Header, r.Err, []string{"ACTIVE", "SHUTOFF"})
}

// RebuildInput asks for a rebuild of an instance from an image of the
// catalogue.
type RebuildInput struct {
	InstanceID string `json:"instance_id"`
	Image      string `json:"image"`
}

// RebuildNovaServer rebuilds an instance from an image: the same instance,
// its ports and addresses, a fresh disk.
func (a *Activities) RebuildNovaServer(ctx context.Context, in RebuildInput) (NovaAction, error) {
	imageID, err := a.imageID(ctx, in.Image)
	if err != nil {
		return NovaAction{}, err
	}
	r := servers.Rebuild(ctx, a.clients.Compute, in.InstanceID, servers.RebuildOpts{ImageRef: imageID})
	return a.action(ctx, "rebuild", in.InstanceID, r.Header, r.Err, nil)
}

// action interprets the answer to a server action. A 409 means the instance
// is not in a state the action applies to: if it is already where the action
// leads (doneStates), a retry of ours got there first and the action is
// done; otherwise the conflict is reported.
func (a *Activities) action(ctx context.Context, what, instanceID string, h http.Header, err error, doneStates []string) (NovaAction, error) {
	if err == nil {
		return NovaAction{InstanceID: instanceID, RequestID: requestID(h)}, nil
	}
	if gophercloud.ResponseCodeIs(err, http.StatusConflict) && len(doneStates) > 0 {
		s, getErr := a.GetNovaServer(ctx, instanceID)
		if getErr == nil {
			for _, st := range doneStates {
				if s.Status == st && s.TaskState == "" {
					return NovaAction{InstanceID: instanceID, AlreadyDone: true}, nil
				}
			}
		}
	}
	return NovaAction{}, classify(fmt.Sprintf("%s Nova server %s", what, instanceID), err)
}

// ImportKeyPairInput asks for a Nova keypair holding a customer's public key.
type ImportKeyPairInput struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
}

// ImportKeyPair makes sure the Nova keypair exists. Keypairs are named after
// the customer's SSH key (cs-key-<key id>), so importing one that exists is
// done: a retry, or another server booted with the same key.
func (a *Activities) ImportKeyPair(ctx context.Context, in ImportKeyPairInput) error {
	_, err := keypairs.Get(ctx, a.clients.Compute, in.Name, nil).Extract()
	if err == nil {
		return nil
	}
	if !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return classify("look up Nova keypair "+in.Name, err)
	}
	_, err = keypairs.Create(ctx, a.clients.Compute, keypairs.CreateOpts{Name: in.Name, PublicKey: in.PublicKey}).Extract()
	if gophercloud.ResponseCodeIs(err, http.StatusConflict) {
		return nil // created meanwhile by a concurrent create
	}
	return classify("import Nova keypair "+in.Name, err)
}

// CheckCatalog looks up every catalog entry in the cloud (each size's Nova
// flavor, each image in Glance, each region's networks) and names, all at
// once, those the cloud lacks or that could not be looked up. The worker
// runs it at start-up.
func (a *Activities) CheckCatalog(ctx context.Context) error {
	var errs []error
	for _, s := range a.catalog.Sizes {
		if _, err := a.flavorID(ctx, s.Name); err != nil {
			errs = append(errs, err)
		}
	}
	for _, im := range a.catalog.Images {
		if _, err := a.imageID(ctx, im.Name); err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range a.catalog.Regions {
		for _, n := range []string{r.Network, r.ExternalNetwork} {
			if _, err := a.networkID(ctx, n); err != nil {
				errs = append(errs, fmt.Errorf("region %s: %w", r.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}
