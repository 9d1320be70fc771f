package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string, header map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, res *http.Response) []byte {
	b, _ := bodyAndWire(t, res)
	return b
}

// bodyAndWire returns the file and how many bytes it took on the wire.
func bodyAndWire(t *testing.T, res *http.Response) ([]byte, int) {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	wire := len(b)
	if res.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			t.Fatalf("gzip: %v", err)
		}
	}
	return b, wire
}

// TestFirstLoad loads the page as a browser does: index.html, then every
// file it names. Each is named by its content's hash, cached for a year,
// identical to the embedded file, and the whole first load, compressed,
// stays within the page's budget.
func TestFirstLoad(t *testing.T) {
	const budget = 250 << 10
	h := Handler()
	gz := map[string]string{"Accept-Encoding": "gzip, deflate, br, zstd"}
	res := get(t, h, "/", gz)
	if res.StatusCode != 200 || res.Header.Get("Cache-Control") != "no-cache" || res.Header.Get("ETag") == "" {
		t.Fatalf("/: %d, Cache-Control %q, ETag %q", res.StatusCode, res.Header.Get("Cache-Control"), res.Header.Get("ETag"))
	}
	index, wire := bodyAndWire(t, res)
	refs := reference.FindAllSubmatch(index, -1)
	if len(refs) < 5 {
		t.Fatalf("index.html names %d files; want the icon, two style sheets and three scripts", len(refs))
	}
	sub, _ := fs.Sub(static, "static")
	for _, m := range refs {
		name := string(m[1])
		res := get(t, h, "/"+name, gz)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d", name, res.StatusCode)
		}
		if res.Header.Get("Cache-Control") != cacheHashed {
			t.Errorf("%s: Cache-Control %q; want a year, immutable", name, res.Header.Get("Cache-Control"))
		}
		got, n := bodyAndWire(t, res)
		own := strings.Join(strings.Split(name, ".")[:len(strings.Split(name, "."))-2], ".") + "." + name[strings.LastIndex(name, ".")+1:]
		want, err := fs.ReadFile(sub, own)
		if err != nil {
			t.Fatalf("%s is not the hashed name of an embedded file (%s): %v", name, own, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s", name, own)
		}
		if hashedName(own, want) != name {
			t.Errorf("%s is not named by its content's hash (%s)", name, hashedName(own, want))
		}
		if strings.HasSuffix(name, ".js") && res.Header.Get("Content-Encoding") != "gzip" {
			t.Errorf("%s sent uncompressed", name)
		}
		wire += n
	}
	t.Logf("first load: %d files, %d bytes over the wire", len(refs)+1, wire)
	if wire > budget {
		t.Errorf("first load %d bytes; the budget is %d", wire, budget)
	}
}

// TestReloadAndEncodings: a reload is answered 304 by its ETag; a client
// without gzip gets the file as it is; a file under its own name is
// revalidated each time; an unknown one is 404.
func TestReloadAndEncodings(t *testing.T) {
	h := Handler()
	first := get(t, h, "/", map[string]string{"Accept-Encoding": "gzip"})
	if first.Header.Get("Content-Encoding") != "gzip" || first.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("/ with gzip accepted: encoding %q, Vary %q", first.Header.Get("Content-Encoding"), first.Header.Get("Vary"))
	}
	again := get(t, h, "/", map[string]string{"Accept-Encoding": "gzip", "If-None-Match": first.Header.Get("ETag")})
	if again.StatusCode != http.StatusNotModified {
		t.Fatalf("reload with the ETag: %d; want 304", again.StatusCode)
	}
	plain := get(t, h, "/index.html", map[string]string{"Accept-Encoding": "gzip;q=0, identity"})
	b := body(t, plain)
	if plain.Header.Get("Content-Encoding") != "" || !bytes.Contains(b, []byte("<!doctype html>")) {
		t.Fatalf("gzip refused: encoding %q", plain.Header.Get("Content-Encoding"))
	}
	if plain.Header.Get("ETag") == first.Header.Get("ETag") {
		t.Fatal("the compressed and the plain file share an ETag")
	}
	own := get(t, h, "/app.js", nil)
	if own.StatusCode != 200 || own.Header.Get("Cache-Control") != "no-cache" || !strings.HasPrefix(own.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("/app.js: %d %q %q", own.StatusCode, own.Header.Get("Cache-Control"), own.Header.Get("Content-Type"))
	}
	if res := get(t, h, "/nothing.js", nil); res.StatusCode != 404 {
		t.Fatalf("/nothing.js: %d", res.StatusCode)
	}
}
