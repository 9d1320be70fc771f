package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Favicon serves the dashboard's icon at /favicon.ico, where browsers
// look for it before they read the page.
func Favicon() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := static.ReadFile("static/favicon.svg")
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "image/svg+xml")
		w.Header().Set("Cache-Control", "max-age=86400")
		_, _ = w.Write(b)
	})
}

// Handler serves the dashboard's files: index.html at / naming the others
// by content-hashed names cached for a year, gzip-compressed where that
// pays (assets.go).
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree always has static/
	}
	s, err := newSite(sub)
	if err != nil {
		panic(err) // the embedded tree is read whole or the binary is broken
	}
	return s
}
