//go:build integration

package chaos

import (
	"testing"

	"github.com/cloudservers/cloudservers/internal/tcpproxy"
)

// tcpProxy cuts a process off ZooKeeper or Kafka (see internal/tcpproxy).
type tcpProxy = tcpproxy.Proxy

func newProxy(t testing.TB, target string) *tcpProxy { return tcpproxy.New(t, target) }
