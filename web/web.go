// Package web holds the browser dashboard, embedded into the binary. It
// speaks the same documented protocol (PROTOCOL.md) as every other client
// and imports nothing from the server.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the dashboard's files.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree always has static/
	}
	return http.FileServer(http.FS(sub))
}
