// Package openstacksim is an OpenStack simulator: one http.Handler that
// speaks the subset of Keystone v3, Nova v2.1 (microversions 2.1 to 2.93),
// Neutron v2.0 and Glance v2 that gophercloud v2 uses, with the JSON shapes,
// status codes and error bodies of a real OpenStack Zed, and that publishes
// the notifications real Nova publishes while servers move through Nova's
// state machine asynchronously. Tests drive it with gophercloud through an
// httptest.Server; `cloudservers sim` serves it on a port and publishes the
// notifications to Kafka.
//
// # Layout
//
// One listener, path prefixes, and a Keystone catalog (region RegionOne,
// public and internal interfaces) pointing at them:
//
//	/identity/v3   Keystone: POST/GET/DELETE auth/tokens, GET auth/catalog
//	/compute/v2.1  Nova: servers (+ /detail, /action), flavors, os-keypairs, limits
//	/network/v2.0  Neutron: networks, subnets, routers, security-groups (read),
//	               ports and floatingips (full life cycle)
//	/image/v2      Glance: images
//	/_sim/         the simulator's admin API (GET /_sim/ lists it)
//
// Files follow the services: keystone.go, nova.go (+ keypairs.go),
// neutron.go, glance.go; lifecycle.go is Nova's state machine, notify.go
// the notifications, faults.go the fault injection, inventory.go the call
// log and inventory, admin.go the /_sim/ API, list.go the list filters and
// paging the services share, state.go the state file kept between runs.
//
// # Fidelity
//
// What the simulator answers was checked against the captured exchanges of
// a real OpenStack Zed (testdata/api, from shared/openstack/testdata):
// TestCapturedWalk replays that run and compares status codes, Nova's
// version headers and body shapes, and error messages word for word.
// Notifications were checked against the captured Kafka records
// (../notification/testdata): TestNotificationsMatchCaptures runs the same
// scenarios and compares, per format, event types in causal order, the
// routed fields and the payload shapes.
//
// Known differences from the real services:
//   - A floating IP shows in the server's addresses as soon as it is
//     associated (real Nova learns it at its next network info refresh).
//   - There is one hypervisor and no placement: a flavor bigger than the
//     kit's FakeDriver host gets "No valid host", nothing else does.
//   - Keypairs are generated as ed25519, not RSA.
//   - Sequences the capture has no example of (stop, start, hard reboot,
//     revert, resize failure, network allocation failure) follow Nova's
//     compute manager as written; see TestUncapturedOperations.
//   - Ceilometer events are what its notification agent makes of the
//     legacy notifications with the stock event_definitions.yaml, sent by
//     its notifier publisher; there is no capture of them.
//
// # Time
//
// Each operation takes the configured time (Config.BootTime etc.; zero is
// instant, for benchmarks). The API answers at once, as Nova does; the
// steps and notifications follow in a goroutine owned by the Sim, stopped
// by Close. A delete takes a server over from an operation in flight.
package openstacksim
