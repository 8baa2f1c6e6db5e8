// Go net/http "Hello, world!" server for bench/http: the same answer as
// examples/http_hello (200, text/plain; charset=utf-8, "Hello, world!\n").
// bench/http/run.sh runs it with GOMAXPROCS=1.
//
// Usage: go_hello ADDRESS; prints "listening on <host:port>".
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

var body = []byte("Hello, world!\n")

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintf(os.Stderr, "usage: %s ADDRESS\n", os.Args[0])
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(body)
	}))
}
