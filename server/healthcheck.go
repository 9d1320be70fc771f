package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// healthcheck is `spells healthcheck [URL]`: it asks URL (default
// http://127.0.0.1:8080/readyz) and exits 0 when it answers 200 within
// 5 s, 1 otherwise, saying why. A container's healthcheck runs it: the
// image holds the binary and nothing else (no shell, no curl).
func healthcheck(args []string, out io.Writer) int {
	target := "http://127.0.0.1:8080/readyz"
	switch len(args) {
	case 0:
	case 1:
		target = args[0]
	default:
		fmt.Fprintln(out, "usage: spells healthcheck [URL]   (default http://127.0.0.1:8080/readyz)")
		return 2
	}
	if u, err := url.Parse(target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(out, "healthcheck: %q is not an http(s) URL\n", target)
		return 2
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(target)
	if err != nil {
		fmt.Fprintf(out, "healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(out, "healthcheck: %s answered %d: %s\n", target, resp.StatusCode, body)
		return 1
	}
	return 0
}
