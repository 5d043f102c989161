// Package e2e holds the end-to-end tests of the system (build tag
// integration): the real ZooKeeper, Kafka and Temporal of the test stack
// (scripts/test-stack.sh), the OpenStack simulator, and the application's
// components wired as in production (API, ZooKeeper-owned request
// partitions with a partner, the router singleton, the worker), each test
// on its own task queue, consumer groups and ZooKeeper chroot so that tests
// sharing the engines do not see each other's work.
package e2e
