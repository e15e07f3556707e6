package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/blobstore"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/services/gateway/internal/app"
	"github.com/kchat/kchat/services/gateway/internal/attach"
	"github.com/kchat/kchat/services/gateway/internal/gwtest"
	"github.com/kchat/kchat/services/gateway/internal/ratelimit"
)

// pngOf renders a w x h image as PNG.
func pngOf(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for x := range w {
		for y := range h {
			img.Set(x, y, color.NRGBA{uint8(x), uint8(y), 200, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// multipartBody is a body with one part per file (field, filename, content).
type part struct{ field, filename, data string }

func multipartBody(t testing.TB, parts ...part) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		// Written by hand: multipart.Writer.CreateFormFile would replace characters of the
		// name, and the test must send names exactly as a hostile client would (only
		// quoted-string escaping, which the gateway undoes).
		quoted := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(p.filename)
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename="%s"`, p.field, quoted))
		h.Set("Content-Type", "application/octet-stream") // ignored: the type is sniffed
		pw, err := w.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(pw, p.data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.FormDataContentType(), buf.Bytes()
}

// uploadRaw posts a body to /api/rooms/{room}/uploads.
func uploadRaw(t testing.TB, base, token, room, ctype string, body []byte) (int, gwtest.Frame) {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/api/rooms/"+room+"/uploads", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	f := gwtest.Frame{}
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &f)
	return res.StatusCode, f
}

func upload(t testing.TB, base, token, room, filename string, data []byte) (int, gwtest.Frame) {
	t.Helper()
	ct, body := multipartBody(t, part{"file", filename, string(data)})
	return uploadRaw(t, base, token, room, ct, body)
}

// get downloads a path and returns status, headers and body.
func get(t testing.TB, url, token string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, b
}

// stored returns the attachment rows and the blob files, to check that nothing is kept.
func (h *harness) storedAttachments(t testing.TB, blobs *blobstore.FS) (rows int, files []string) {
	t.Helper()
	if err := h.db.QueryRow(context.Background(), `SELECT count(*) FROM attachments`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	files, err := blobs.Keys()
	if err != nil {
		t.Fatal(err)
	}
	return rows, files
}

// withBlobs starts a gateway whose blob store the test can look into.
func withBlobs(t *testing.T, mod func(*app.Config)) (*harness, *blobstore.FS) {
	t.Helper()
	blobs, err := blobstore.NewFS(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, func(c *app.Config) {
		c.Blobs = blobs
		c.Attachments.MaxBytes = 64 << 10
		if mod != nil {
			mod(c)
		}
	})
	return h, blobs
}

// TestAttachments_bad_uploads_store_nothing: every refused upload answers a clear error
// and leaves no row and no file.
func TestAttachments_bad_uploads_store_nothing(t *testing.T) {
	t.Parallel()
	h, blobs := withBlobs(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice")
	bob := gwtest.NewAccount(t, h.base, "bob")
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "files"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	small := pngOf(t, 8, 8)
	elf, err := os.ReadFile("testdata/attachments/not-allowed.bin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		token    string
		room     string
		body     func() (string, []byte)
		status   int
		code     string
		contains string
	}{
		{"over the size limit", alice.Token, "files", func() (string, []byte) {
			return multipartBody(t, part{"file", "big.txt", strings.Repeat("a", 64<<10+1)})
		}, 413, "too_large", "65536 bytes"},
		{"far over the limit (refused by Content-Length)", alice.Token, "files", func() (string, []byte) {
			return multipartBody(t, part{"file", "big.txt", strings.Repeat("a", 200<<10)})
		}, 413, "too_large", "65536 bytes"},
		{"empty file", alice.Token, "files", func() (string, []byte) { return multipartBody(t, part{"file", "e.txt", ""}) }, 400, "bad_request", "empty"},
		{"unknown room", alice.Token, "nowhere", func() (string, []byte) { return multipartBody(t, part{"file", "a.png", string(small)}) }, 404, "not_found", "no such room"},
		{"not a member", bob.Token, "files", func() (string, []byte) { return multipartBody(t, part{"file", "a.png", string(small)}) }, 403, "forbidden", ""},
		{"forbidden type", alice.Token, "files", func() (string, []byte) { return multipartBody(t, part{"file", "tool", string(elf)}) }, 415, "unsupported_type", "application/octet-stream"},
		{"html is not text/plain", alice.Token, "files", func() (string, []byte) {
			return multipartBody(t, part{"file", "page.txt", "<html><script>alert(1)</script></html>"})
		}, 415, "unsupported_type", "text/html"},
		{"a PNG that does not decode", alice.Token, "files", func() (string, []byte) {
			return multipartBody(t, part{"file", "broken.png", string(small[:40])})
		}, 400, "bad_request", "not a readable image"},
		{"path in filename", alice.Token, "files", func() (string, []byte) { return multipartBody(t, part{"file", "../etc/passwd", "x"}) }, 400, "bad_request", "path separator"},
		{"backslash in filename", alice.Token, "files", func() (string, []byte) { return multipartBody(t, part{"file", `..\\win.ini`, "x"}) }, 400, "bad_request", "path separator"},
		{"control character in filename", alice.Token, "files", func() (string, []byte) { return multipartBody(t, part{"file", "a\tb.txt", "x"}) }, 400, "bad_request", "control"},
		{"empty filename", alice.Token, "files", func() (string, []byte) { return multipartBody(t, part{"file", "", "x"}) }, 400, "bad_request", "filename is required"},
		{"dot-dot filename", alice.Token, "files", func() (string, []byte) { return multipartBody(t, part{"file", "..", "x"}) }, 400, "bad_request", "must name a file"},
		{"filename too long", alice.Token, "files", func() (string, []byte) {
			return multipartBody(t, part{"file", strings.Repeat("n", 256), "x"})
		}, 400, "bad_request", "longer than 255"},
		{"two files", alice.Token, "files", func() (string, []byte) {
			return multipartBody(t, part{"file", "a.txt", "a"}, part{"file", "b.txt", "b"})
		}, 400, "bad_request", "exactly one file"},
		{"wrong field", alice.Token, "files", func() (string, []byte) { return multipartBody(t, part{"upload", "a.txt", "a"}) }, 400, "bad_request", "unexpected field"},
		{"not multipart", alice.Token, "files", func() (string, []byte) { return "application/json", []byte(`{"file":"x"}`) }, 400, "bad_request", "multipart/form-data"},
		{"no part at all", alice.Token, "files", func() (string, []byte) { return multipartBody(t) }, 400, "bad_request", "no file"},
		{"body cut before the closing boundary", alice.Token, "files", func() (string, []byte) {
			ct, b := multipartBody(t, part{"file", "a.txt", "hello"})
			return ct, b[:len(b)-10]
		}, 400, "bad_request", "interrupted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ct, body := tc.body()
			st, f := uploadRaw(t, h.base, tc.token, tc.room, ct, body)
			if st != tc.status || f.Str("code") != tc.code || !strings.Contains(f.Str("message"), tc.contains) {
				t.Fatalf("got %d %v, want %d %s containing %q", st, f, tc.status, tc.code, tc.contains)
			}
			if rows, files := h.storedAttachments(t, blobs); rows != 0 || len(files) != 0 {
				t.Fatalf("after a refused upload: %d rows, files %q", rows, files)
			}
		})
	}

	// A client that disconnects mid-body: the gateway reads an early EOF and stores
	// nothing. Sent by hand over TCP, announcing more than it sends.
	t.Run("client disconnects mid-body", func(t *testing.T) {
		ct, body := multipartBody(t, part{"file", "a.png", string(pngOf(t, 64, 64))})
		conn, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /api/rooms/files/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
			alice.Token, ct, len(body))
		conn.Write(body[:len(body)/2])
		conn.(*net.TCPConn).CloseWrite()
		// The gateway answers (400) once it sees the body end early; reading to EOF is the
		// positive signal that it is done with the request.
		reply, _ := io.ReadAll(conn)
		conn.Close()
		if !bytes.Contains(reply, []byte(" 400 ")) || !bytes.Contains(reply, []byte("interrupted")) {
			t.Fatalf("reply to a cut body: %q", reply)
		}
		if rows, files := h.storedAttachments(t, blobs); rows != 0 || len(files) != 0 {
			t.Fatalf("after an interrupted upload: %d rows, files %q", rows, files)
		}
	})
}

// TestAttachments_download_authorization: who may download a file (and its thumbnail),
// read at download time: the uploader before it is attached; every member once it is;
// nobody who is not a member (never was, left), nobody once its message is deleted. Every
// refusal is the same 404.
func TestAttachments_download_authorization(t *testing.T) {
	t.Parallel()
	h, blobs := withBlobs(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice")
	bob := gwtest.NewAccount(t, h.base, "bob")
	carol := gwtest.NewAccount(t, h.base, "carol") // never a member
	dave := gwtest.NewAccount(t, h.base, "dave")   // a member who leaves
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "files"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	for _, u := range []gwtest.Account{bob, dave} {
		if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/files/join", u.Token, nil); st != 200 {
			t.Fatalf("join: %d %v", st, f)
		}
	}
	img := pngOf(t, 640, 480)
	st, up := upload(t, h.base, alice.Token, "files", "Ünïcode \"cat\".png", img)
	if st != 201 {
		t.Fatalf("upload: %d %v", st, up)
	}
	if up.Str("content_type") != "image/png" || up.Int("size") != int64(len(img)) || up.Int("width") != 640 || up.Int("height") != 480 || up["thumbnail"] != true {
		t.Fatalf("upload answer %v", up)
	}
	id := up.Str("id")
	st, doc := upload(t, h.base, alice.Token, "files", "notes.txt", []byte("plain words\n"))
	if st != 201 || doc.Str("content_type") != "text/plain" || doc["thumbnail"] != nil {
		t.Fatalf("text upload: %d %v", st, doc)
	}
	file, thumb := h.base+"/api/attachments/"+id, h.base+"/api/attachments/"+id+"/thumbnail"

	check := func(t *testing.T, who string, token string, url string, want int) []byte {
		t.Helper()
		st, hd, body := get(t, url, token)
		if st != want {
			t.Fatalf("%s GET %s: %d %s, want %d", who, url, st, body, want)
		}
		if st == 404 && !bytes.Contains(body, []byte(`"no such attachment"`)) {
			t.Fatalf("%s: 404 body %s", who, body)
		}
		if st == 200 && hd.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s: no nosniff", who)
		}
		return body
	}
	unattached := map[string]struct {
		token string
		want  int
	}{"uploader": {alice.Token, 200}, "other member": {bob.Token, 404}, "never a member": {carol.Token, 404}, "no token": {"", 401}}
	for who, c := range unattached {
		t.Run("unattached/"+who, func(t *testing.T) {
			check(t, who, c.token, file, c.want)
			check(t, who, c.token, thumb, c.want)
		})
	}

	// Attached as persistence does it (the end-to-end test sends it through Kafka).
	h.store(t, "files", 4, 4, alice)
	if _, err := h.db.Exec(context.Background(), `UPDATE attachments SET message_seq = 4, position = 1 WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/files/leave", dave.Token, nil); st != 200 {
		t.Fatalf("leave: %d %v", st, f)
	}
	attached := map[string]struct {
		token string
		want  int
	}{"uploader": {alice.Token, 200}, "member": {bob.Token, 200}, "never a member": {carol.Token, 404}, "left": {dave.Token, 404}}
	for who, c := range attached {
		t.Run("attached/"+who, func(t *testing.T) {
			body := check(t, who, c.token, file, c.want)
			if c.want == 200 && !bytes.Equal(body, img) {
				t.Fatalf("%s got %d bytes, not the file", who, len(body))
			}
			tb := check(t, who, c.token, thumb, c.want)
			if c.want == 200 {
				cfg, format, err := image.DecodeConfig(bytes.NewReader(tb))
				if err != nil || format != "png" || cfg.Width != 320 || cfg.Height != 240 {
					t.Fatalf("thumbnail: %v %s %dx%d", err, format, cfg.Width, cfg.Height)
				}
			}
		})
	}
	t.Run("headers", func(t *testing.T) {
		_, hd, _ := get(t, file, bob.Token)
		if hd.Get("Content-Type") != "image/png" {
			t.Errorf("Content-Type %q", hd.Get("Content-Type"))
		}
		disp, params, err := mime.ParseMediaType(hd.Get("Content-Disposition"))
		if err != nil || disp != "inline" || params["filename"] != "Ünïcode \"cat\".png" {
			t.Errorf("Content-Disposition %q: %s %v %v", hd.Get("Content-Disposition"), disp, params, err)
		}
		_, hd, body := get(t, h.base+"/api/attachments/"+doc.Str("id"), alice.Token)
		disp, params, _ = mime.ParseMediaType(hd.Get("Content-Disposition"))
		if string(body) != "plain words\n" || hd.Get("Content-Type") != "text/plain" || disp != "attachment" || params["filename"] != "notes.txt" {
			t.Errorf("text download: %q %q %q", body, hd.Get("Content-Type"), hd.Get("Content-Disposition"))
		}
		if !strings.Contains(hd.Get("Content-Security-Policy"), "sandbox") {
			t.Errorf("CSP %q", hd.Get("Content-Security-Policy"))
		}
		if st, _, _ := get(t, h.base+"/api/attachments/"+doc.Str("id")+"/thumbnail", alice.Token); st != 404 {
			t.Errorf("thumbnail of a text file: %d", st)
		}
	})
	t.Run("unknown and malformed ids", func(t *testing.T) {
		for _, u := range []string{"/api/attachments/0196a1b2-c3d4-7e5f-8a6b-7c8d9e0f1b00", "/api/attachments/..%2Fetc", "/api/attachments/x/thumbnail"} {
			check(t, "member", bob.Token, h.base+u, 404)
		}
	})

	// A deleted message's files: nobody may download them, at once.
	if _, err := h.db.Exec(context.Background(), `UPDATE attachments SET deleted_at = now() WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	check(t, "uploader", alice.Token, file, 404)
	check(t, "member", bob.Token, thumb, 404)
	if _, files := h.storedAttachments(t, blobs); len(files) != 3 {
		t.Fatalf("files before the grace period: %q", files)
	}
}

// TestAttachments_sweeper: uploads never attached and deleted messages' files are
// deleted (rows and blobs) once their grace period has passed, not before; attached live
// files stay. The clock is moved rather than waited for.
func TestAttachments_sweeper(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	h, blobs := withBlobs(t, func(c *app.Config) {
		c.Now = clk.now
		c.Attachments = attach.Config{MaxBytes: 64 << 10, OrphanGrace: time.Hour, DeletedGrace: 2 * time.Hour,
			SweepInterval: 50 * time.Millisecond, GoneInterval: 50 * time.Millisecond}
	})
	alice := gwtest.NewAccount(t, h.base, "alice")
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "files"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	ids := map[string]string{}
	for _, name := range []string{"orphan", "kept", "deleted", "retained"} {
		st, f := upload(t, h.base, alice.Token, "files", name+".png", pngOf(t, 20, 20))
		if st != 201 {
			t.Fatalf("upload %s: %d %v", name, st, f)
		}
		ids[name] = f.Str("id")
	}
	h.store(t, "files", 2, 4, alice)
	ctx := context.Background()
	for seq, name := range map[int64]string{2: "kept", 3: "deleted", 4: "retained"} {
		if _, err := h.db.Exec(ctx, `UPDATE attachments SET message_seq = $2, position = 1 WHERE id = $1`, ids[name], seq); err != nil {
			t.Fatal(err)
		}
	}
	// Deleted "now" by the moved clock's measure, as persistence records it.
	if _, err := h.db.Exec(ctx, `UPDATE attachments SET deleted_at = $2 WHERE id = $1`, ids["deleted"], clk.now()); err != nil {
		t.Fatal(err)
	}
	left := func() []string {
		rows, err := h.db.Query(ctx, `SELECT id FROM attachments ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id string
			rows.Scan(&id)
			for name, v := range ids {
				if v == id {
					out = append(out, name)
				}
			}
		}
		return out
	}
	waitLeft := func(want string, files int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got := strings.Join(left(), ",")
			_, fs := h.storedAttachments(t, blobs)
			if got == want && len(fs) == files {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("attachments left %q with %d files, want %q with %d", got, len(fs), want, files)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// sentinel plants an upload long past every grace period: once it is gone a sweep has
	// run, and whatever it left was judged not due.
	sentinel := func() {
		t.Helper()
		id := fmt.Sprintf("00000000-0000-7000-8000-%012d", time.Now().UnixNano()%1e12)
		if err := blobs.Put(ctx, "files/"+id, strings.NewReader("s"), 1, "text/plain"); err != nil {
			t.Fatal(err)
		}
		_, err := h.db.Exec(ctx, `INSERT INTO attachments (id, room_id, uploader, filename, content_type, size, blob_key, created_at)
			VALUES ($1, 'files', $2, 's.txt', 'text/plain', 1, 'files/' || $1, $3)`, id, alice.ID, clk.now().Add(-100*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
	}
	sentinel()
	waitLeft(sortedNames(ids, "orphan", "kept", "deleted", "retained"), 8)
	// Retention deletes message 4: its file goes at the next look for gone messages,
	// whatever the clock says.
	if _, err := h.db.Exec(ctx, `DELETE FROM messages WHERE room_id = 'files' AND seq = 4`); err != nil {
		t.Fatal(err)
	}
	waitLeft(sortedNames(ids, "orphan", "kept", "deleted"), 6)
	clk.advance(90 * time.Minute) // past the orphan grace, not the deleted one
	sentinel()
	waitLeft(sortedNames(ids, "kept", "deleted"), 4)
	clk.advance(time.Hour)
	waitLeft(sortedNames(ids, "kept"), 2)
	if st, _, body := get(t, h.base+"/api/attachments/"+ids["kept"], alice.Token); st != 200 || len(body) == 0 {
		t.Fatalf("kept file: %d", st)
	}
}

// sortedNames lists names in the order of their ids (the query's order).
func sortedNames(ids map[string]string, names ...string) string {
	type kv struct{ id, name string }
	var s []kv
	for _, n := range names {
		s = append(s, kv{ids[n], n})
	}
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j].id < s[i].id {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.name
	}
	return strings.Join(out, ",")
}

// TestAttachments_send_checks: a message may carry only the sender's own uploads to that
// room that are not attached yet; anything else is refused before publishing, and an
// accepted message's event carries the ids.
func TestAttachments_send_checks(t *testing.T) {
	t.Parallel()
	h, _ := withBlobs(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice")
	bob := gwtest.NewAccount(t, h.base, "bob")
	for _, r := range []string{"files", "other"} {
		if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": r}); st != 201 {
			t.Fatalf("create: %d %v", st, f)
		}
		if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/"+r+"/join", bob.Token, nil); st != 200 {
			t.Fatalf("join: %d %v", st, f)
		}
	}
	up := func(acc gwtest.Account, room string) string {
		t.Helper()
		st, f := upload(t, h.base, acc.Token, room, "a.txt", []byte("words"))
		if st != 201 {
			t.Fatalf("upload: %d %v", st, f)
		}
		return f.Str("id")
	}
	mine, bobs, elsewhere, attached := up(alice, "files"), up(bob, "files"), up(alice, "other"), up(alice, "files")
	h.store(t, "files", 9, 9, alice)
	if _, err := h.db.Exec(context.Background(), `UPDATE attachments SET message_seq = 9, position = 1 WHERE id = $1`, attached); err != nil {
		t.Fatal(err)
	}
	send := func(ids ...string) (int, gwtest.Frame) {
		return gwtest.Do(t, "POST", h.base+"/api/rooms/files/messages", alice.Token,
			map[string]any{"text": "see attached", "attachments": ids, "client_msg_id": fmt.Sprintf("c-%d", time.Now().UnixNano())})
	}
	many := make([]string, 11)
	for i := range many {
		many[i] = fmt.Sprintf("0196a1b2-c3d4-7e5f-8a6b-7c8d9e0f1b%02d", i)
	}
	for _, tc := range []struct {
		name     string
		ids      []string
		contains string
	}{
		{"another user's upload", []string{mine, bobs}, bobs},
		{"an upload to another room", []string{elsewhere}, elsewhere},
		{"an upload attached already", []string{attached}, attached},
		{"an unknown id", []string{"0196a1b2-c3d4-7e5f-8a6b-7c8d9e0f1b00"}, "0196a1b2-c3d4-7e5f-8a6b-7c8d9e0f1b00"},
		{"not an id", []string{"../x"}, "not an upload id"},
		{"the same id twice", []string{mine, mine}, "given twice"},
		{"too many", many, "at most 10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, f := send(tc.ids...)
			if st != 400 || f.Str("code") != "bad_request" || !strings.Contains(f.Str("message"), tc.contains) {
				t.Fatalf("got %d %v, want 400 naming %q", st, f, tc.contains)
			}
		})
	}
	if st, f := send(mine); st != 202 {
		t.Fatalf("send: %d %v", st, f)
	}
	// The room's key carries its two joins and the accepted message, nothing else: a
	// refused send, had it been published, would come before the accepted one (one
	// producer, one partition) and take one of these three places.
	var msgs []event.Envelope
	for _, e := range h.readEvents(t, "chat.submitted", "files", 3) {
		if e.Type == event.TypeMessageSubmitted {
			msgs = append(msgs, e)
		}
	}
	if len(msgs) != 1 || !bytes.Contains(msgs[0].Data, []byte(`"attachments":["`+mine+`"]`)) {
		t.Fatalf("messages published: %v", msgs)
	}
}

// TestAttachments_S3_store: the same gateway on S3-compatible storage (a real versitygw):
// an upload writes the file and thumbnail objects, members download them, a refused upload
// writes none, and the sweeper removes an orphan's objects.
//
// Not parallel: versitygw listens on a port picked free (stacktest.FreePort) and then
// released, which a gateway of a parallel test could take in between.
func TestAttachments_S3_store(t *testing.T) {
	srv := stacktest.Get(t).StartS3(t)
	s3, err := blobstore.NewS3(context.Background(), blobstore.S3Config{Endpoint: srv.Endpoint, Bucket: "kchat-files",
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PathStyle: true, CreateBucket: true})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{}
	h := start(t, func(c *app.Config) {
		c.Blobs, c.Now = s3, clk.now
		c.Attachments = attach.Config{MaxBytes: 64 << 10, OrphanGrace: time.Hour, SweepInterval: 50 * time.Millisecond}
	})
	objects := func() []string {
		t.Helper()
		k, err := s3.Keys(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	alice := gwtest.NewAccount(t, h.base, "alice")
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "files"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	if st, f := upload(t, h.base, alice.Token, "files", "../x.png", pngOf(t, 8, 8)); st != 400 || len(objects()) != 0 {
		t.Fatalf("refused upload: %d %v, objects %q", st, f, objects())
	}
	img := pngOf(t, 100, 50)
	st, up := upload(t, h.base, alice.Token, "files", "a.png", img)
	if st != 201 {
		t.Fatalf("upload: %d %v", st, up)
	}
	id := up.Str("id")
	if got := strings.Join(objects(), ","); got != "files/"+id+",thumbs/"+id {
		t.Fatalf("objects %q", got)
	}
	if st, _, body := get(t, h.base+"/api/attachments/"+id, alice.Token); st != 200 || !bytes.Equal(body, img) {
		t.Fatalf("download: %d, %d bytes", st, len(body))
	}
	if st, hd, _ := get(t, h.base+"/api/attachments/"+id+"/thumbnail", alice.Token); st != 200 || hd.Get("Content-Type") != "image/png" {
		t.Fatalf("thumbnail: %d %v", st, hd)
	}
	clk.advance(2 * time.Hour)
	deadline := time.Now().Add(20 * time.Second)
	for len(objects()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("orphan's objects not swept: %q", objects())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st, _, _ := get(t, h.base+"/api/attachments/"+id, alice.Token); st != 404 {
		t.Fatalf("swept upload: %d", st)
	}
}

// TestAttachments_upload_rate_limited: uploads draw from the user's send bucket.
func TestAttachments_upload_rate_limited(t *testing.T) {
	t.Parallel()
	h, blobs := withBlobs(t, func(c *app.Config) { c.UserRate = ratelimit.Rate{PerSecond: 0.01, Burst: 1} })
	alice := gwtest.NewAccount(t, h.base, "alice")
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "files"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	if st, f := upload(t, h.base, alice.Token, "files", "a.txt", []byte("one")); st != 201 {
		t.Fatalf("first upload: %d %v", st, f)
	}
	if st, f := upload(t, h.base, alice.Token, "files", "b.txt", []byte("two")); st != 429 || f.Str("code") != "rate_limited" {
		t.Fatalf("second upload: %d %v, want 429", st, f)
	}
	if rows, files := h.storedAttachments(t, blobs); rows != 1 || len(files) != 1 {
		t.Fatalf("%d rows, files %q, want the first upload only", rows, files)
	}
}
