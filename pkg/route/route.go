// Package route holds the addressing rules shared by fanout (which writes chat.deliveries and
// chat.subscriptions keys) and the gateway (which reads its own partition of chat.deliveries and
// publishes its subscriptions). Both sides must agree byte for byte, so the rules live here once.
package route

import "strings"

// keySep separates the gateway id from the room id in a subscription key. Gateway ids never
// contain it, so splitting at the first occurrence is unambiguous even if a room id did.
const keySep = "/"

// PartitionFor returns the partition of chat.deliveries that carries events for gatewayID: the
// same partition kafka-go's Murmur2Balancer (the producer's balancer) picks for that key.
//
// The writer hands the balancer the partition list [0, numPartitions), so the result is
// (murmur2(key) & 0x7fffffff) % numPartitions, which is also what the Java client computes.
// numPartitions must be positive; otherwise -1 is returned so a misconfiguration cannot silently
// land on partition 0.
func PartitionFor(gatewayID string, numPartitions int) int {
	if numPartitions <= 0 {
		return -1
	}
	return int((murmur2(gatewayID) & 0x7fffffff) % uint32(numPartitions))
}

// SubscriptionKey is the compacted key of a gateway's subscription to a room: "<gateway>/<room>".
// One key per (gateway, room) is what lets compaction keep only the latest state of each pair.
func SubscriptionKey(gatewayID, roomID string) string {
	return gatewayID + keySep + roomID
}

// ParseSubscriptionKey splits a key made by SubscriptionKey back into its parts. It reports
// ok=false when the separator is missing or either part is empty.
func ParseSubscriptionKey(key string) (gatewayID, roomID string, ok bool) {
	gatewayID, roomID, found := strings.Cut(key, keySep)
	if !found || gatewayID == "" || roomID == "" {
		return "", "", false
	}
	return gatewayID, roomID, true
}

// murmur2 is the Java client's Utils.murmur2 (and kafka-go's port of it), taking a string so the
// hot path does not allocate a []byte per call.
func murmur2(data string) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	for i := 0; i+4 <= length; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := length &^ 3
	switch length % 4 {
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
