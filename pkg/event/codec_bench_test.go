package event

import (
	"path/filepath"
	"testing"
)

// BenchmarkCodec is what every event costs its producer (New's envelope, Encode) and
// each of its consumers (Decode, DecodePayload), on the compact bytes of the wire.
func BenchmarkCodec(b *testing.B) {
	for _, name := range []string{"message.submitted", "message.stored", "message.stored-attachments"} {
		e, err := Decode(readFile(b, filepath.Join("testdata", "valid", name+".json")))
		if err != nil {
			b.Fatal(err)
		}
		wire, err := Encode(e)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("decode/"+name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(wire)))
			for b.Loop() {
				e, err := Decode(wire)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := DecodePayload(e); err != nil {
					b.Fatal(err)
				}
			}
		})
		p, err := DecodePayload(e)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("encode/"+name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(wire)))
			for b.Loop() {
				e, err := New("kchat/bench", p, WithCausation(e))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Encode(e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
