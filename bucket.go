package cloudservers

import "hash/fnv"

// Buckets is the number of virtual buckets customers hash into. Buckets,
// not customers, are mapped to partitions, so a partition can be added and
// some buckets moved to it without rehashing every customer.
const Buckets = 256

// Bucket returns the customer's bucket.
func Bucket(customerID string) int {
	h := fnv.New32a()
	h.Write([]byte(customerID))
	return int(h.Sum32() % Buckets)
}

// BucketMap maps buckets to partitions of the requests topic.
type BucketMap []int32

// DefaultBucketMap spreads the buckets evenly over partitions.
func DefaultBucketMap(partitions int32) BucketMap {
	m := make(BucketMap, Buckets)
	for b := range m {
		m[b] = int32(b) % partitions
	}
	return m
}

// Partition returns the partition of the customer's requests.
func (m BucketMap) Partition(customerID string) int32 {
	return m[Bucket(customerID)]
}
