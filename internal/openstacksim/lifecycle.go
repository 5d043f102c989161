package openstacksim

import (
	"fmt"
	"time"
)

// The server state machine. Each operation runs in a goroutine owned by the
// Sim and walks the steps real Nova takes, in the order of the captured
// notifications (testdata/notifications), spread over the configured
// duration: the API call returns at once, the state changes and
// notifications follow.

// op is one operation on one server.
type op struct {
	s     *Sim
	id    string
	gen   int
	start time.Time
	total time.Duration
}

// startOp claims srv for a new operation and runs fn asynchronously. The
// caller holds s.mu. Any operation still running on srv stops at its next
// step.
func (s *Sim) startOp(srv *server, total time.Duration, fn func(o *op)) {
	srv.gen++
	o := &op{s: s, id: srv.id, gen: srv.gen, start: time.Now(), total: total}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn(o)
	}()
}

// at waits until the given fraction of the operation's duration has passed.
func (o *op) at(frac float64) bool {
	target := o.start.Add(time.Duration(frac * float64(o.total)))
	return o.s.sleep(time.Until(target))
}

// step runs f on the server under the Sim's lock, if this operation still
// owns it, then publishes what f emitted. It reports whether the operation
// goes on.
func (o *op) step(f func(srv *server, b *batch)) bool {
	s := o.s
	if s.ctx.Err() != nil {
		return false
	}
	s.mu.Lock()
	srv := s.servers[o.id]
	if srv == nil || srv.gen != o.gen {
		s.mu.Unlock()
		return false
	}
	b := s.notifier.batch()
	f(srv, b)
	flush := s.enqueue(srv, b)
	s.mu.Unlock()
	if flush {
		s.flush(srv)
	}
	return true
}

// enqueue queues a server's batch; it reports whether the caller must
// flush (no other goroutine is). Caller holds s.mu.
func (s *Sim) enqueue(srv *server, b *batch) bool {
	if len(b.records) == 0 {
		return false
	}
	srv.outbox = append(srv.outbox, b)
	if srv.flushing {
		return false
	}
	srv.flushing = true
	return true
}

// flush publishes the server's queued batches in order, without holding
// s.mu while publishing.
func (s *Sim) flush(srv *server) {
	for {
		s.mu.Lock()
		if len(srv.outbox) == 0 {
			srv.flushing = false
			s.mu.Unlock()
			return
		}
		b := srv.outbox[0]
		srv.outbox = srv.outbox[1:]
		s.mu.Unlock()
		s.notifier.send(b)
	}
}

// setTask changes the task state and emits the instance.update Nova sends
// for it. Nova reports the previous task state as oldTask, which for
// API-initiated changes equals the new one (see the captures).
func setTask(b *batch, src source, srv *server, oldTask, newTask string) {
	srv.taskState = newTask
	srv.updated = now()
	b.update(src, srv, srv.vmState, oldTask, instanceOpts{newTask: newTask})
}

// setState moves vm_state (and clears the task), emitting instance.update.
func setState(b *batch, srv *server, vm string, power int) {
	oldVM, oldTask := srv.vmState, srv.taskState
	srv.vmState, srv.taskState, srv.powerState = vm, "", power
	srv.updated = now()
	b.update(fromCompute, srv, oldVM, oldTask, instanceOpts{})
}

// ---- boot ----

// bootPlan is how a build ends, decided when the server is created.
type bootPlan struct {
	mode      string // "": success; "compute", "novalidhost", "network"
	exception string
	message   string
}

// startBoot runs a build: scheduling, networking, block devices, spawning,
// then ACTIVE or one of the failures of the captures. Caller holds s.mu.
func (s *Sim) startBoot(srv *server, f *flavor, plan bootPlan) {
	if plan.mode == "" && (f.VCPUs > hypervisorVCPUs || f.RAM > hypervisorRAMMB || f.Disk > hypervisorDiskGB) {
		plan.mode = "novalidhost"
	}
	s.startOp(srv, s.cfg.BootTime, func(o *op) {
		if !o.at(0.1) {
			return
		}
		if plan.mode == "novalidhost" {
			// The scheduler finds no host: no scheduler or create
			// notifications, the instance is buried in cell0 (capture f).
			o.step(func(srv *server, b *batch) {
				msg := "No valid host was found. "
				setState(b, srv, "error", powerNoState)
				srv.saved = true
				srv.fault = &serverFault{code: 500, message: msg, created: now(), details: noValidHostDetails}
				b.buildInstancesError(srv, f, &notifyFault{exception: "NoValidHost_Remote", code: 500,
					message: msg + "\n" + noValidHostDetails, module: "oslo_messaging._drivers.amqpdriver", function: "_send"})
			})
			return
		}
		ok := o.step(func(srv *server, b *batch) {
			b.selectDestinations(srv, f, "start", false)
			b.selectDestinations(srv, f, "end", false)
			srv.az = "nova"
			b.update(fromConductor, srv, "building", "scheduling", instanceOpts{newTask: "scheduling"})
			setTask(b, fromCompute, srv, "scheduling", "")
		})
		if !ok || !o.at(0.2) {
			return
		}
		var netErr string
		ok = o.step(func(srv *server, b *batch) {
			b.instanceAction(fromCompute, srv, "create", "start", instanceOpts{})
			srv.host, srv.saved = s.cfg.ComputeHost, true
			setTask(b, fromCompute, srv, "", "")
			setTask(b, fromCompute, srv, "networking", "networking")
			netErr = s.allocateNetworks(srv)
			if netErr != "" {
				return
			}
			srv.rootDevice = "/dev/sda"
			setTask(b, fromCompute, srv, "networking", "block_device_mapping")
			setTask(b, fromCompute, srv, "block_device_mapping", "spawning")
		})
		if !ok {
			return
		}
		if netErr != "" {
			// Nova aborts the build without rescheduling when it cannot
			// allocate the network.
			o.step(func(srv *server, b *batch) {
				msg := "Build of instance " + srv.id + " aborted: Failed to allocate the network(s), not rescheduling."
				fault := &notifyFault{exception: "BuildAbortException", message: msg, code: 500,
					module: "nova.compute.manager", function: "_build_resources"}
				b.instanceAction(fromCompute, srv, "create", "error", instanceOpts{fault: fault})
				s.releaseNetworks(srv)
				setState(b, srv, "error", powerNoState)
				srv.fault = &serverFault{code: 500, message: msg, created: now(),
					details: "  File \"/usr/lib/python3/dist-packages/nova/compute/manager.py\", in _build_resources\n" + netErr}
			})
			return
		}
		if !o.at(1) {
			return
		}
		if plan.mode == "compute" {
			s.failBuildOnCompute(o, f, plan)
			return
		}
		o.step(func(srv *server, b *batch) {
			// The network info cache fills when the spawn completes: until
			// then notifications and the API show no addresses.
			srv.launchedAt, srv.networked = now(), true
			setState(b, srv, "active", powerRunning)
			b.instanceAction(fromCompute, srv, "create", "end", instanceOpts{withIPs: true})
		})
	})
}

const noValidHostDetails = "Traceback (most recent call last):\n  File \"/usr/lib/python3/dist-packages/nova/conductor/manager.py\", line 1587, in schedule_and_build_instances\n    host_lists = self._schedule_instances(context, request_specs[0],\nnova.exception_Remote.NoValidHost_Remote: No valid host was found. \n"

// failBuildOnCompute is capture h: the spawn fails on the compute host, the
// instance is shut down, rescheduled, and runs out of hosts.
func (s *Sim) failBuildOnCompute(o *op, f *flavor, plan bootPlan) {
	o.step(func(srv *server, b *batch) {
		b.instanceAction(fromCompute, srv, "shutdown", "start", instanceOpts{})
		b.instanceAction(fromCompute, srv, "shutdown", "end", instanceOpts{})
		srv.host = ""
		setTask(b, fromCompute, srv, "spawning", "spawning")
		fault := &notifyFault{exception: plan.exception, message: plan.message, code: 500,
			module: "nova.compute.manager", function: "_build_and_run_instance"}
		if fault.exception == "" {
			fault.exception, fault.module, fault.function, fault.code = "PortBindingFailed", "nova.network.neutron", "_ensure_no_port_binding_failure", 400
			port := "00000000-0000-0000-0000-000000000000"
			if len(srv.portIDs) > 0 {
				port = srv.portIDs[0]
			}
			fault.message = "Binding failed for port " + port + ", please check neutron logs for more information."
		}
		if fault.message == "" {
			fault.message = "Build of instance " + srv.id + " was re-scheduled: " + fault.exception
		}
		srv.host = s.cfg.ComputeHost // the error is sent from the compute host
		b.instanceAction(fromCompute, srv, "create", "error", instanceOpts{fault: fault})
		srv.host = ""
		s.releaseNetworks(srv)
		setTask(b, fromCompute, srv, "spawning", "spawning")
		srv.az = "" // rescheduling forgets the zone
		setTask(b, fromCompute, srv, "spawning", "scheduling")
		msg := "Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures for instance " + srv.id + "."
		setState(b, srv, "error", powerNoState)
		srv.fault = &serverFault{code: 500, message: msg, created: now(),
			details: "Traceback (most recent call last):\n  File \"/usr/lib/python3/dist-packages/nova/conductor/manager.py\", line 703, in build_instances\n    raise exception.MaxRetriesExceeded(reason=msg)\nnova.exception.MaxRetriesExceeded: " + msg + "\n"}
		b.buildInstancesError(srv, f, &notifyFault{exception: "MaxRetriesExceeded", message: msg, code: 500,
			module: "nova.conductor.manager", function: "build_instances"})
	})
}

// allocateNetworks creates or binds the server's ports (the networking
// task state). It returns Neutron's error when a port cannot be had.
func (s *Sim) allocateNetworks(srv *server) string {
	for _, req := range srv.requested {
		if req.portID != "" {
			p := s.ports[req.portID]
			if p == nil {
				return "Port " + req.portID + " could not be found."
			}
			if p.deviceID != "" && p.deviceID != srv.id {
				return "Port " + req.portID + " is still in use."
			}
			s.bindPort(p, srv)
			srv.portIDs = append(srv.portIDs, p.id)
			continue
		}
		p, nerr := s.newPort(portSpec{networkID: req.networkID, fixedIP: req.fixedIP})
		if nerr != nil {
			return nerr.message
		}
		s.bindPort(p, srv)
		srv.portIDs = append(srv.portIDs, p.id)
		srv.createdPorts[p.id] = true
	}
	return ""
}

// releaseNetworks undoes allocateNetworks: Nova deletes the ports it made
// and unbinds the ones it was given.
func (s *Sim) releaseNetworks(srv *server) {
	for _, pid := range srv.portIDs {
		p := s.ports[pid]
		if p == nil {
			continue
		}
		if srv.createdPorts[pid] {
			s.deletePort(p)
		} else {
			s.unbindPort(p)
		}
	}
	srv.portIDs, srv.networked = nil, false
	srv.createdPorts = map[string]bool{}
}

// ---- delete ----

// startDelete deletes a server in any state. A server that never reached a
// host is deleted locally by the API (captures g and i); one on a host is
// shut down first (capture e). Caller holds s.mu.
func (s *Sim) startDelete(srv *server) {
	oldVM := srv.vmState
	srv.taskState = "deleting"
	srv.updated = now()
	local := srv.host == ""
	s.startOp(srv, s.cfg.DeleteTime, func(o *op) {
		src := fromCompute
		if local {
			src = fromAPI
		}
		ok := o.step(func(srv *server, b *batch) {
			b.update(fromCompute, srv, oldVM, "deleting", instanceOpts{newTask: "deleting"})
			b.instanceAction(src, srv, "delete", "start", instanceOpts{})
		})
		if !ok {
			return
		}
		if !local {
			if !o.at(0.1) || !o.step(func(srv *server, b *batch) {
				b.instanceAction(fromCompute, srv, "shutdown", "start", instanceOpts{})
			}) {
				return
			}
			if !o.at(0.6) || !o.step(func(srv *server, b *batch) {
				s.releaseNetworks(srv)
				b.instanceAction(fromCompute, srv, "shutdown", "end", instanceOpts{})
			}) {
				return
			}
		}
		if !o.at(0.9) {
			return
		}
		o.step(func(srv *server, b *batch) {
			s.releaseNetworks(srv)
			srv.terminatedAt = now()
			setState(b, srv, "deleted", powerNoState)
			// The instance row is gone now: GET answers 404.
			srv.deletedAt = now()
			delete(s.servers, srv.id)
			s.deleted[srv.id] = srv
			s.pruneDeleted()
		})
		if !o.at(1) {
			return
		}
		s.mu.Lock()
		b := s.notifier.batch()
		b.instanceAction(src, srv, "delete", "end", instanceOpts{})
		flush := s.enqueue(srv, b)
		s.mu.Unlock()
		if flush {
			s.flush(srv)
		}
	})
}

// pruneDeleted keeps the tombstones of the last hour (Nova keeps deleted
// rows until archived; changes-since sees them).
func (s *Sim) pruneDeleted() {
	cutoff := now().Add(-time.Hour)
	for id, srv := range s.deleted {
		if srv.terminatedAt.Before(cutoff) {
			delete(s.deleted, id)
		}
	}
}

// ---- reboot, stop, start ----

func (s *Sim) startReboot(srv *server, hard bool) {
	suffix := ""
	if hard {
		suffix = "_hard"
	}
	srv.taskState = "rebooting" + suffix
	s.startOp(srv, s.cfg.RebootTime, func(o *op) {
		ok := o.step(func(srv *server, b *batch) {
			setTask(b, fromCompute, srv, "rebooting"+suffix, "rebooting"+suffix)
		})
		if !ok || !o.at(0.5) {
			return
		}
		ok = o.step(func(srv *server, b *batch) {
			srv.taskState = "reboot_pending" + suffix
			b.instanceAction(fromCompute, srv, "reboot", "start", instanceOpts{})
			setTask(b, fromCompute, srv, "rebooting"+suffix, "reboot_pending"+suffix)
		})
		if !ok || !o.at(0.6) {
			return
		}
		ok = o.step(func(srv *server, b *batch) {
			setTask(b, fromCompute, srv, "reboot_pending"+suffix, "reboot_started"+suffix)
		})
		if !ok || !o.at(1) {
			return
		}
		o.step(func(srv *server, b *batch) {
			oldVM := srv.vmState
			srv.vmState, srv.taskState, srv.powerState = "active", "", powerRunning
			srv.updated = now()
			b.update(fromCompute, srv, oldVM, "reboot_started"+suffix, instanceOpts{})
			b.instanceAction(fromCompute, srv, "reboot", "end", instanceOpts{})
		})
	})
}

// startRebuild rebuilds an instance from img on its host, as Nova's
// rebuild_instance does: instance.rebuild.start, task states rebuilding,
// rebuild_block_device_mapping, rebuild_spawning, then the vm state it had
// (a stopped instance is stopped again) and instance.rebuild.end. The
// instance keeps its ID, ports and addresses.
func (s *Sim) startRebuild(srv *server, img *image) {
	srv.taskState = "rebuilding"
	s.startOp(srv, s.cfg.RebuildTime, func(o *op) {
		before := srv.vmState
		ok := o.step(func(srv *server, b *batch) {
			setTask(b, fromAPI, srv, "", "rebuilding")
			b.instanceAction(fromCompute, srv, "rebuild", "start", instanceOpts{})
		})
		if !ok || !o.at(0.3) {
			return
		}
		ok = o.step(func(srv *server, b *batch) {
			setTask(b, fromCompute, srv, "rebuilding", "rebuild_block_device_mapping")
		})
		if !ok || !o.at(0.5) {
			return
		}
		ok = o.step(func(srv *server, b *batch) {
			srv.imageID = img.ID
			setTask(b, fromCompute, srv, "rebuild_block_device_mapping", "rebuild_spawning")
		})
		if !ok || !o.at(1) {
			return
		}
		o.step(func(srv *server, b *batch) {
			vm, power := "active", powerRunning
			if before == "stopped" {
				vm, power = "stopped", powerShutdown
			}
			oldVM := srv.vmState
			srv.vmState, srv.taskState, srv.powerState = vm, "", power
			srv.fault = nil
			srv.launchedAt = now()
			srv.updated = now()
			b.update(fromCompute, srv, oldVM, "rebuild_spawning", instanceOpts{})
			b.instanceAction(fromCompute, srv, "rebuild", "end", instanceOpts{withIPs: true})
		})
	})
}

func (s *Sim) startStop(srv *server) {
	srv.taskState = "powering-off"
	s.startOp(srv, s.cfg.StopTime, func(o *op) {
		ok := o.step(func(srv *server, b *batch) {
			setTask(b, fromCompute, srv, "powering-off", "powering-off")
		})
		if !ok || !o.at(0.2) || !o.step(func(srv *server, b *batch) {
			b.instanceAction(fromCompute, srv, "power_off", "start", instanceOpts{})
		}) || !o.at(1) {
			return
		}
		o.step(func(srv *server, b *batch) {
			setState(b, srv, "stopped", powerShutdown)
			b.instanceAction(fromCompute, srv, "power_off", "end", instanceOpts{})
		})
	})
}

func (s *Sim) startStart(srv *server) {
	srv.taskState = "powering-on"
	s.startOp(srv, s.cfg.StartTime, func(o *op) {
		ok := o.step(func(srv *server, b *batch) {
			setTask(b, fromCompute, srv, "powering-on", "powering-on")
		})
		if !ok || !o.at(0.2) || !o.step(func(srv *server, b *batch) {
			b.instanceAction(fromCompute, srv, "power_on", "start", instanceOpts{})
		}) || !o.at(1) {
			return
		}
		o.step(func(srv *server, b *batch) {
			setState(b, srv, "active", powerRunning)
			b.instanceAction(fromCompute, srv, "power_on", "end", instanceOpts{})
		})
	})
}

// ---- resize ----

// startResize walks capture d up to VERIFY_RESIZE: prep, migrate, finish.
// Caller holds s.mu.
func (s *Sim) startResize(srv *server, nf *flavor) {
	srv.taskState = "resize_prep"
	srv.preResizeState = srv.vmState
	fault := s.faults.takeResizeFault(srv)
	s.startOp(srv, s.cfg.ResizeTime, func(o *op) {
		ok := o.step(func(srv *server, b *batch) {
			setTask(b, fromCompute, srv, "resize_prep", "resize_prep")
		})
		if !ok || !o.at(0.15) {
			return
		}
		ok = o.step(func(srv *server, b *batch) {
			b.selectDestinations(srv, nf, "start", true)
			b.selectDestinations(srv, nf, "end", true)
			b.exists(srv)
			b.instanceAction(fromCompute, srv, "resize_prep", "start", instanceOpts{newFlavor: nf})
			setTask(b, fromCompute, srv, "resize_prep", "resize_prep")
			b.instanceAction(fromCompute, srv, "resize_prep", "end", instanceOpts{newFlavor: nf})
		})
		if !ok || !o.at(0.4) {
			return
		}
		ok = o.step(func(srv *server, b *batch) {
			setTask(b, fromCompute, srv, "resize_prep", "resize_migrating")
			b.instanceAction(fromCompute, srv, "resize", "start", instanceOpts{withIPs: true})
		})
		if !ok || !o.at(0.6) {
			return
		}
		if fault != nil {
			// migrate_disk_and_power_off raised: _error_out_instance_on_exception
			// puts the instance in ERROR, wrap_instance_fault records the
			// fault and wrap_exception notifies compute.exception.
			o.step(func(srv *server, b *batch) {
				nf := &notifyFault{exception: "ResizeError", message: fault.Message, code: 500,
					module: "nova.virt.driver", function: "migrate_disk_and_power_off"}
				srv.fault = &serverFault{code: 500, message: fault.Message, created: now(), details: nf.traceback()}
				setState(b, srv, "error", srv.powerState)
				b.computeException(srv, "resize_instance", nf)
			})
			return
		}
		ok = o.step(func(srv *server, b *batch) {
			setTask(b, fromCompute, srv, "resize_migrating", "resize_migrated")
			b.instanceAction(fromCompute, srv, "resize", "end", instanceOpts{withIPs: true})
		})
		if !ok || !o.at(0.8) {
			return
		}
		ok = o.step(func(srv *server, b *batch) {
			srv.oldFlavorID, srv.flavorID = srv.flavorID, nf.ID
			setTask(b, fromCompute, srv, "resize_migrated", "resize_finish")
			b.instanceAction(fromCompute, srv, "resize_finish", "start", instanceOpts{withIPs: true})
		})
		if !ok || !o.at(1) {
			return
		}
		o.step(func(srv *server, b *batch) {
			srv.launchedAt = now()
			srv.migration = "finished"
			setState(b, srv, "resized", srv.powerState)
			b.instanceAction(fromCompute, srv, "resize_finish", "end", instanceOpts{withIPs: true})
		})
	})
}

// startConfirm finishes a resize (capture d, second half). Nova's API
// answers 204 and the server stays VERIFY_RESIZE until the compute host is
// done.
func (s *Sim) startConfirm(srv *server) {
	back := srv.preResizeState
	s.startOp(srv, s.cfg.ConfirmTime, func(o *op) {
		if !o.at(0.1) || !o.step(func(srv *server, b *batch) {
			b.instanceAction(fromCompute, srv, "resize_confirm", "start", instanceOpts{})
		}) || !o.at(1) {
			return
		}
		o.step(func(srv *server, b *batch) {
			srv.oldFlavorID, srv.migration = "", ""
			power := powerRunning
			if back == "stopped" {
				power = powerShutdown
			}
			setState(b, srv, back, power)
			b.instanceAction(fromCompute, srv, "resize_confirm", "end", instanceOpts{withIPs: true})
			b.update(fromCompute, srv, srv.vmState, "", instanceOpts{})
		})
	})
}

// startRevert returns a resized server to its old flavor.
func (s *Sim) startRevert(srv *server) {
	back := srv.preResizeState
	srv.taskState = "resize_reverting"
	s.startOp(srv, s.cfg.RevertTime, func(o *op) {
		ok := o.step(func(srv *server, b *batch) {
			setTask(b, fromCompute, srv, "resize_reverting", "resize_reverting")
		})
		if !ok || !o.at(0.2) || !o.step(func(srv *server, b *batch) {
			b.instanceAction(fromCompute, srv, "resize_revert", "start", instanceOpts{})
		}) || !o.at(1) {
			return
		}
		o.step(func(srv *server, b *batch) {
			if srv.oldFlavorID != "" {
				srv.flavorID, srv.oldFlavorID = srv.oldFlavorID, ""
			}
			srv.migration = ""
			power := powerRunning
			if back == "stopped" {
				power = powerShutdown
			}
			setState(b, srv, back, power)
			b.instanceAction(fromCompute, srv, "resize_revert", "end", instanceOpts{withIPs: true})
		})
	})
}

func itoa(i int) string { return fmt.Sprint(i) }
