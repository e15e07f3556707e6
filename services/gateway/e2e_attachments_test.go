package main_test

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// e2eUpload posts data as one file to base's room and returns the answer.
func e2eUpload(t *testing.T, base, token, room, filename string, data []byte) (int, gwtest.Frame) {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	pw, err := w.CreateFormFile("file", filename)
	if err != nil {
		t.Fatal(err)
	}
	pw.Write(data)
	w.Close()
	req, _ := http.NewRequest("POST", base+"/api/rooms/"+room+"/uploads", &body)
	req.Header.Set("Content-Type", w.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var f gwtest.Frame
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &f)
	return res.StatusCode, f
}

func e2eGet(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// TestE2E_attachments: a file uploaded on one gateway, attached to a message sent there,
// arrives live with its metadata on the other gateway, is in history there, and downloads
// there (both gateways share the blob store); persistence links it in the message's
// transaction, refuses nothing valid, and a deleted message's file is no longer served.
func TestE2E_attachments(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole platform")
	}
	s := startStack(t)
	alice := gwtest.NewAccount(t, s.a, "alice")
	bob := gwtest.NewAccount(t, s.b, "bob")
	if st, f := gwtest.Do(t, "POST", s.a+"/api/rooms", alice.Token, map[string]string{"id": "pics"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	if st, f := gwtest.Do(t, "POST", s.b+"/api/rooms/pics/join", bob.Token, nil); st != 200 {
		t.Fatalf("join: %d %v", st, f)
	}
	ca := hello(t, s.wsA, alice, map[string]int64{"pics": 0}, nil)
	cb := hello(t, s.wsB, bob, map[string]int64{"pics": 0}, nil)

	img := image.NewNRGBA(image.Rect(0, 0, 400, 100))
	for x := range 400 {
		img.Set(x, 50, color.NRGBA{255, 0, 0, 255})
	}
	var pngData bytes.Buffer
	png.Encode(&pngData, img)
	st, up := e2eUpload(t, s.a, alice.Token, "pics", "line.png", pngData.Bytes())
	if st != 201 {
		t.Fatalf("upload on A: %d %v", st, up)
	}
	st, doc := e2eUpload(t, s.a, alice.Token, "pics", "read me.txt", []byte("notes\n"))
	if st != 201 {
		t.Fatalf("upload on A: %d %v", st, doc)
	}
	ids := []string{doc.Str("id"), up.Str("id")} // named in this order, not upload order

	// Bob's gateway refuses alice's uploads for bob's message before publishing.
	cb.Send(map[string]any{"type": "send", "room": "pics", "client_msg_id": "b-1", "text": "mine?", "attachments": ids[:1], "ref": "b-1"})
	if e := cb.Expect("error", "b-1"); e.Str("code") != "bad_request" {
		t.Fatalf("bob attaching alice's upload: %v", e)
	}
	ca.Send(map[string]any{"type": "send", "room": "pics", "client_msg_id": "a-1", "text": "look", "attachments": ids, "ref": "a-1"})
	if a := ca.Expect("ack", "a-1"); a.Str("status") != "accepted" {
		t.Fatalf("send: %v", a)
	}
	f, ok := cb.Next(func(f gwtest.Frame) bool { return f.Type() == "message" && f.Str("client_msg_id") == "a-1" }, 60*time.Second)
	if !ok {
		t.Fatalf("message not delivered on B: %v", cb.Buffered())
	}
	checkFiles := func(where string, f map[string]any) {
		t.Helper()
		atts, _ := f["attachments"].([]any)
		if len(atts) != 2 {
			t.Fatalf("%s: attachments %v", where, f["attachments"])
		}
		d, i := atts[0].(map[string]any), atts[1].(map[string]any)
		if d["id"] != ids[0] || d["filename"] != "read me.txt" || d["content_type"] != "text/plain" || d["size"] != 6.0 || d["thumbnail"] != nil {
			t.Errorf("%s: text file %v", where, d)
		}
		if i["id"] != ids[1] || i["filename"] != "line.png" || i["content_type"] != "image/png" || i["width"] != 400.0 || i["height"] != 100.0 || i["thumbnail"] != true {
			t.Errorf("%s: image %v", where, i)
		}
	}
	checkFiles("live on B", f)
	seq := f.Int("seq")
	_, page := gwtest.Do(t, "GET", s.b+"/api/rooms/pics/messages", bob.Token, nil)
	ms, _ := page["messages"].([]any)
	var fromHistory map[string]any
	for _, m := range ms {
		if mm := m.(map[string]any); mm["seq"] == float64(seq) {
			fromHistory = mm
		}
	}
	checkFiles("history on B", fromHistory)

	// Downloads on B of what was uploaded on A.
	if st, b := e2eGet(t, s.b+"/api/attachments/"+ids[1], bob.Token); st != 200 || !bytes.Equal(b, pngData.Bytes()) {
		t.Fatalf("download on B: %d, %d bytes", st, len(b))
	}
	st, thumb := e2eGet(t, s.b+"/api/attachments/"+ids[1]+"/thumbnail", bob.Token)
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(thumb)); st != 200 || err != nil || cfg.Width != 320 || cfg.Height != 80 {
		t.Fatalf("thumbnail on B: %d %v %dx%d", st, err, cfg.Width, cfg.Height)
	}
	// Attached once: a second message with the same upload is refused.
	ca.Send(map[string]any{"type": "send", "room": "pics", "client_msg_id": "a-2", "text": "again", "attachments": ids[1:], "ref": "a-2"})
	if e := ca.Expect("error", "a-2"); e.Str("code") != "bad_request" {
		t.Fatalf("reattaching: %v", e)
	}
	// The files are in the shared store: file and thumbnail of the image, the text file.
	var files int
	filepath.WalkDir(s.files, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
		}
		return nil
	})
	if files != 3 {
		t.Fatalf("%d files in the store, want 3", files)
	}

	// Deleting the message: once its delete is stored, the files are not served.
	ca.Send(map[string]any{"type": "delete", "room": "pics", "client_msg_id": "a-3", "target_seq": seq, "ref": "a-3"})
	ca.Expect("ack", "a-3")
	if _, ok := cb.Next(func(f gwtest.Frame) bool { return f.Type() == "message" && f.Str("client_msg_id") == "a-3" }, 60*time.Second); !ok {
		t.Fatal("delete not delivered on B")
	}
	for _, id := range ids {
		if st, _ := e2eGet(t, s.b+"/api/attachments/"+id, bob.Token); st != 404 {
			t.Fatalf("a deleted message's file: %d", st)
		}
	}
	_, page = gwtest.Do(t, "GET", s.b+"/api/rooms/pics/messages", bob.Token, nil)
	for _, m := range page["messages"].([]any) {
		if mm := m.(map[string]any); mm["seq"] == float64(seq) && mm["attachments"] != nil {
			t.Fatalf("a deleted message lists files: %v", mm)
		}
	}
}
