package attach

import (
	"strings"
	"testing"
)

func TestValidateFilename(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"report.pdf", true},
		{"Ünïcode \"quoted\" <b>.png", true}, // shown as text, served RFC 2231-encoded
		{"no extension", true},
		{".hidden", true},
		{strings.Repeat("n", 255), true},
		{"", false},
		{strings.Repeat("n", 256), false},
		{".", false},
		{"..", false},
		{"../etc/passwd", false},
		{"dir/file.txt", false},
		{`C:\boot.ini`, false},
		{"tab\there", false},
		{"nul\x00byte", false},
		{"line\nbreak", false},
		{"del\x7f", false},
		{"c1\u0085control", false},
		{"sep\u2028line", false},
		{"bad\xffutf8", false},
	} {
		err := ValidateFilename(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("%q: error %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestSniff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		data, want string
	}{
		{"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"},
		{"%PDF-1.7\n", "application/pdf"},
		{"plain words\n", "text/plain"},
		{"<html><body>x</body></html>", "text/html"},
		{"\x7fELF\x02\x01\x01", "application/octet-stream"},
	} {
		if got := sniff([]byte(tc.data)); got != tc.want {
			t.Errorf("sniff(%q) = %q, want %q", tc.data, got, tc.want)
		}
	}
}

func TestConfig_Validate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"negative size", Config{MaxBytes: -1}, false},
		{"type with parameters", Config{AllowedTypes: []string{"text/plain; charset=utf-8"}}, false},
		{"not a type", Config{AllowedTypes: []string{"pdf"}}, false},
		{"tiny thumbnails", Config{ThumbnailSize: 4}, false},
		{"negative grace", Config{OrphanGrace: -1}, false},
	} {
		c := tc.cfg
		c.setDefaults()
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
