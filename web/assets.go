package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"
)

// The dashboard's files are served under content-hashed names with a year's
// cache lifetime, so a reload asks only for index.html (answered 304 while
// it is unchanged) and a new build is fetched whole. index.html names the
// hashed files; it is rewritten once, when the handler is built. Each file
// is also served under its own name, revalidated each time. Text files are
// sent gzip-compressed to a browser that accepts it, compressed once, on
// first request.

const (
	cacheHashed = "public, max-age=31536000, immutable"
	cacheOther  = "no-cache" // revalidate with the ETag
)

// asset is one file as served.
type asset struct {
	body   []byte
	ctype  string
	etag   string
	cache  string
	gzOnce sync.Once
	gz     []byte // nil when compression does not pay
}

// site is every file by the path it is served at (without the leading /).
type site struct {
	files map[string]*asset
	built time.Time // Last-Modified of every file: the binary's start
}

// reference matches the attributes of index.html that name another file.
var reference = regexp.MustCompile(`(?:href|src)="([^":?#]+)"`)

// hashedName puts the first 10 hex digits of the SHA-256 of body before
// the name's extension: app.js → app.1a2b3c4d5e.js.
func hashedName(name string, body []byte) string {
	sum := sha256.Sum256(body)
	h := hex.EncodeToString(sum[:5])
	ext := path.Ext(name)
	return strings.TrimSuffix(name, ext) + "." + h + ext
}

func newSite(root fs.FS) (*site, error) {
	s := &site{files: map[string]*asset{}, built: time.Now().UTC().Truncate(time.Second)}
	hashed := map[string]string{} // own name → hashed name
	err := fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == "index.html" {
			return err
		}
		body, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		h := hashedName(p, body)
		hashed[p] = h
		s.add(p, body, cacheOther)
		s.add(h, body, cacheHashed)
		return nil
	})
	if err != nil {
		return nil, err
	}
	index, err := fs.ReadFile(root, "index.html")
	if err != nil {
		return nil, err
	}
	index = reference.ReplaceAllFunc(index, func(m []byte) []byte {
		name := string(reference.FindSubmatch(m)[1])
		if h, ok := hashed[name]; ok {
			return bytes.Replace(m, []byte(`"`+name+`"`), []byte(`"`+h+`"`), 1)
		}
		return m
	})
	s.add("index.html", index, cacheOther)
	s.files[""] = s.files["index.html"]
	return s, nil
}

func (s *site) add(name string, body []byte, cache string) {
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = http.DetectContentType(body)
	}
	sum := sha256.Sum256(body)
	s.files[name] = &asset{body: body, ctype: ctype, cache: cache, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// compressible reports whether a file of this type is worth compressing.
func compressible(ctype string) bool {
	base, _, _ := strings.Cut(ctype, ";")
	switch base {
	case "application/javascript", "text/javascript", "application/json", "image/svg+xml":
		return true
	}
	return strings.HasPrefix(base, "text/")
}

// gzipped is the file compressed, or nil when that saves under a tenth.
func (a *asset) gzipped() []byte {
	a.gzOnce.Do(func() {
		if !compressible(a.ctype) {
			return
		}
		var b bytes.Buffer
		w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		_, _ = w.Write(a.body)
		_ = w.Close()
		if b.Len() < len(a.body)*9/10 {
			a.gz = b.Bytes()
		}
	})
	return a.gz
}

// acceptsGzip reads Accept-Encoding: gzip (or *) with a weight above zero.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "*" {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		if q == "q=0" || q == "q=0.0" || q == "q=0.00" || q == "q=0.000" {
			return false
		}
		return true
	}
	return false
}

func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a, ok := s.files[strings.TrimPrefix(r.URL.Path, "/")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", a.cache)
	h.Set("X-Content-Type-Options", "nosniff")
	body, etag := a.body, a.etag
	if compressible(a.ctype) {
		h.Set("Vary", "Accept-Encoding")
		if gz := a.gzipped(); gz != nil && acceptsGzip(r.Header.Get("Accept-Encoding")) {
			body, etag = gz, strings.TrimSuffix(a.etag, `"`)+`-gzip"`
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, "", s.built, bytes.NewReader(body))
}
