package api

import (
	"bytes"
	"net/http"
)

// buffer holds a mutating call's answer until its audit record is published (and its
// idempotency record saved). Its header is the real writer's.
type buffer struct {
	under    http.ResponseWriter
	status   int
	wrote    bool
	body     bytes.Buffer
	replayed bool
}

func (b *buffer) Header() http.Header { return b.under.Header() }

func (b *buffer) WriteHeader(status int) {
	if !b.wrote {
		b.status, b.wrote = status, true
	}
}

func (b *buffer) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}

// flush sends the held answer.
func (b *buffer) flush(w http.ResponseWriter) {
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}

// trackWriter notes whether and with what status a GET's answer began.
type trackWriter struct {
	http.ResponseWriter
	status  int
	written bool
}

func (t *trackWriter) WriteHeader(status int) {
	if !t.written {
		t.status, t.written = status, true
	}
	t.ResponseWriter.WriteHeader(status)
}

func (t *trackWriter) Write(p []byte) (int, error) {
	if !t.written {
		t.WriteHeader(http.StatusOK)
	}
	return t.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (t *trackWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }
