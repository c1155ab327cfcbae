package email

import (
	"bufio"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher"
)

// scripted is an SMTP server for one test that answers each transaction as replies says
// and keeps every command line exactly as the client wrote it. With pipelining it offers
// PIPELINING and reads MAIL, RCPT and DATA before answering any of them: a client that
// waits for each reply would stall until its timeout.
type scripted struct {
	pipelining bool
	// replies to the n-th transaction (from 0): MAIL, RCPT, DATA and the data's end.
	replies func(n int) [4]string

	mu    sync.Mutex
	lines []string
	conns int
}

func (s *scripted) start(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
			go s.serve(c)
		}
	}()
	return l.Addr().String()
}

func (s *scripted) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lines)
}

func (s *scripted) serve(c net.Conn) {
	defer c.Close()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	read := func() (string, bool) {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", false
		}
		line = strings.TrimSuffix(line, "\r\n")
		s.mu.Lock()
		s.lines = append(s.lines, line)
		s.mu.Unlock()
		return line, true
	}
	say := func(lines ...string) bool {
		for _, l := range lines {
			w.WriteString(l + "\r\n")
		}
		return w.Flush() == nil
	}
	say("220 scripted ESMTP")
	if _, ok := read(); !ok { // EHLO
		return
	}
	if s.pipelining {
		say("250-scripted", "250-PIPELINING", "250 8BITMIME")
	} else {
		say("250-scripted", "250 8BITMIME")
	}
	for n := 0; ; {
		cmd, ok := read()
		if !ok {
			return
		}
		switch {
		case cmd == "QUIT":
			say("221 2.0.0 bye")
			return
		case cmd == "RSET" || cmd == "NOOP":
			say("250 2.0.0 ok")
			continue
		case !strings.HasPrefix(cmd, "MAIL "):
			say("500 5.5.1 unexpected " + cmd)
			continue
		}
		rep := s.replies(n)
		n++
		if s.pipelining {
			if _, ok := read(); !ok { // RCPT
				return
			}
			if _, ok := read(); !ok { // DATA
				return
			}
			say(rep[0], rep[1], rep[2])
		} else {
			say(rep[0])
			if rep[0][0] != '2' {
				continue
			}
			if _, ok := read(); !ok {
				return
			}
			say(rep[1])
			if rep[1][0] != '2' {
				continue
			}
			if _, ok := read(); !ok {
				return
			}
			say(rep[2])
		}
		if !strings.HasPrefix(rep[2], "354") {
			continue
		}
		for { // the data, up to its end
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if line == ".\r\n" {
				s.mu.Lock()
				s.lines = append(s.lines, ".")
				s.mu.Unlock()
				break
			}
		}
		say(rep[3])
	}
}

// With PIPELINING offered, MAIL, RCPT and DATA go before any reply is read; refusals at
// MAIL or RCPT (even with a server that then takes DATA) are classified by the first
// refusal, and the connection, reset, carries the next message. Without PIPELINING the
// commands go one at a time. Either way the paths are in angle brackets (RFC 5321).
func TestPipelining(t *testing.T) {
	ok := [4]string{"250 2.1.0 ok", "250 2.1.5 ok", "354 go ahead", "250 2.0.0 queued"}
	replies := func(n int) [4]string {
		switch n {
		case 1: // MAIL refused; this server answers DATA with 354 all the same
			return [4]string{"451 4.7.0 slow down", "503 5.5.1 need MAIL first", "354 go ahead", "554 5.5.1 no valid recipients"}
		case 2: // RCPT refused
			return [4]string{"250 2.1.0 ok", "550 5.1.1 no such user", "554 5.5.1 no valid recipients", ""}
		}
		return ok
	}
	for _, pipelining := range []bool{true, false} {
		name := "without PIPELINING"
		if pipelining {
			name = "PIPELINING"
		}
		t.Run(name, func(t *testing.T) {
			s := &scripted{pipelining: pipelining, replies: replies}
			sc := senderFor(t, s.start(t))
			sc.Timeout = 3 * time.Second // a client that waits for each reply stalls this long
			ch := newChannel(t, sc)
			want := []struct {
				code   int
				action string
			}{{0, ""}, {451, dispatcher.ActionRetry}, {550, dispatcher.ActionUndeliverable}, {0, ""}}
			for i, w := range want {
				_, err := ch.Send(context.Background(), s1, message("42", uint32(i), "ann@mail.example", false))
				var se *dispatcher.SendError
				switch {
				case w.code == 0 && err != nil:
					t.Fatalf("message %d: %v", i, err)
				case w.code != 0 && (!errors.As(err, &se) || se.Code != w.code || se.Action != w.action):
					t.Fatalf("message %d: %v, want %d %s", i, err, w.code, w.action)
				}
			}
			mail, rcpt := "MAIL FROM:<news@shop.example> BODY=8BITMIME", "RCPT TO:<ann@mail.example>"
			wantCmds := []string{mail, rcpt, "DATA", ".", mail, rcpt, "DATA", ".", "RSET", mail, rcpt, "DATA", "RSET", mail, rcpt, "DATA", "."}
			if !pipelining {
				wantCmds = []string{mail, rcpt, "DATA", ".", mail, "RSET", mail, rcpt, "RSET", mail, rcpt, "DATA", "."}
			}
			if got := s.commands()[1:]; !slices.Equal(got, wantCmds) { // after EHLO
				t.Fatalf("commands\n%q\nwant\n%q", got, wantCmds)
			}
			if s.conns != 1 {
				t.Fatalf("%d connections, want 1", s.conns)
			}
		})
	}
}
