package attach

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
)

// BenchmarkThumbnail measures what an upload of an image costs the gateway beyond reading
// it: header check, full decode, Lanczos fit into 320x320 and encoding the thumbnail.
func BenchmarkThumbnail(b *testing.B) {
	s := &Service{cfg: Config{}}
	s.cfg.setDefaults()
	for _, tc := range []struct {
		name  string
		w, h  int
		ctype string
	}{
		{"jpeg-4000x3000", 4000, 3000, "image/jpeg"},
		{"png-1920x1080", 1920, 1080, "image/png"},
	} {
		img := image.NewNRGBA(image.Rect(0, 0, tc.w, tc.h))
		for x := 0; x < tc.w; x += 7 {
			for y := 0; y < tc.h; y += 5 {
				img.Set(x, y, color.NRGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
			}
		}
		var buf bytes.Buffer
		var err error
		if tc.ctype == "image/jpeg" {
			err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85})
		} else {
			err = png.Encode(&buf, img)
		}
		if err != nil {
			b.Fatal(err)
		}
		data := buf.Bytes()
		b.Run(tc.name, func(b *testing.B) {
			b.ReportMetric(float64(len(data)), "input-bytes")
			for b.Loop() {
				if _, _, _, err := s.thumbnail(data, tc.ctype); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
