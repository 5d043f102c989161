package devstack

import (
	"os/exec"
	"runtime"
	"sync"
)

// Pdeathsig is delivered when the *thread* that forked the child ends, not
// the process. The Go runtime ends a thread when a goroutine locked to it
// exits, so children are forked from one goroutine locked to a thread that
// lives as long as the process: then "the parent died" means exactly that.

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

var spawner struct {
	once sync.Once
	reqs chan spawnRequest
}

// startCmd runs cmd.Start on the spawner thread.
func startCmd(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnRequest)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread never exits
			for r := range spawner.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawner.reqs <- spawnRequest{cmd, done}
	return <-done
}
