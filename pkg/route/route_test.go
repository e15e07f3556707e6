package route

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/segmentio/kafka-go"
)

func TestPartitionFor_matchesMurmur2Balancer(t *testing.T) {
	keys := []string{"", "a", "ab", "abc", "abcd", "abcde", "gw-a", "gw-b", "gateway-7f3c", "ünïcødé-gw", "gw/with/slash"}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		b := make([]byte, rng.IntN(40))
		for j := range b {
			b[j] = byte(rng.IntN(256)) // high bytes exercise the sign handling of the Java port
		}
		keys = append(keys, string(b), fmt.Sprintf("gateway-%d", i))
	}
	bal := &kafka.Murmur2Balancer{}
	for _, n := range []int{1, 2, 3, 6, 7, 12, 16, 50, 64, 100, 1000} {
		parts := make([]int, n)
		for i := range parts {
			parts[i] = i
		}
		for _, k := range keys {
			want := bal.Balance(kafka.Message{Key: []byte(k)}, parts...)
			if got := PartitionFor(k, n); got != want {
				t.Fatalf("PartitionFor(%q, %d) = %d, Murmur2Balancer = %d", k, n, got, want)
			}
		}
	}
}

func TestPartitionFor_edgeCases(t *testing.T) {
	// A single partition always wins; a non-positive count is a misconfiguration reported as -1.
	tests := []struct {
		key  string
		n    int
		want int
	}{
		{"", 1, 0},
		{"gw-a", 1, 0},
		{"gw-a", -1, -1},
		{"gw-a", 0, -1},
	}
	for _, tt := range tests {
		if got := PartitionFor(tt.key, tt.n); got != tt.want {
			t.Errorf("PartitionFor(%q, %d) = %d, want %d", tt.key, tt.n, got, tt.want)
		}
	}
}

func TestMurmur2_knownHashes(t *testing.T) {
	// Values from Kafka's UtilsTest.testMurmur2 (Java ints shown as uint32).
	tests := []struct {
		in   string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	}
	for _, tt := range tests {
		if got := int32(murmur2(tt.in)); got != tt.want {
			t.Errorf("murmur2(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestSubscriptionKey(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		gateway string
		room    string
		ok      bool
	}{
		{"plain", "gw-a/r1", "gw-a", "r1", true},
		{"uuid room", "gw-1/0190f3a0-0000-7000-8000-000000000001", "gw-1", "0190f3a0-0000-7000-8000-000000000001", true},
		{"room with slash stays whole", "gw-a/dm/x", "gw-a", "dm/x", true},
		{"no separator", "gw-a", "", "", false},
		{"empty gateway", "/r1", "", "", false},
		{"empty room", "gw-a/", "", "", false},
		{"empty", "", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw, room, ok := ParseSubscriptionKey(tt.key)
			if gw != tt.gateway || room != tt.room || ok != tt.ok {
				t.Fatalf("ParseSubscriptionKey(%q) = %q, %q, %v; want %q, %q, %v", tt.key, gw, room, ok, tt.gateway, tt.room, tt.ok)
			}
			if ok {
				if back := SubscriptionKey(gw, room); back != tt.key {
					t.Fatalf("SubscriptionKey round trip = %q, want %q", back, tt.key)
				}
			}
		})
	}
}

func BenchmarkPartitionFor(b *testing.B) {
	for b.Loop() {
		_ = PartitionFor("gateway-0190f3a0-7000", 12)
	}
}
